"""Each tenant's spans of many different days, paced.

Every tenant table is partitioned by tenant and day: an insert writes one part per distinct day of
each tenant in it, in every table, and the parts cost the writer by their number, not their size.
One request of 365 spans a day apart (24 KB) held the writer 1.5 s (4 ms a day), for every tenant,
where a request of today's spans takes a few milliseconds: a tenant sending such requests without
end stalled everyone's ingest (an attack review; measured 2026-12-06).

A request's cost is the number of days among its kept spans, other than the day it arrived and
the days either side (live traffic's, always being written), that its tenant sent none of in the
last `recent_s` seconds (about the span of a log segment: what one insert holds): a live service's
requests cost nothing, nor does a backfill sent in time order after its first request of a day. A
tenant may add `rate_per_s` new days a second, `burst` at once; a single request may go past what
it has left (so that a request of many days is never refused for ever) and puts the tenant in
debt: while in debt, a request that adds a new day is answered 429 (OTLP/gRPC: UNAVAILABLE) with a
`Retry-After` of when the debt is paid, which exporters honour; requests of days already recent
pass. A backfill of a year, one request a day apart each, goes at `rate_per_s` days a second.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection
from typing import Final

from clinotel.collector.errors import RefusedError

__all__ = ["DEFAULT_BURST", "DEFAULT_NEW_DAYS_PER_S", "MAX_NEW_DAYS_PER_S", "DayPacing"]

DEFAULT_NEW_DAYS_PER_S: Final = 32.0
"""New days a tenant may add a second (about an eighth of the writer's time, at 4 ms a day)."""
MAX_NEW_DAYS_PER_S: Final = 100_000.0
DEFAULT_BURST: Final = 64.0
RECENT_S: Final = 1.0
"""How long a day a tenant sent counts as already in the insert being gathered (two segments' time)."""


class DayPacing:
    """Per tenant: the days it sent lately and how many new days it may still add."""

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
        self._recent: dict[str, dict[int, float]] = {}
        """tenant -> day -> when a request of it was last admitted."""
        self._left: dict[str, tuple[float, float]] = {}
        """tenant -> (new days it may still add, when that was counted); below 0 is a debt."""

    def admit(self, tenant: str, days: Collection[int], today: int) -> None:
        """Count a request of `tenant` that arrived on day `today` and whose kept spans start on
        `days` (days since the epoch); raises `RefusedError` (throttled, with its retry delay)
        while the tenant is in debt and the request adds a day it did not send lately."""
        if self.rate_per_s <= 0:
            return
        days = [d for d in days if abs(d - today) > 1]
        if not days:
            return
        now = self._clock()
        with self._lock:
            recent = self._recent.setdefault(tenant, {})
            for day in [d for d, at in recent.items() if now - at > self.recent_s]:
                del recent[day]
            new = sum(1 for d in days if d not in recent)
            if new:
                left, at = self._left.get(tenant, (self.burst, now))
                left = min(self.burst, left + (now - at) * self.rate_per_s)
                if left < 0:
                    self._left[tenant] = (left, now)
                    wait = math.ceil(-left / self.rate_per_s)
                    refused = RefusedError(
                        "throttled",
                        f"this tenant's spans started on {new:,} days it sent none of in the last second, and it "
                        f"already added more days than the store takes a second ({self.rate_per_s:g}): retry after "
                        f"{wait} s, or send spans in time order (one day's spans together)",
                    )
                    refused.retry_after = wait
                    raise refused
                self._left[tenant] = (left - new, now)
            for d in days:
                recent[d] = now
