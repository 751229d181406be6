"""The alert state machine, per alert instance (a rule and its labels).

    inactive --breach--> pending --breach held for `for`--> firing --clear--> resolved --> inactive
                         pending --clear--> inactive (a flap held back by `for`)

With `keep_firing_for` (Prometheus's and Grafana's name), a firing instance resolves only once it
has read clear for that long: its first clear reading is recorded as `clearing`, a breach before
the time is up as `breach` (the clear streak starts over), neither a transition. A kill criterion's
interval, its canary stopped by the kill, hovers about 1 as the baseline moves: without it, the
demo's kill paged five times in five hours.

No data (too few rows, or none) follows the rule's `no_data`: `ok` clears, `keep` leaves the state
as it is, `alerting` counts as a breach. Under `ok`, a firing instance with rows but too few keeps
firing: fewer patients at night is no evidence of recovery (it resolved, then paged again). A
query error changes nothing and is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

__all__ = ["TOO_FEW_HOLD_S", "AlertState", "Hold", "Instance", "Reading", "State", "step"]

TOO_FEW_HOLD_S: Final = 12 * 3600
"""How long a firing instance under `no_data: ok` is held firing on too few rows, counted from when
it fired (`since`, which the evaluator rebuilds from the audit trail at every pass): a night's low
volume, not for ever. Counting from the first too-few reading was tried and taken out: that time
lived in one pass's memory, so the hold never ended. An incident firing longer than this loses the
hold at its next dip (it resolves, and pages again when its rows return)."""


class State(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Hold(StrEnum):
    """What a firing instance held by `keep_firing_for` read: recorded, not a transition."""

    CLEARING = "clearing"
    """Its first clear reading since its last breach: it keeps firing until the time is up."""
    BREACH = "breach"
    """A breach again while clearing: the clear streak starts over."""


class Reading(StrEnum):
    BREACH = "breach"
    CLEAR = "clear"
    NO_DATA = "nodata"


@dataclass(frozen=True)
class Instance:
    """One alert instance's identity."""

    rule: str
    labels: tuple[tuple[str, str], ...]


@dataclass
class AlertState:
    state: State = State.INACTIVE
    since: datetime | None = None
    """When the current state began."""
    fired_at: datetime | None = None
    clear_since: datetime | None = None
    """A firing instance's first clear reading since its last breach (`keep_firing_for`)."""


def step(
    current: AlertState, reading: Reading, now: datetime, for_s: int, no_data: str, keep_firing_s: int = 0,
    too_few: bool = False,
) -> State | Hold | None:  # fmt: skip
    """Apply one evaluation to `current` (in place); returns the new state when it changed, or
    what a firing instance held by `keep_firing_s` read when that is to be recorded. `too_few`: the
    no data is rows under the minimum sample, not none."""
    if reading is Reading.NO_DATA:
        held = (
            no_data == "ok"
            and too_few
            and current.state is State.FIRING
            and (current.since is None or (now - current.since).total_seconds() < TOO_FEW_HOLD_S)
        )
        if no_data == "keep" or held:
            return None
        reading = Reading.BREACH if no_data == "alerting" else Reading.CLEAR
    before = current.state
    if reading is Reading.BREACH:
        if before is State.FIRING and current.clear_since is not None:
            current.clear_since = None
            return Hold.BREACH if keep_firing_s > 0 else None  # (the rule no longer holds: nothing to record)
        if before in (State.INACTIVE, State.RESOLVED):
            current.state, current.since = State.PENDING, now
        pending = current.state is State.PENDING and current.since is not None
        if pending and (now - current.since).total_seconds() >= for_s:  # type: ignore[operator]
            current.state, current.since, current.fired_at = State.FIRING, now, now
    elif before is State.FIRING:
        if keep_firing_s > 0 and current.clear_since is None:
            current.clear_since = now
            return Hold.CLEARING
        if current.clear_since is not None and (now - current.clear_since).total_seconds() < keep_firing_s:
            return None
        current.state, current.since, current.clear_since = State.RESOLVED, now, None
    elif before in (State.PENDING, State.RESOLVED):
        current.state, current.since = State.INACTIVE, now
    return current.state if current.state is not before else None
