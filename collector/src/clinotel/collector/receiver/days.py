"""Spans of many different days, paced per tenant.

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

- Each tenant may add `rate_per_s` new days a second, `burst` at once. A request its tenant's
  allowance cannot cover now is answered 429 (OTLP/gRPC: UNAVAILABLE with RetryInfo) with a
  `Retry-After` of when it can; a request of more than a burst waits for the whole burst and is
  charged a burst, so a wait is at most `burst / rate_per_s` (8 s), within the official
  exporters' 10 s deadline (Java's gRPC sender ignores the delay: its last retry may come first).
  Requests that add no new day always pass. There is no allowance for
  all tenants together: one let two tenants' stream of one-day requests keep a third tenant's
  backfill out for good (a review: every batch lost), so several tenants' tokens add up.
- A request of more than `MAX_NEW_DAYS` new days (only possible with a `--max-span-age-days` over
  a year) is refused whole (413, not retried): send spans in time order, a few days a request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

from clinotel.collector.errors import RefusedError

__all__ = [
    "BURST_S",
    "DEFAULT_NEW_DAYS_PER_S",
    "MAX_NEW_DAYS",
    "MAX_NEW_DAYS_PER_S",
    "MIN_NEW_DAYS_PER_S",
    "Charge",
    "DayPacing",
]

DEFAULT_NEW_DAYS_PER_S: Final = 32.0
"""New days a tenant may add a second (about an eighth of the writer's time, at 4 ms a day)."""
MIN_NEW_DAYS_PER_S: Final = 32.0
"""The least `--new-days-per-s` (the default): pacing is for a tenant that stalls the others, not a
quota to tighten."""
MAX_NEW_DAYS_PER_S: Final = 100_000.0
BURST_S: Final = 8.0
"""A tenant may add this many seconds' worth of new days at once (256 at the default rate), and a
wait is at most this long: eight exporter workers' batches of 45 days each, sent at once (a
backfill), went past the exporters' deadline with a burst of 64 (two of eight batches lost); 256
days cost the writer about a second. 5 s was tried for Java's OkHttp gRPC sender, which ignores
RetryInfo and makes its fifth and last try 6.5-9.7 s after its first (a review with the Java SDK
lost a quarter of a year-spread backfill at 8 s): it saved that single sender, but three
concurrent senders of one tenant then waited twice and one of three batches of the official Python
exporter passed its deadline (a review), which 8 s stores. A Java backfill not in time order
goes over OTLP/HTTP, whose `Retry-After` it honours (docs/instrumenting.md)."""
MAX_BURST: Final = 512.0
MAX_NEW_DAYS: Final = 400
"""The most new days one request may carry (the default `--max-span-age-days` allows 368 with the
day ahead): a request of more than a burst is charged a burst, so this bounds what one costs the
writer (400 days: about 1.6 s)."""
FREE_DAYS: Final = 8
"""A request's days charged in the last `recent_s` are free up to this many (a backfill's requests
of a day or two each); a request that sends more of them again pays for them all again: the same
362 days sent every 0.4 s were otherwise paid once a second and stored three times."""
RECENT_S: Final = 1.0
"""How long a day a tenant was charged for counts as already in the insert being gathered."""


@dataclass(frozen=True)
class Charge:
    """What `DayPacing.admit` charged a request: its tenant's new days, and when."""

    tenant: str
    cost: float
    days: tuple[int, ...]
    at: float
    sequence: int
    """The tenant's count of admitted requests with days other than live ones, this one's included."""


class DayPacing:
    """Per tenant: the days charged lately and the new days left."""

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
        """tenant -> (new days it may still add, when that was counted)."""
        self._admitted: dict[str, int] = {}
        """tenant -> requests with days other than live ones admitted (charged or free)."""

    def admit(self, tenant: str, days: Collection[int], today: int) -> Charge | None:
        """Count a request of `tenant` that arrived on day `today` and whose kept spans start on
        `days` (days since the epoch): what it was charged (None: nothing), to `refund` if it is
        not stored after all; raises `RefusedError`: too_large for more than `MAX_NEW_DAYS` new
        days, throttled (with its retry delay) when an allowance is short."""
        if self.rate_per_s <= 0:
            return None
        old = [d for d in days if abs(d - today) > 1]
        if not old:
            return None
        with self._lock:
            now = self._clock()
            charged = self._charged.setdefault(tenant, {})
            for day in [d for d, at in charged.items() if now - at > self.recent_s]:
                del charged[day]
            new = [d for d in old if d not in charged]
            if len(old) - len(new) > FREE_DAYS:  # many old days again: each is a part again
                new = old
            if not new:
                self._admitted[tenant] = self._admitted.get(tenant, 0) + 1
                return None
            if len(new) > MAX_NEW_DAYS:
                raise RefusedError(
                    "too_large",
                    f"the request's spans start on {len(new):,} days other than today's that this tenant did not "
                    f"send in the last second; one request may carry {MAX_NEW_DAYS}: send spans in time order, a few "
                    "days a request (each day is a partition of every table)",
                )
            # more than a whole burst waits for the whole burst, and is charged a burst: every wait
            # stays within `burst / rate_per_s` (8 s), inside the exporters' 10 s deadline
            cost = min(len(new), self.burst)
            mine = self._allowance(tenant, now)
            if mine < cost:
                wait = max(1, math.ceil((cost - mine) / self.rate_per_s))
                refused = RefusedError(
                    "throttled",
                    f"this request's spans start on {len(new)} days other than today's that its tenant did not send "
                    f"in the last second, more than its allowance has left ({self.rate_per_s:g} such days a second): "
                    f"retry after {wait} s, or send spans in time order (one day's spans together)",
                )
                refused.retry_after = wait
                raise refused
            self._left[tenant] = (mine - cost, now)
            for d in new:
                charged[d] = now
            sequence = self._admitted[tenant] = self._admitted.get(tenant, 0) + 1
            return Charge(tenant, cost, tuple(new), now, sequence)

    def refund(self, charge: Charge) -> None:
        """Give back what a request was charged when it was refused after `admit` (the log full):
        its allowance, and its days as not charged; only while no later request of its tenant
        with old days was admitted (one may have stored spans on those days for free: a review
        stored 5,120 new days in 0.2 s by refunding a request others rode on)."""
        with self._lock:
            if self._admitted.get(charge.tenant) != charge.sequence:
                return
            now = self._clock()
            self._left[charge.tenant] = (min(self.burst, self._allowance(charge.tenant, now) + charge.cost), now)
            charged = self._charged.get(charge.tenant, {})
            for d in charge.days:
                if charged.get(d) == charge.at:
                    del charged[d]

    def _allowance(self, tenant: str, now: float) -> float:
        left, at = self._left.get(tenant, (self.burst, now))
        return min(self.burst, left + (now - at) * self.rate_per_s)
