"""Spans of many different days, paced: per tenant and for the whole collector.

Every tenant table is partitioned by tenant and day: an insert writes one part per distinct day of
each tenant in it, in every table, and the parts cost the writer by their number, not their size.
One request of 365 spans a day apart (24 KB) held the writer 1.5 s (4 ms a day), for every tenant,
where a request of today's spans takes a few milliseconds: a tenant sending such requests without
end stalled everyone's ingest (an attack review; measured 2026-12-06).

A request's *new days* are the days among its kept spans, other than the day it arrived and the
days either side (live traffic's, always being written), that its tenant was not charged for in
the last `recent_s` seconds (about what one insert gathers): a live service's requests cost
nothing, nor does a backfill sent in time order beyond its first request of each day a second.
A day is free only for `recent_s` after it was *charged*: sending the same old days again and
again costs them again every second (a review found that refreshing them on every request made
them free for ever, and a tenant held every tenant's freshness at 6 s).

- A request of more than `MAX_NEW_DAYS` new days is refused whole (413, not retried): send spans in
  time order, a few days a request. Exporters' batches of recent spans never come near it.
- Each tenant may add `rate_per_s` new days a second (`burst` at once), and all tenants together
  twice that: the writer is shared. A request that finds its tenant's allowance, or the
  collector's, short is answered 429 (OTLP/gRPC: UNAVAILABLE with RetryInfo) with a `Retry-After`
  of when it will be there: at most `MAX_NEW_DAYS / rate_per_s` (2 s by default), within the
  official exporters' 10 s deadline. Requests that add no new day always pass.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection
from typing import Final

from clinotel.collector.errors import RefusedError

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_NEW_DAYS_PER_S",
    "MAX_NEW_DAYS",
    "MAX_NEW_DAYS_PER_S",
    "MIN_NEW_DAYS_PER_S",
    "DayPacing",
]

DEFAULT_NEW_DAYS_PER_S: Final = 32.0
"""New days a tenant may add a second (about an eighth of the writer's time, at 4 ms a day)."""
MIN_NEW_DAYS_PER_S: Final = 8.0
"""The least allowance: a request of `MAX_NEW_DAYS` then waits 8 s, within the exporters' deadline."""
MAX_NEW_DAYS_PER_S: Final = 100_000.0
DEFAULT_BURST: Final = 64.0
MAX_NEW_DAYS: Final = 64
"""The most new days one request may carry (its tenant's whole burst)."""
RECENT_S: Final = 1.0
"""How long a day a tenant was charged for counts as already in the insert being gathered."""
_COLLECTOR: Final = "\0collector"
"""The key of the allowance all tenants share."""


class DayPacing:
    """Per tenant and for the collector: the days charged lately and the new days left."""

    def __init__(
        self,
        rate_per_s: float = DEFAULT_NEW_DAYS_PER_S,
        burst: float = DEFAULT_BURST,
        recent_s: float = RECENT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s, self.burst, self.recent_s = rate_per_s, burst, recent_s
        self._clock = clock
        self._lock = threading.Lock()
        self._charged: dict[str, dict[int, float]] = {}
        """tenant -> day -> when the tenant was last charged for it."""
        self._left: dict[str, tuple[float, float]] = {}
        """tenant (or `_COLLECTOR`) -> (new days it may still add, when that was counted)."""

    def admit(self, tenant: str, days: Collection[int], today: int) -> None:
        """Count a request of `tenant` that arrived on day `today` and whose kept spans start on
        `days` (days since the epoch); raises `RefusedError`: too_large for more than
        `MAX_NEW_DAYS` new days, throttled (with its retry delay) when an allowance is short."""
        if self.rate_per_s <= 0:
            return
        old = [d for d in days if abs(d - today) > 1]
        if not old:
            return
        now = self._clock()
        with self._lock:
            charged = self._charged.setdefault(tenant, {})
            for day in [d for d, at in charged.items() if now - at > self.recent_s]:
                del charged[day]
            new = [d for d in old if d not in charged]
            if not new:
                return
            if len(new) > MAX_NEW_DAYS:
                raise RefusedError(
                    "too_large",
                    f"the request's spans start on {len(new):,} days other than today's that this tenant did not "
                    f"send in the last second; one request may carry {MAX_NEW_DAYS}: send spans in time order, a few "
                    "days a request (each day is a partition of every table)",
                )
            mine = self._allowance(tenant, self.rate_per_s, self.burst, now)
            shared = self._allowance(_COLLECTOR, 2 * self.rate_per_s, 2 * self.burst, now)
            short = max(len(new) - mine, 0) / self.rate_per_s
            short = max(short, max(len(new) - shared, 0) / (2 * self.rate_per_s))
            if short > 0:
                wait = max(1, math.ceil(short))
                refused = RefusedError(
                    "throttled",
                    f"this request's spans start on {len(new)} days other than today's that its tenant did not send "
                    f"in the last second, more than {'its' if len(new) > mine else 'the collector'}'s allowance has "
                    f"left ({self.rate_per_s:g} such days a second a tenant): retry after {wait} s, or send spans in "
                    "time order (one day's spans together)",
                )
                refused.retry_after = wait
                raise refused
            self._left[tenant] = (mine - len(new), now)
            self._left[_COLLECTOR] = (shared - len(new), now)
            for d in new:
                charged[d] = now

    def _allowance(self, key: str, rate: float, burst: float, now: float) -> float:
        left, at = self._left.get(key, (burst, now))
        return min(burst, left + (now - at) * rate)
