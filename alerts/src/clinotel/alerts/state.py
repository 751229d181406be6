"""The alert state machine, per alert instance (a rule and its labels).

    inactive --breach--> pending --breach held for `for`--> firing --clear--> resolved --> inactive
                         pending --clear--> inactive (a flap held back by `for`)

No data (too few rows, or none) follows the rule's `no_data`: `ok` clears, `keep` leaves the state
as it is, `alerting` counts as a breach. A query error changes nothing and is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["AlertState", "Instance", "Reading", "State", "step"]


class State(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


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


def step(current: AlertState, reading: Reading, now: datetime, for_s: int, no_data: str) -> State | None:
    """Apply one evaluation to `current` (in place); returns the new state when it changed."""
    if reading is Reading.NO_DATA:
        if no_data == "keep":
            return None
        reading = Reading.BREACH if no_data == "alerting" else Reading.CLEAR
    before = current.state
    if reading is Reading.BREACH:
        if before in (State.INACTIVE, State.RESOLVED):
            current.state, current.since = State.PENDING, now
        pending = current.state is State.PENDING and current.since is not None
        if pending and (now - current.since).total_seconds() >= for_s:  # type: ignore[operator]
            current.state, current.since, current.fired_at = State.FIRING, now, now
    elif before is State.FIRING:
        current.state, current.since = State.RESOLVED, now
    elif before in (State.PENDING, State.RESOLVED):
        current.state, current.since = State.INACTIVE, now
    return current.state if current.state is not before else None
