"""How much of the process the receivers' requests may hold at once, across both transports.

Each request in progress holds memory: its body as it is read, the body inflated (gzip), the
parsed request while it is checked, and its canonical bytes until the log has them. Without a
bound across requests, a write token's 1,024 connections of 64 MiB each asked for 64 GiB. Two
budgets, counted in bytes and shared by OTLP/HTTP and OTLP/gRPC:

- **request bytes** (`--receive-buffer-mb`): a body is counted as it arrives, before each piece
  is buffered (a client holds only what it sent: counted from its `Content-Length`, stalled
  bodies of two tokens held the whole buffer at no cost), and must be whole within its time
  (`net.body`: 30 s plus its size at 16 KiB/s); a body that stalled (under 1.6 KiB/s for
  `STALLED_S`) is ended when its bytes would make room in a full buffer. A gRPC message is
  counted from its arrival, while it waits for an export worker; then a request's inflated form
  as it grows, and its canonical bytes (what the log keeps: at most the request's size) once its
  decoding turn came. A request that does not fit is answered 503 busy with Retry-After (gRPC:
  UNAVAILABLE with RetryInfo), which exporters retry; what was accepted before is not touched.
  One tenant holds at most three quarters of the buffer, so another tenant's exports still fit
  while one sends its largest requests (or a stolen token sends many).
- **decoding**: what parsing and checking a request may take beside its bytes, estimated from its
  size (`DECODE_FACTOR` bytes a byte, at most `bounded.DECODE_BUDGET`): 128 MiB at once, 64 MiB of
  it one tenant's, waited for first come, first served, except that another tenant's waiter
  held back by its own share alone is passed (decoding is short and holds the interpreter lock,
  so more at once would not be faster).

Every hold is given back when its request is answered, whatever happened to it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Final

from clinotel.collector.errors import RefusedError
from clinotel.collector.receiver.bounded import DECODE_BUDGET

__all__ = [
    "DECODE_BYTES",
    "DECODE_FACTOR",
    "DECODE_PER_TENANT",
    "DECODE_WAIT_S",
    "DEFAULT_RECEIVE_BUFFER_BYTES",
    "RECEIVE_BUFFER_REQUESTS",
    "ByteBudget",
    "Hold",
    "receive_buffer_for",
]

DEFAULT_RECEIVE_BUFFER_BYTES: Final = 256 << 20
"""Request bytes the receivers hold at once by default: the largest request (64 MiB) three times
over fits in one tenant's share, as a gzipped request of that size needs (its body, the inflated
request and its canonical bytes)."""
DECODE_BYTES: Final = 128 << 20
"""What decoding the requests in progress may take at once (estimated, `DECODE_FACTOR`)."""
DECODE_FACTOR: Final = 100
"""Bytes of memory a byte of protobuf takes decoded, at worst (a request of empty spans: 88-94,
measured 2026-12-06); exporters' spans take 5-10. Requests over `bounded.DIRECT_LIMIT` are screened in runs
within `bounded.DECODE_BUDGET`, which caps the estimate."""
DECODE_PER_TENANT: Final = DECODE_BYTES - DECODE_BUDGET
"""What one tenant's decodes may hold at once: the rest is always room for another tenant's
largest request (`bounded.DECODE_BUDGET`)."""
DECODE_WAIT_S: Final = 10.0
"""How long a request waits for its turn to be decoded before it is answered busy."""
STALLED_S: Final = 10.0
PROGRESS_BYTES: Final = 16 << 10
"""A body being received that got less than `PROGRESS_BYTES` in `STALLED_S` (1.6 KiB/s) has
stalled: it is ended when the buffer is full and its bytes would make room."""
_OTHERS_SHARE: Final = 4
"""1/4 of a budget is left to the other tenants: one tenant holds at most the rest."""
RECEIVE_BUFFER_REQUESTS: Final = 4
"""The receive buffer is at least this many times the largest request: one tenant's share (three
quarters) then holds one request three times over (gzipped body, inflated, canonical)."""


def receive_buffer_for(max_request_bytes: int) -> int:
    """The default receive buffer for requests of up to `max_request_bytes`: 256 MiB, or
    `RECEIVE_BUFFER_REQUESTS` of the largest request when that is more."""
    return max(DEFAULT_RECEIVE_BUFFER_BYTES, RECEIVE_BUFFER_REQUESTS * max_request_bytes)


class ByteBudget:
    """At most `total` bytes held at once, of which one tenant holds at most `per_tenant` (three
    quarters of the total by default). `what` names the budget in the busy answer. Takes that
    wait are served first come, first served (`_may_go`): a tenant's stream of small requests
    cannot keep taking the room another tenant's larger one waits for. Stalled bodies may be
    ended to make room (`_evict_stalled`). Thread-safe."""

    def __init__(self, total: int, what: str, per_tenant: int | None = None) -> None:
        if total < 1:
            raise ValueError(f"a byte budget is at least 1 byte, not {total}")
        self.total = total
        self.per_tenant = total - total // _OTHERS_SHARE if per_tenant is None else min(per_tenant, total)
        self.what = what
        self.evicted = 0
        """Stalled bodies ended to make room (`_evict_stalled`)."""
        self._held = 0
        self._by_tenant: Counter[str] = Counter()
        self._changed = threading.Condition(threading.Lock())
        self._queue: deque[tuple[object, str, int]] = deque()
        self._receiving: set[Hold] = set()
        self._ending = 0
        """Bytes of bodies ended (`_end`) and not yet given back."""
        self._ending_by: Counter[str] = Counter()

    @property
    def held(self) -> int:
        """Bytes held now, by every tenant."""
        return self._held

    def held_by(self, tenant: str) -> int:
        return self._by_tenant[tenant]

    def hold(self, tenant: str) -> Hold:
        """An empty hold for one request of `tenant`, to grow as it is read (`Hold.take`)."""
        return Hold(self, tenant)

    def _fits(self, tenant: str, n: int) -> bool:
        return self._held + n <= self.total and self._by_tenant[tenant] + n <= self.per_tenant

    def _own_share_full(self, tenant: str, n: int) -> bool:
        return self._by_tenant[tenant] + n > self.per_tenant

    def _may_go(self, ticket: object, tenant: str, n: int) -> bool:
        """First come, first served, except past another tenant's waiters held back by their own
        tenant's share alone: a tenant's queue of large requests does not hold up the other
        tenants (its own later requests stay behind them)."""
        if not self._fits(tenant, n):
            return False
        for earlier, earlier_tenant, earlier_n in self._queue:
            if earlier is ticket:
                return True
            if earlier_tenant == tenant or not self._own_share_full(earlier_tenant, earlier_n):
                return False
        return True

    def _grant(self, tenant: str, n: int) -> None:
        self._held += n
        self._by_tenant[tenant] += n

    def _take(self, tenant: str, n: int, wait_s: float) -> bool:
        with self._changed:
            if self._may_go(None, tenant, n):
                self._grant(tenant, n)
                return True
            if wait_s <= 0:
                return False
            deadline = time.monotonic() + wait_s
            entry = (object(), tenant, n)
            self._queue.append(entry)
            try:
                while not self._may_go(entry[0], tenant, n):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
                self._grant(tenant, n)
                return True
            finally:
                self._queue.remove(entry)
                self._changed.notify_all()  # the next in line may go now

    def _give(self, hold: Hold, n: int) -> None:
        if not n:
            return
        tenant = hold.tenant
        with self._changed:
            self._held -= n
            self._by_tenant[tenant] -= n
            if self._by_tenant[tenant] <= 0:
                del self._by_tenant[tenant]
            if hold._ending:
                ended = min(n, hold._ending)
                hold._ending -= ended
                self._ending -= ended
                self._ending_by[tenant] -= ended
                if self._ending_by[tenant] <= 0:
                    del self._ending_by[tenant]
            self._changed.notify_all()

    def _evict_stalled(self, refused: Hold, n: int) -> None:
        """Make room for `n` more bytes of `refused` by ending bodies being received that stalled
        (less than `PROGRESS_BYTES` in `STALLED_S`), longest stalled first, until the bytes would
        fit: first the refused tenant's own while its share is what is full, then any tenant's
        while the total is. A client that sent most of a body and went quiet held its bytes at no
        cost while others were refused. Bodies that hold nothing (read to be discarded, or not
        begun) and the refused one are left alone; bytes of bodies ended but not yet given back
        count as room (concurrent refusals each ended another). Ended under the lock, so never a
        body whose reading has just finished."""
        tenant = refused.tenant
        now = time.monotonic()
        with self._changed:
            stalled = sorted(
                (h for h in self._receiving if h is not refused and h.bytes > 0 and now - h.progressed > STALLED_S),
                key=lambda h: h.progressed,
            )
            for h in stalled:
                if self._by_tenant[tenant] - self._ending_by[tenant] + n <= self.per_tenant:
                    break
                if h.tenant == tenant:
                    self._end(h)
            for h in stalled:
                if self._held - self._ending + n <= self.total:
                    break
                if h in self._receiving:
                    self._end(h)

    def _end(self, h: Hold) -> None:
        """End `h`'s body (under the lock): its bytes count as room until they are given back."""
        self._receiving.discard(h)
        h.evicted = True
        h._ending = h.bytes
        self._ending += h.bytes
        self._ending_by[h.tenant] += h.bytes
        self.evicted += 1
        if h.evict is not None:
            h.evict()


