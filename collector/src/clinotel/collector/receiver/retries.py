"""Exporters' retries of a request already accepted, recognised and not stored twice.

An OTLP client that gets no answer in time (a slow disk, a proxy's timeout, a dropped connection)
sends the same request again: duplicates are by design in OTLP. Stored twice, a retried workflow's
stage durations and span counts double (the workflows view sums its spans), and its decide latency
reads twice the truth. The receiver keeps the digest of each request it accepted in the last few
minutes, per tenant, of the request as logged (parsed and re-encoded: a retry's compression or
encoding, protobuf or JSON, does not matter); an identical request in that window is answered as
accepted again and not logged.

A digest counts once the log holds its request: a retry that arrives while the first attempt is
still being written is logged too (stored twice, never lost), as is one after the window, after a
restart, or sent to another collector.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_WINDOW_S", "RecentRequests"]

DEFAULT_WINDOW_S: Final = 300.0
"""How long an accepted request is remembered: the OpenTelemetry Collector's exporters retry for up
to 300 s by default (`retry_on_failure.max_elapsed_time`), the SDKs' for about a minute."""
DEFAULT_CAPACITY: Final = 100_000
"""The most requests remembered at once (about 9 MB); past it the oldest are forgotten first. At
512-span batches this is 51M spans, far past the window at the collector's throughput."""


class RecentRequests:
    """Digests of the requests accepted in the last `window_s` seconds (at most `capacity`)."""

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[int, float] = {}
        """digest -> when it was accepted (insertion order is acceptance order)."""

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and self.capacity > 0

    def __len__(self) -> int:
        return len(self._seen)

    @staticmethod
    def digest(tenant: str, request: bytes) -> int:
        """The key of `request` (as logged) of `tenant`."""
        h = hashlib.sha256(tenant.encode())
        h.update(b"\0")
        h.update(request)
        return int.from_bytes(h.digest()[:16], "big")

    def seen(self, digest: int) -> bool:
        """Whether a request with `digest` was accepted within the window."""
        with self._lock:
            at = self._seen.get(digest)
            return at is not None and self._clock() - at <= self.window_s

    def accepted(self, digest: int) -> None:
        """The request with `digest` is in the log now."""
        now = self._clock()
        with self._lock:
            self._seen.pop(digest, None)
            self._seen[digest] = now
            self._forget(now)

    def _forget(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if len(seen) <= self.capacity and now - seen[oldest] <= self.window_s:
                return
            del seen[oldest]
