"""Exporters' retries of a request already accepted, recognised and not stored twice.

An OTLP client that gets no answer in time (a slow disk, a proxy's timeout, a dropped connection)
sends the same request again: duplicates are by design in OTLP. Stored twice, a retried workflow's
stage durations and span counts double (the workflows view sums its spans), and its decide latency
reads twice the truth. The receiver keeps the digest of each request it accepted in the last few
minutes, per tenant (each with its own share), of the request as logged (parsed and re-encoded: a
retry's compression or encoding, protobuf or JSON, does not matter); an identical request of the
same tenant in that window is answered as accepted again and not logged.

A digest counts once the log holds its request: a retry that arrives while the first attempt is
still being written waits for it (up to `RACE_WAIT_S`) and is answered as it is accepted, or
logged itself when that attempt is refused; one after the window, or sent to another collector,
is logged again (stored twice, never lost). A collector starting on a log recalls the requests its segments still hold
that were received within the window (`recall`): a process killed after logging a request and
before answering it leaves that request there, and the exporter's retry reaches the next process.
A request stored and its segment deleted before a restart is not recalled: the answer goes out as
soon as the request is logged, and a segment is stored no sooner than half a second after it
opened or once full, then takes its insert's time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from clinotel.collector.log import record

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_PER_TENANT",
    "DEFAULT_RETRY_WINDOW_S",
    "MAX_RETRY_WINDOW_S",
    "RACE_WAIT_S",
    "Attempt",
    "RecentRequests",
]

DEFAULT_RETRY_WINDOW_S: Final = 300.0
"""How long an accepted request is remembered: the OpenTelemetry Collector's exporters retry for up
to 300 s by default (`retry_on_failure.max_elapsed_time`), the SDKs' for about a minute."""
MAX_RETRY_WINDOW_S: Final = 3600.0
DEFAULT_CAPACITY: Final = 65_536
"""The most requests remembered at once, all tenants together (12 MB at most, measured:
about 185 bytes a digest); past it the oldest of the tenant holding the most are forgotten first."""
DEFAULT_PER_TENANT: Final = 16_384
"""The most one tenant's requests remembered: 55 requests a second over the window (28,000 spans a
second in exporters' batches of 512); one tenant's flood of small requests forgets its own oldest,
not another tenant's."""


RACE_WAIT_S: Final = 10.0
"""How long a retry waits for an identical request still being logged (the exporters' own
deadline): past it, it is logged too."""


@dataclass(frozen=True)
class Attempt:
    """A request being logged (`RecentRequests.attempt`)."""

    key: tuple[str, bytes]
    owned: bool
    """False: an identical request was still being logged after the wait; this one is logged too
    and leaves that one's place alone."""


class RecentRequests:
    """Digests of the requests accepted in the last `window_s` seconds, per tenant (at most
    `per_tenant` each, `capacity` in all)."""

    def __init__(
        self,
        window_s: float = DEFAULT_RETRY_WINDOW_S,
        capacity: int = DEFAULT_CAPACITY,
        per_tenant: int = DEFAULT_PER_TENANT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.capacity = capacity
        self.per_tenant = per_tenant
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, OrderedDict[bytes, float]] = {}
        """tenant -> digest -> when it was accepted, oldest first."""
        self._held = 0
        self._writing: dict[tuple[str, bytes], threading.Event] = {}
        """(tenant, digest) -> set when the request being logged is accepted or refused."""

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and self.capacity > 0 and self.per_tenant > 0

    def __len__(self) -> int:
        return self._held

    @staticmethod
    def digest(request: bytes) -> bytes:
        """The key of `request` (as logged) within its tenant."""
        return hashlib.sha256(request).digest()[:16]

    def attempt(self, tenant: str, digest: bytes, wait_s: float = RACE_WAIT_S) -> Attempt | None:
        """None when the request of `tenant` with `digest` is a retry of one accepted within the
        window, or of one being logged that is accepted within `wait_s` (an exporter that gave up
        on a slow first attempt); else the attempt to log it, to `finish` whatever happens (a
        first attempt refused lets a retry waiting on it be logged instead)."""
        key = (tenant, digest)
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                if self._seen_locked(tenant, digest):
                    return None
                writing = self._writing.get(key)
                if writing is None:
                    self._writing[key] = threading.Event()
                    return Attempt(key, owned=True)
            left = deadline - time.monotonic()
            if left <= 0:
                return Attempt(key, owned=False)  # logged again: twice, never lost
            writing.wait(left)

    def finish(self, attempt: Attempt) -> None:
        """The attempt is over (logged or refused): requests waiting on it look again."""
        if attempt.owned:
            with self._lock:
                writing = self._writing.pop(attempt.key, None)
            if writing is not None:
                writing.set()

    def seen(self, tenant: str, digest: bytes) -> bool:
        """Whether a request of `tenant` with `digest` was accepted within the window."""
        with self._lock:
            return self._seen_locked(tenant, digest)

    def _seen_locked(self, tenant: str, digest: bytes) -> bool:
        """`seen`, with the lock held."""
        mine = self._seen.get(tenant)
        at = mine.get(digest) if mine is not None else None
        return at is not None and self._clock() - at <= self.window_s

    def accepted(self, tenant: str, digest: bytes, age_s: float = 0.0) -> None:
        """The request of `tenant` with `digest` is in the log now (`age_s`: it was logged that
        long ago, by a process before this one; recalled oldest first)."""
        with self._lock:
            now = self._clock()  # read under the lock: each tenant's digests stay in time order
            mine = self._seen.setdefault(tenant, OrderedDict())
            if mine.pop(digest, None) is not None:
                self._held -= 1
            mine[digest] = now - age_s
            self._held += 1
            self._forget(mine, now)

    def recall(self, records: Iterable[bytes | memoryview], now_ns: int | None = None) -> int:
        """Remember the requests of log `records` (`record.unchecked` messages) received within the
        window, as accepted when they were received: a process killed between logging a request and
        answering it left it in the log, and the exporter's retry of it is then recognised by the
        next one. Records not of this log's form are skipped. The number remembered."""
        if not self.enabled:
            return 0
        now_ns = time.time_ns() if now_ns is None else now_ns
        remembered = 0
        for message in records:
            parts = record.split(message)
            if parts is None:
                continue
            end, tenant, received_ns = parts
            age_s = (now_ns - received_ns) / 1e9
            if 0 <= age_s <= self.window_s:
                self.accepted(tenant, self.digest(bytes(message[:end])), age_s)
                remembered += 1
        return remembered

    def _forget(self, mine: OrderedDict[bytes, float], now: float) -> None:
        while mine and (len(mine) > self.per_tenant or now - next(iter(mine.values())) > self.window_s):
            mine.popitem(last=False)
            self._held -= 1
        while self._held > self.capacity:
            fullest = max(self._seen.values(), key=len)
            fullest.popitem(last=False)
            self._held -= 1
