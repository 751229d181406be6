"""The evaluator: every rule against the store, the state machine per alert instance, the audit
trail in `clinotel_alert_events`, and notifications through the outbox.

Deduplicated: an instance notifies when it starts firing and when it resolves (Alertmanager is
also re-sent firing alerts each evaluation, which it deduplicates by labels, so they do not expire).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.alerts.paging import AlertmanagerSink, Attempt, Notification, Outbox
from clinotel.alerts.queries import Observation, observe
from clinotel.alerts.rules import Kind, Rule, RulePack
from clinotel.alerts.state import AlertState, Instance, Reading, State, step
from clinotel.collector import schema

__all__ = ["Evaluator", "Summary"]

logger: Final = logging.getLogger("clinotel.alerts")
RUNBOOK_BASE: Final = "https://github.com/clinotel/clinotel/blob/main/"


@dataclass
class Summary:
    """What one evaluation did."""

    rules: int = 0
    instances: int = 0
    transitions: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def firing(self) -> list[tuple[str, dict[str, str]]]:
        return [(r, labels) for r, labels, s in self.transitions if s == State.FIRING]


class Evaluator:
    """Evaluates `pack` against `client` (a clickhouse-connect client) in `database`."""

    def __init__(
        self,
        client: Any,
        pack: RulePack,
        outbox: Outbox,
        database: str = "clinotel",
        runbook_base: str = RUNBOOK_BASE,
    ) -> None:
        self.client = client
        self.pack = pack
        self.outbox = outbox
        self.database = database
        self.runbook_base = runbook_base
        self.states: dict[Instance, AlertState] = {}
        self._events: list[tuple[Any, ...]] = []

    def evaluate(self, now: datetime | None = None) -> Summary:
        """One pass over every rule at `now` (default: the current time)."""
        now = now or datetime.now(UTC)
        summary = Summary(rules=len(self.pack.rules))
        for rule in self.pack.rules:
            try:
                observations = observe(self.client, rule, self.database, now)
            except Exception as e:  # noqa: BLE001 - a failing rule is recorded, the others still run
                message = str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__
                summary.errors.append((rule.name, message))
                self._record(now, "", rule, {}, "error", None, 0, None, detail=message)
                continue
            self._apply(rule, observations, now, summary)
        for n in self._resend(now):
            self.outbox.add(n)
        summary.attempts = self.outbox.flush()
        for a in summary.attempts:
            self._record(
                now, a.notification.labels.get("tenant", ""), self._rule(a.notification.rule),
                a.notification.labels, "notify_ok" if a.ok else "notify_failed", None, 0, None,
                receiver=a.sink, attempt=a.attempt, detail=("resolve" if not a.notification.firing else "trigger")
                + (f": {a.detail}" if a.detail else ""),
            )  # fmt: skip
        self._flush_events()
        summary.instances = len(self.states)
        return summary

    def _rule(self, name: str) -> Rule:
        return next(r for r in self.pack.rules if r.name == name)

    def _apply(self, rule: Rule, observations: list[Observation], now: datetime, summary: Summary) -> None:
        seen: set[Instance] = set()
        for o in observations:
            labels = {"tenant": o.tenant, "kind": o.kind} if o.tenant or o.kind else {}
            if o.group:
                labels[rule.group_label] = o.group
            threshold, min_sample, disabled = rule.limits(o.tenant, o.kind)
            if disabled:
                continue
            instance = Instance(rule.name, tuple(sorted(labels.items())))
            seen.add(instance)
            if o.value is None or o.sample < min_sample:
                reading = Reading.NO_DATA
            elif rule.kind is Kind.DISPARITY:
                low, high = rule.band
                reading = Reading.BREACH if not low <= o.value <= high else Reading.CLEAR
            else:
                reading = Reading.BREACH if rule.comparison.holds(o.value, threshold) else Reading.CLEAR
            self._transition(rule, instance, labels, reading, o.value, o.sample, threshold, now, summary)
        # instances that produced no row at all this time: no data
        for instance, current in list(self.states.items()):
            if instance.rule == rule.name and instance not in seen and current.state is not State.INACTIVE:
                labels = dict(instance.labels)
                self._transition(rule, instance, labels, Reading.NO_DATA, None, 0, rule.threshold, now, summary)
        if not observations and rule.no_data == "alerting":
            instance = Instance(rule.name, ())
            self._transition(rule, instance, {}, Reading.NO_DATA, None, 0, rule.threshold, now, summary)

    def _transition(
        self, rule: Rule, instance: Instance, labels: dict[str, str], reading: Reading, value: float | None,
        sample: int, threshold: float, now: datetime, summary: Summary,
    ) -> None:  # fmt: skip
        current = self.states.setdefault(instance, AlertState())
        previous_since = current.fired_at
        changed = step(current, reading, now, rule.for_, rule.no_data)
        if changed is None:
            return
        summary.transitions.append((rule.name, labels, changed.value))
        tenant = labels.get("tenant", "")
        detail = reading.value if value is None else f"{reading.value}: {value:.4g} vs {threshold:g}"
        self._record(now, tenant, rule, labels, changed.value, value, sample, threshold, detail=detail)
        if changed is State.FIRING:
            self.outbox.add(self._notification(rule, labels, True, now, None, value))
        elif changed is State.RESOLVED:
            started = previous_since or now
            self.outbox.add(self._notification(rule, labels, False, started, now, value))

    def _notification(
        self, rule: Rule, labels: dict[str, str], firing: bool, starts: datetime, ends: datetime | None,
        value: float | None,
    ) -> Notification:  # fmt: skip
        annotations = {
            "summary": rule.summary,
            "runbook_url": self.runbook_base + rule.runbook,
        }
        if value is not None:
            annotations["value"] = f"{value:.4g}"
        return Notification(
            rule.name, {**rule.labels, **labels}, annotations, rule.severity, firing, starts, ends,
            generator_url=f"clinotel://alerts/{rule.name}",
        )  # fmt: skip

    def _resend(self, now: datetime) -> list[Notification]:
        """Firing alerts again for Alertmanager, which expects them re-sent until they end."""
        if not any(isinstance(s, AlertmanagerSink) for s in self.outbox.page):
            return []
        out = []
        for instance, current in self.states.items():
            if current.state is State.FIRING and current.fired_at is not None and current.fired_at < now:
                rule = self._rule(instance.rule)
                if rule.severity == "page":
                    n = self._notification(rule, dict(instance.labels), True, current.fired_at, None, None)
                    out.append(n)
        return out

    def _record(
        self, now: datetime, tenant: str, rule: Rule, labels: dict[str, str], event: str, value: float | None,
        sample: int, threshold: float | None, receiver: str = "", attempt: int = 0, detail: str = "",
    ) -> None:  # fmt: skip
        self._events.append(
            (now, tenant, rule.name, labels, event, rule.severity, value, sample, threshold, receiver, attempt, detail)
        )

    def _flush_events(self) -> None:
        if not self._events:
            return
        table = f"{self.database}.{schema.ALERT_EVENTS}"
        try:
            self.client.insert(table, self._events, column_names=list(schema.ALERT_EVENT_COLUMNS))
        except Exception as e:  # noqa: BLE001 - kept and written with the next evaluation
            logger.warning("could not write %d alert events (kept for the next evaluation): %s", len(self._events), e)
            return
        self._events = []