class Hold:
    """One request's bytes in a `ByteBudget`: `take` before memory is used, `give` once it is
    freed, and everything back on `close` (a context manager). While its body is received
    (`receiving`), a hold that makes no progress may be ended to make room."""

    def __init__(self, budget: ByteBudget, tenant: str) -> None:
        self.budget = budget
        self.tenant = tenant
        self.bytes = 0
        self.progressed = time.monotonic()
        self._since_progress = 0
        self.evict: Callable[[], None] | None = None
        self.evicted = False
        """Ended to make room while its body was received: its refusal is `busy`."""
        self._ending = 0

    @contextlib.contextmanager
    def receiving(self, evict: Callable[[], None]) -> Iterator[None]:
        """While the body is received: `evict` ends it (shuts its connection) when the budget is
        full and it stalled (`ByteBudget._evict_stalled`); `received` marks its progress."""
        with self.budget._changed:
            self.evict = evict
            self.progressed = time.monotonic()
            self.budget._receiving.add(self)
        try:
            yield
        finally:
            with self.budget._changed:
                self.budget._receiving.discard(self)
                self.evict = None

    def received(self, n: int) -> None:
        """`n` more bytes of the body arrived: progress, once `PROGRESS_BYTES` have since the last."""
        self._since_progress += n
        if self._since_progress >= PROGRESS_BYTES:
            self._since_progress = 0
            self.progressed = time.monotonic()

    def take(self, n: int, *, wait_s: float = 0.0) -> None:
        """Hold `n` more bytes, waiting up to `wait_s` for them; raises `RefusedError` (busy)
        when they do not fit in time."""
        if n <= 0:
            return
        budget = self.budget
        if self.bytes + n > budget.per_tenant:
            raise RefusedError(
                "too_large",
                f"the request needs more than one tenant's share of the {budget.what} ({budget.per_tenant:,} "
                "bytes): send smaller batches",
            )
        if not budget._take(self.tenant, n, wait_s):
            budget._evict_stalled(self, n)
            raise RefusedError("busy", f"the collector's {budget.what} is in use by other requests: retry shortly")
        self.bytes += n

    def resize(self, n: int) -> None:
        """Hold `n` bytes in all: take what is missing (as `take`, without waiting) or give back
        what is over."""
        if n > self.bytes:
            self.take(n - self.bytes)
        else:
            self.give(self.bytes - n)

    def give(self, n: int) -> None:
        """Give back `n` of the bytes held (memory freed before the request ends)."""
        n = min(n, self.bytes)
        self.bytes -= n
        self.budget._give(self, n)

    def close(self) -> None:
        self.give(self.bytes)

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
