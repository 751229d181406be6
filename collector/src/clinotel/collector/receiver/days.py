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
A day is free only for `recent_s` after it was *charged*, and only up to `FREE_DAYS` of them a
request: sending the same old days again and again costs them again (a review found that
refreshing them on every request made them free for ever, and a tenant held every tenant's
freshness at 6 s).

- Each tenant may add `rate_per_s` new days a second (`burst` at once), and all tenants together
  twice that: the writer is shared. A request that finds its tenant's allowance, or the
  collector's, short is answered 429 (OTLP/gRPC: UNAVAILABLE with RetryInfo) with a `Retry-After`
  of when it will be there (a request of more than a burst waits for the whole burst, and leaves
  a debt): at most about 8 s at the defaults, within the official exporters' 10 s deadline.
  Requests that add no new day always pass.
- A request of more than `MAX_NEW_DAYS` new days (only possible with a `--max-span-age-days` over
  a year) is refused whole (413, not retried): send spans in time order, a few days a request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection
from typing import Final

from clinotel.collector.errors import RefusedError

__all__ = [
    "DEFAULT_NEW_DAYS_PER_S",
    "MAX_NEW_DAYS",
    "MAX_NEW_DAYS_PER_S",
    "MIN_NEW_DAYS_PER_S",
    "DayPacing",
]

DEFAULT_NEW_DAYS_PER_S: Final = 32.0
"""New days a tenant may add a second (about an eighth of the writer's time, at 4 ms a day)."""
MIN_NEW_DAYS_PER_S: Final = 32.0
"""The least `--new-days-per-s`: below it, a request of a year's days would leave a debt that the
tenant's next request waits for past the official exporters' 10 s deadline."""
MAX_NEW_DAYS_PER_S: Final = 100_000.0
BURST_S: Final = 8.0
"""A tenant may add this many seconds' worth of new days at once (256 at the default rate): eight
exporter workers' batches of 45 days each, sent at once (a backfill), went past the exporters'
deadline with a burst of 64 (two of eight batches lost); 256 days cost the writer about a second."""
MAX_BURST: Final = 512.0
MAX_NEW_DAYS: Final = 400
"""The most new days one request may carry (the default `--max-span-age-days` allows 368 with the
day ahead): a request of more than a burst waits for the whole burst and leaves its tenant in
debt, and its tenant's next request waits within the exporters' 10 s deadline only for so many."""
FREE_DAYS: Final = 8
"""A request's days charged in the last `recent_s` are free up to this many (a backfill's requests
of a day or two each); a request that sends more of them again pays for them all again: the same
362 days sent every 0.4 s were otherwise paid once a second and stored three times."""
RECENT_S: Final = 1.0
"""How long a day a tenant was charged for counts as already in the insert being gathered."""
_COLLECTOR: Final = "\0collector"
"""The key of the allowance all tenants share."""


class DayPacing:
    """Per tenant and for the collector: the days charged lately and the new days left."""

    def __init__(
        self,
        rate_per_s: float = DEFAULT_NEW_DAYS_PER_S,
        burst: float | None = None,
        recent_s: float = RECENT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`burst`: the new days a tenant may add at once (None: `BURST_S` seconds' worth, at most
        `MAX_BURST`)."""
        self.rate_per_s, self.recent_s = rate_per_s, recent_s
        self.burst = burst if burst is not None else min(BURST_S * rate_per_s, MAX_BURST)
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
            if len(old) - len(new) > FREE_DAYS:  # many old days again: each is a part again
                new = old
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
            # more than a whole burst needs the whole burst, and leaves a debt
            short = max(min(len(new), self.burst) - mine, 0) / self.rate_per_s
            short = max(short, max(min(len(new), 2 * self.burst) - shared, 0) / (2 * self.rate_per_s))
            if short > 0:
                wait = max(1, math.ceil(short))
                whose = "its tenant's" if min(len(new), self.burst) > mine else "the collector's"
                refused = RefusedError(
                    "throttled",
                    f"this request's spans start on {len(new)} days other than today's that its tenant did not send "
                    f"in the last second, more than {whose} allowance has left ({self.rate_per_s:g} such days a "
                    f"second a tenant): retry after {wait} s, or send spans in time order (one day's spans together)",
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
