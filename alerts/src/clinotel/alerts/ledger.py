"""The audit trail is the evaluator's memory.

Every pass starts by reading `clinotel_alert_events`: the latest transition of each alert instance
is its state (and `for` is measured from the `pending` that began it), and the `notify_ok` /
`notify_failed` rows tell which notifications each receiver has had. So `alerts evaluate --once`
from cron, `--every` in a long process and `serve --rules` behave the same, a restart fires
nothing twice, and a delivery that failed is owed until a later pass (of any process) records it
delivered.

What is owed to a receiver, per instance:
- its episode is open (the instance is `firing`) and the receiver has no `notify_ok` trigger since
  it fired: the trigger;
- its episode closed (`resolved` after the last `firing`), the receiver had the trigger, and has no
  `notify_ok` resolve since the resolution: the resolve. A receiver never told of an episode is
  not told of its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.alerts.state import AlertState, Hold, Instance, Reading, State
from clinotel.model import tables
from clinotel.model.sql import identifier, literal

__all__ = ["LABELLED", "TRANSITIONS", "UNLABELLED", "Episode", "Ledger", "load", "ms", "when"]

TRANSITIONS: Final = tuple(s.value for s in State)
TRIGGER: Final = "trigger"
RESOLVE: Final = "resolve"
LABELLED: Final = "labelled"
"""A disparity instance's reference group became the one worse off: recorded, not paged."""
UNLABELLED: Final = "unlabelled"


def ms(t: datetime) -> int:
    """Milliseconds since the epoch (the audit trail's precision)."""
    return int(t.timestamp() * 1000)


def when(milliseconds: int) -> datetime | None:
    """The instant of a millisecond count; None for 0 (ClickHouse's empty maxIf)."""
    return datetime.fromtimestamp(milliseconds / 1000, UTC) if milliseconds > 0 else None


@dataclass
class Episode:
    """One instance's latest firing and resolution, as recorded."""

    fired_ms: int = 0
    resolved_ms: int = 0
    fired_value: float | None = None
    fired_sample: int = 0
    fired_figure: str = ""
    """The firing's figure in words (`decision.describe`), as the audit trail recorded it."""

    @property
    def open(self) -> bool:
        return self.fired_ms > 0 and self.fired_ms > self.resolved_ms


@dataclass
class Ledger:
    """What the audit trail says at the start of a pass."""

    states: dict[Instance, AlertState] = field(default_factory=dict)
    episodes: dict[Instance, Episode] = field(default_factory=dict)
    delivered: dict[tuple[Instance, str, str], int] = field(default_factory=dict)
    """(instance, receiver, trigger|resolve) -> the last `notify_ok`, ms."""
    failed: dict[tuple[Instance, str, str], tuple[int, int]] = field(default_factory=dict)
    """(instance, receiver, trigger|resolve) -> (the last `notify_failed` ms, its attempt number)."""
    labelled: dict[Instance, bool] = field(default_factory=dict)
    """Disparity instances whose reference group is, as last recorded, the one worse off."""

    def owed(self, instance: Instance, receiver: str) -> str | None:
        """`trigger`, `resolve` or None: what `receiver` has not had yet of this instance's episode."""
        episode = self.episodes.get(instance)
        if episode is None or episode.fired_ms == 0:
            return None
        told = self.delivered.get((instance, receiver, TRIGGER), 0) >= episode.fired_ms
        state = self.states.get(instance)
        if episode.open:
            return TRIGGER if not told and state is not None and state.state is State.FIRING else None
        resolved = self.delivered.get((instance, receiver, RESOLVE), 0) >= episode.resolved_ms
        return RESOLVE if told and not resolved else None

    def attempts(self, instance: Instance, receiver: str, kind: str) -> int:
        """Failed attempts already made at the owed notification (to number the next ones)."""
        episode = self.episodes.get(instance)
        last, attempt = self.failed.get((instance, receiver, kind), (0, 0))
        since = 0 if episode is None else (episode.fired_ms if kind == TRIGGER else episode.resolved_ms)
        return attempt if last >= since else 0


_LABELS: Final = "mapSort(Labels) AS InstanceLabels"
"""An instance's labels, grouped in one order: the same labels recorded in another order are
another Map to ClickHouse (earlier versions recorded an instance without rows in sorted order, the
same instance with rows in its query's)."""


def _instance(rule: str, labels: Any) -> Instance:
    items = labels.items() if isinstance(labels, dict) else labels
    return Instance(str(rule), tuple(sorted((str(k), str(v)) for k, v in items)))


