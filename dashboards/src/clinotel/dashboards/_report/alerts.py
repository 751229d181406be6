"""What the alerts did, from their audit trail (`clinotel_alert_events`): each instance's episodes
(pending, firing, resolved) with the value that fired it and the notifications sent.

Transitions and notifications of one evaluation share its timestamp, so within one instant the
events are put in the order they happen: pending, firing, the trigger's notifications, resolved,
the resolution's notifications. A notification is never listed before the firing it announces.

The report reads the rules (`AlertRule`, which `clinotel.alerts.rules.Rule` satisfies) only
when the caller has them: their summary, window, runbook and metric. Without them it shows what
the audit trail holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from clinotel.dashboards._report.fmt import Quantity, quantity_of
from clinotel.dashboards._report.labels import label, value_text
from clinotel.dashboards.macros import TimeRange
from clinotel.model import tables
from clinotel.model.indicators import INDICATORS
from clinotel.model.signals import SIGNALS
from clinotel.model.sql import identifier, literal

__all__ = [
    "AlertRule",
    "Episode",
    "Event",
    "episodes",
    "instance_label",
    "load_events",
    "ordered",
    "rules_by_name",
    "value_quantity",
]

_ORDER: Final = {"pending": 0, "firing": 1, "notify:trigger": 2, "resolved": 3, "notify:resolve": 4, "inactive": 5}
RATIO_KINDS: Final = frozenset({"baseline", "canary", "disparity"})


class AlertRule(Protocol):
    """What the report reads of an alert rule (`clinotel.alerts.rules.Rule` has all of it)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def comparison(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def window(self) -> int: ...
    @property
    def min_sample(self) -> int: ...
    @property
    def severity(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def band(self) -> tuple[float, float]: ...
    @property
    def runbook(self) -> str: ...


@dataclass(frozen=True)
class Event:
    at: datetime
    tenant: str
    rule: str
    labels: tuple[tuple[str, str], ...]
    event: str
    severity: str
    value: float | None
    sample: int
    threshold: float | None
    receiver: str
    detail: str

    @property
    def step(self) -> str:
        """The event's place in an instant's order (notifications by what they announce)."""
        if self.event in ("notify_ok", "notify_failed"):
            return "notify:resolve" if self.detail.startswith("resolve") else "notify:trigger"
        return self.event


@dataclass
class Episode:
    """One firing of one alert instance."""

    rule: str
    labels: tuple[tuple[str, str], ...]
    severity: str
    fired: datetime
    resolved: datetime | None = None
    pending: datetime | None = None
    value: float | None = None
    sample: int = 0
    threshold: float | None = None
    delivered: list[str] = field(default_factory=list)
    failed: int = 0


def load_events(client: Any, database: str, tr: TimeRange, windows: dict[str, int] | None = None) -> list[Event]:
    """Every transition and notification in the range, in the order they happened; and those of
    an evaluation after the range whose rule's window (seconds, `windows` by rule) began inside
    it: it read the range's data. An evaluator runs on the wall clock, after the data it reads:
    the report's default range ends at the data's last span, and left out every alert the
    evaluation of that data raised."""
    windows = windows or {}
    table = f"{identifier(database)}.{identifier(tables.ALERT_EVENTS)}"
    after = "".join(
        f" OR (Rule = {literal(rule)} AND Timestamp < toDateTime64({tr.to_ms / 1000 + seconds:.3f}, 3))"
        for rule, seconds in sorted(windows.items())
    )
    rows = client.query(
        "SELECT Timestamp, TenantId, Rule, Labels, Event, Severity, Value, Sample, Threshold, Receiver, Detail "
        f"FROM {table} WHERE Timestamp >= toDateTime64({tr.from_ms / 1000:.3f}, 3) "
        f"AND (Timestamp <= toDateTime64({tr.to_ms / 1000:.3f}, 3){after}) AND Event != 'error' "
        "ORDER BY Timestamp LIMIT 20000"
    ).result_rows
    events = [
        Event(
            at=at if at.tzinfo else at.replace(tzinfo=UTC),
            tenant=str(tenant),
            rule=str(rule),
            labels=tuple(sorted((str(k), str(v)) for k, v in dict(labels).items())),
            event=str(event),
            severity=str(severity),
            value=None if value is None else float(value),
            sample=int(sample or 0),
            threshold=None if threshold is None else float(threshold),
            receiver=str(receiver),
            detail=str(detail),
        )
        for at, tenant, rule, labels, event, severity, value, sample, threshold, receiver, detail in rows
    ]
    return ordered(events)


def ordered(events: Sequence[Event]) -> list[Event]:
    """Events by time, and within one instant and rule in the order they happen (transitions
    before the notifications announcing them: a notification's labels add the rule's own, such as
    its team, so they do not name the instance alone)."""
    return sorted(events, key=lambda e: (e.at, e.rule, _ORDER.get(e.step, 9), e.labels))


def episodes(events: Sequence[Event]) -> list[Episode]:
    """Each instance's firings, in the order they began."""
    found: list[Episode] = []
    open_: dict[tuple[str, tuple[tuple[str, str], ...]], Episode] = {}
    pending: dict[tuple[str, tuple[tuple[str, str], ...]], datetime] = {}
    for e in events:
        key = (e.rule, e.labels)
        if e.event == "pending":
            pending[key] = e.at
        elif e.event == "firing":
            episode = Episode(e.rule, e.labels, e.severity, e.at, pending=pending.pop(key, None), value=e.value,
                              sample=e.sample, threshold=e.threshold)  # fmt: skip
            open_[key] = episode
            found.append(episode)
        elif e.event == "resolved" and key in open_:
            open_.pop(key).resolved = e.at
        elif e.event == "inactive":
            pending.pop(key, None)
        elif e.step == "notify:trigger" and (told := _announced(open_, e)) is not None:
            if e.event == "notify_ok":
                told.delivered.append(e.receiver)
            else:
                told.failed += 1
    return found


def _announced(open_: dict[tuple[str, tuple[tuple[str, str], ...]], Episode], e: Event) -> Episode | None:
    """The open episode a notification announces: its rule's, with the instance's labels among
    the notification's (which add the rule's static labels)."""
    exact = open_.get((e.rule, e.labels))
    if exact is not None:
        return exact
    told = set(e.labels)
    found = [ep for (rule, labels), ep in open_.items() if rule == e.rule and set(labels) <= told]
    return max(found, key=lambda ep: len(ep.labels), default=None)


def instance_label(labels: Sequence[tuple[str, str]], tenants: int) -> str:
    """An instance's labels as words: its workflow kind and group (and tenant, when several)."""
    parts = []
    for key, value in labels:
        if key == "tenant":
            if tenants > 1:
                parts.append(f"tenant {value}")
        elif key == "kind":
            parts.append(value_text(key, value))
        else:
            parts.append(f"{label(key).text}: {value_text(key, value)}")
    return " · ".join(parts)


def value_quantity(rule: AlertRule | None) -> Quantity:
    """How an alert's value reads: a ratio for ratio rules, else the indicator's quantity."""
    if rule is None:
        return "number"
    if str(rule.kind) in RATIO_KINDS:
        return "ratio"
    figure = INDICATORS.get(rule.metric) or SIGNALS.get(rule.metric)  # a signal: a rate, or a count of feedback
    return quantity_of(figure.unit) if figure is not None else "count"


def rules_by_name(rules: Sequence[AlertRule]) -> Mapping[str, AlertRule]:
    return {r.name: r for r in rules}