def load(client: Any, database: str, rules: Iterable[str], now: datetime | None = None) -> Ledger:
    """The ledger of `rules` from `database`'s audit trail as it stood at `now` (raises what the
    store raises). Rows dated after `now` are not read: an evaluation cannot follow one that has
    not happened yet. A trail with future rows (a clock stepped back, a replay of simulated hours
    that ran ahead of the clock) otherwise hid every new transition behind them, and the
    evaluator made the same transition, and sent the same ticket, at every evaluation."""
    names = ", ".join(literal(r) for r in rules) or "''"
    table = f"{identifier(database)}.{identifier(tables.ALERT_EVENTS)}"
    events = ", ".join(literal(e) for e in TRANSITIONS)
    holds = ", ".join(literal(h.value) for h in Hold)
    transition = f"Event IN ({events})"
    until = "" if now is None else f" AND Timestamp <= fromUnixTimestamp64Milli({ms(now)})"
    ledger = Ledger()
    rows = client.query(
        f"SELECT Rule, {_LABELS}, argMaxIf(Event, Timestamp, {transition}), "
        f"toUnixTimestamp64Milli(maxIf(Timestamp, {transition})), "
        "toUnixTimestamp64Milli(maxIf(Timestamp, Event = 'firing')), "
        "toUnixTimestamp64Milli(maxIf(Timestamp, Event = 'resolved')), "
        "argMaxIf(Value, Timestamp, Event = 'firing'), argMaxIf(Sample, Timestamp, Event = 'firing'), "
        "argMaxIf(Detail, Timestamp, Event = 'firing'), "
        f"toUnixTimestamp64Milli(maxIf(Timestamp, Event = {literal(Hold.CLEARING.value)})), "
        f"toUnixTimestamp64Milli(maxIf(Timestamp, Event = {literal(Hold.BREACH.value)})) "
        f"FROM {table} WHERE Rule IN ({names}) AND Event IN ({events}, {holds}){until} GROUP BY Rule, InstanceLabels "
        f"HAVING countIf({transition}) > 0"
    ).result_rows
    for rule, labels, event, since, fired, resolved, value, sample, detail, clearing, breach in rows:
        instance = _instance(rule, labels)
        state = State(str(event))
        # the clear streak of a firing instance held by keep_firing_for: its last `clearing`, unless
        # a breach (or the firing itself) came after it
        held = state is State.FIRING and int(clearing) > max(int(fired), int(breach))
        clear_since = when(int(clearing)) if held else None
        ledger.states[instance] = AlertState(state, when(int(since)), when(int(fired)), clear_since)
        reading, _, figure = str(detail).partition(": ")
        ledger.episodes[instance] = Episode(
            int(fired), int(resolved), None if value is None else float(value), int(sample or 0),
            figure if reading == Reading.BREACH.value else "",
        )  # fmt: skip
    rows = client.query(
        f"SELECT Rule, {_LABELS}, Receiver, if(startsWith(Detail, {literal(RESOLVE)}), {literal(RESOLVE)}, "
        f"{literal(TRIGGER)}) AS kind, "
        "toUnixTimestamp64Milli(maxIf(Timestamp, Event = 'notify_ok')), "
        "toUnixTimestamp64Milli(maxIf(Timestamp, Event = 'notify_failed')), "
        "argMaxIf(Attempt, (Timestamp, Attempt), Event = 'notify_failed') "
        f"FROM {table} WHERE Rule IN ({names}) AND Event IN ('notify_ok', 'notify_failed'){until} "
        "GROUP BY Rule, InstanceLabels, Receiver, kind"
    ).result_rows
    for rule, labels, receiver, kind, ok, failed, attempt in rows:
        key = (_instance(rule, labels), str(receiver), str(kind))
        if int(ok) > 0:
            ledger.delivered[key] = int(ok)
        if int(failed) > 0:
            ledger.failed[key] = (int(failed), int(attempt or 0))
    rows = client.query(
        f"SELECT Rule, {_LABELS}, argMax(Event, Timestamp) FROM {table} WHERE Rule IN ({names}) "
        f"AND Event IN ({literal(LABELLED)}, {literal(UNLABELLED)}){until} GROUP BY Rule, InstanceLabels"
    ).result_rows
    for rule, labels, event in rows:
        ledger.labelled[_instance(rule, labels)] = str(event) == LABELLED
    return ledger
