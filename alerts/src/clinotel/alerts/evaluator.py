"""The evaluator: every rule against the store, the state machine per alert instance, the audit
trail in `clinotel_alert_events`, and notifications through the outbox.

The audit trail is also the evaluator's state (`ledger`): each pass reads it first, so a pass
behaves the same in a fresh process (cron) as in a long-running one, and holds a lease (`lease`) so
two evaluators on one store never both page. A pass records its transitions before telling anyone,
then delivers what is owed (new firings and resolutions, and what earlier passes failed to
deliver), then records every attempt: a crash in between sends a notification again rather than
never (Alertmanager and PagerDuty deduplicate by labels and key).

Deduplicated: an instance notifies when it starts firing and when it resolves (Alertmanager is
also re-sent firing alerts each evaluation, which it deduplicates by labels, so they do not expire).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from clinotel.alerts.actions import ChangeRecorder, FlagSwitch, Outcome
from clinotel.alerts.decision import breaches, criterion, describe, instance_labels, reference_worse_off
from clinotel.alerts.lease import DEFAULT_LEASE_S, Lease
from clinotel.alerts.ledger import LABELLED, RESOLVE, TRIGGER, UNLABELLED, Episode, Ledger, load, ms, when
from clinotel.alerts.paging import Attempt, Notification, Outbox
from clinotel.alerts.queries import MAX_INSTANCES_PER_TENANT, Observation, observe
from clinotel.alerts.rules import RUNBOOK_BASE, Kind, Rule, RulePack
from clinotel.alerts.state import AlertState, Hold, Instance, Reading, State, step
from clinotel.model import tables
from clinotel.model.changes import describe as describe_changes
from clinotel.model.changes import recent_changes
from clinotel.model.store import first_line
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = ["DEFAULT_LEASE_S", "STORE", "Evaluator", "Summary"]

logger: Final = logging.getLogger("clinotel.alerts")
STORE: Final = "(store)"
"""The rule name of errors that concern the store rather than one rule."""


@dataclass
class Summary:
    """What one evaluation did."""

    rules: int = 0
    instances: int = 0
    transitions: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    skipped: str | None = None
    """Why the pass did nothing (another evaluator holds the lease), or None."""
    labelled: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    """Disparity instances whose reference group became (or stopped being) the one worse off:
    recorded, not paged."""
    actions: list[tuple[str, str, Outcome]] = field(default_factory=list)
    """(rule, what it switched off, the outcome) of each kill-switch action this pass ran."""

    @property
    def firing(self) -> list[tuple[str, dict[str, str]]]:
        return [(r, labels) for r, labels, s in self.transitions if s == State.FIRING]

    @property
    def undelivered(self) -> list[Attempt]:
        """The last attempt of each notification that no attempt of this pass delivered."""
        last: dict[tuple[str, int], Attempt] = {}
        delivered: set[tuple[str, int]] = set()
        for a in self.attempts:
            key = (a.sink, id(a.notification))
            last[key] = a
            if a.ok:
                delivered.add(key)
        return [a for key, a in last.items() if key not in delivered]


class Evaluator:
    """Evaluates `pack` against `client` (clickhouse-connect's reading calls) in `database`;
    records through `recorder` (an `insert` like clickhouse-connect's; default: `client`).
    `lease_s`: how long a pass's claim on the store lasts without renewal; None: no lease (a
    caller that is alone by construction). `holder`: the lease holder's name, stable across
    restarts for an evaluator that is one of a kind (a collector's), so it resumes its own lease."""

    def __init__(
        self,
        client: Any,
        pack: RulePack,
        outbox: Outbox,
        database: str = DEFAULT_DATABASE,
        runbook_base: str = RUNBOOK_BASE,
        recorder: Any | None = None,
        lease_s: float | None = DEFAULT_LEASE_S,
        holder: str | None = None,
        switch: FlagSwitch | None = None,
        dry_run: bool = False,
        on_change: ChangeRecorder | None = None,
        changes_hours: float = 24.0,
    ) -> None:
        self.client = client
        self.recorder = recorder if recorder is not None else client
        self.pack = pack
        self.outbox = outbox
        self.database = database
        self.runbook_base = runbook_base
        self.lease = Lease(client, self.recorder, database, lease_s, holder) if lease_s is not None else None
        self.states: dict[Instance, AlertState] = {}
        self._ledger = Ledger()
        self._events: list[tuple[Any, ...]] = []
        # kill switch: `switch` turns flags off for rules with an action (`dry_run`: says what it
        # would do); `on_change` records each action as a change event
        self.switch = switch
        self.dry_run = dry_run
        self.on_change = on_change
        self.changes_hours = changes_hours
        self._pending: list[tuple[Rule, Instance, float | None, int, float, str]] = []
        self._notes: dict[Instance, str] = {}
        self._changed: dict[tuple[str, str, datetime], str] = {}
        """This pass's change lists by (tenant, kind, start): one query for every alert that shares them."""

    def evaluate(self, now: datetime | None = None) -> Summary:
        """One pass over every rule at `now` (default: the current time)."""
        now = now or datetime.now(UTC)
        summary = Summary(rules=len(self.pack.rules))
        self._events = []
        self._changed = {}
        table = f"{self.database}.{tables.ALERT_EVENTS}"
        try:
            held = self.lease.acquire() if self.lease is not None else None
        except Exception as e:  # noqa: BLE001 - reported: without its state the evaluator must not page
            summary.errors.append((STORE, f"cannot keep the alert state in {table}: {first_line(e, 500)}"))
            return summary
        if held is not None:
            summary.skipped = (
                f"another evaluator ({held.holder}) holds this store's alert evaluation until "
                f"{held.until:%Y-%m-%d %H:%M:%S} UTC"
            )
            return summary
        try:
            self._ledger = load(self.client, self.database, [r.name for r in self.pack.rules], now)
        except Exception as e:  # noqa: BLE001 - reported: without its state the evaluator must not page
            summary.errors.append((STORE, f"cannot read the alert state from {table}: {first_line(e, 500)}"))
            return summary
        self.states = self._ledger.states
        for rule in self.pack.rules:
            cap = rule.kind is Kind.SDK  # a tenant's services are named at will; kinds and groups are all judged
            try:
                observations = observe(self.client, rule, self.database, now, capped=cap)
            except Exception as e:  # noqa: BLE001 - a failing rule is recorded, the others still run
                message = first_line(e, 500)
                summary.errors.append((rule.name, message))
                self._record(now, "", rule, {}, "error", None, 0, None, detail=message)
                continue
            observations, capped = _capped(observations) if cap else (observations, frozenset())
            for tenant in sorted(capped):
                message = (
                    f"tenant {tenant!r} has more than {MAX_INSTANCES_PER_TENANT} services for this rule: the "
                    f"{MAX_INSTANCES_PER_TENANT} with the most export batches were evaluated, the others keep "
                    "their state"
                )
                summary.errors.append((rule.name, message))
                self._record(now, tenant, rule, {}, "error", None, 0, None, detail=message)
            self._apply(rule, observations, now, summary, capped)
        summary.instances = len(self.states)
        # what changed is in the store before anyone is told: a pass that cannot record pages nobody
        if not self._flush_events(summary):
            return summary
        self._run_actions(now, summary)
        self._queue_owed(now)
        summary.attempts = self.outbox.flush()
        for a in summary.attempts:
            kind = TRIGGER if a.notification.firing else RESOLVE
            # under the instance's own labels: with the rule's static labels (`team`) in them, the
            # delivery matched no instance and the next pass owed, and sent, the same notification again
            self._record(
                now, a.notification.labels.get("tenant", ""), self._rule(a.notification.rule),
                a.notification.instance_labels, "notify_ok" if a.ok else "notify_failed",
                None, 0, None,
                receiver=a.sink, attempt=a.attempt, detail=kind + (f": {a.detail}" if a.detail else ""),
            )  # fmt: skip
        self._flush_events(summary)
        return summary

    def close(self) -> None:
        """Give up the lease and close the outbox's sinks (an evaluator that stops)."""
        try:
            if self.lease is not None:
                self.lease.release()
        finally:
            self.outbox.close()

    def _rule(self, name: str) -> Rule:
        return next(r for r in self.pack.rules if r.name == name)

    def _apply(
        self, rule: Rule, observations: list[Observation], now: datetime, summary: Summary,
        capped: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        """Each observation's reading; an instance without a row reads no data, unless its tenant's
        instances were `capped` (it may be one of those left out)."""
        seen: set[Instance] = set()
        for o in observations:
            labels = instance_labels(rule, o)
            threshold, min_sample, disabled = rule.limits(o.tenant, o.kind)
            if disabled:
                continue
            instance = Instance(rule.name, tuple(sorted(labels.items())))
            seen.add(instance)
            if o.decide is None or o.sample < min_sample:
                reading = Reading.NO_DATA
            else:
                reading = Reading.BREACH if breaches(rule, o.decide, threshold) else Reading.CLEAR
            if rule.kind is Kind.DISPARITY and not rule.page_reference_worse:
                self._label(rule, instance, labels, o, min_sample, now, summary)
            too_few = o.sample < min_sample  # rows, but too few: a firing instance is not thereby recovered
            self._transition(rule, instance, labels, reading, o, threshold, now, summary, too_few)
        # instances that produced no row at all this time: no data; but the rule's unlabelled
        # instance of a rule whose rows are labelled (collector rules per `instance`) stands for
        # "no rows at all" (below), and rows are back: it clears. It read no data at every pass
        # instead, and fired for good once a first pass on a new store, or after a full disk, found
        # no figures (an operator's review)
        for instance, current in list(self.states.items()):
            if (
                instance.rule == rule.name
                and instance not in seen
                and current.state is not State.INACTIVE
                and dict(instance.labels).get("tenant", "") not in capped
            ):
                labels = dict(instance.labels)
                reading = Reading.CLEAR if not instance.labels and seen else Reading.NO_DATA
                self._transition(rule, instance, labels, reading, None, rule.threshold, now, summary)
        if not observations and rule.no_data == "alerting":
            instance = Instance(rule.name, ())
            self._transition(rule, instance, {}, Reading.NO_DATA, None, rule.threshold, now, summary)

    def _label(
        self, rule: Rule, instance: Instance, labels: dict[str, str], o: Observation, min_sample: int,
        now: datetime, summary: Summary,
    ) -> None:  # fmt: skip
        """Record when the reference group becomes (or stops being) the one worse off: labelled in
        the audit trail, not paged."""
        worse = o.sample >= min_sample and reference_worse_off(rule, o)
        if worse == self._ledger.labelled.get(instance, False):
            return
        self._ledger.labelled[instance] = worse
        detail = f"reference group worse off: {describe(rule, o)}" if worse else "reference group no longer worse off"
        summary.labelled.append((rule.name, labels, detail))
        self._record(now, labels.get("tenant", ""), rule, labels, LABELLED if worse else UNLABELLED, o.value,
                     o.sample, None, detail=detail)  # fmt: skip

    def _transition(
        self, rule: Rule, instance: Instance, labels: dict[str, str], reading: Reading, o: Observation | None,
        threshold: float, now: datetime, summary: Summary, too_few: bool = False,
    ) -> None:  # fmt: skip
        current = self.states.setdefault(instance, AlertState())
        changed = step(current, reading, now, rule.for_, rule.no_data, rule.keep_firing_for, too_few)
        if changed is None:
            return
        value = None if o is None else o.value
        sample = 0 if o is None else o.sample
        figure = "" if o is None or o.value is None else describe(rule, o, threshold)
        detail = f"{reading.value}: {figure}" if figure else reading.value
        held = isinstance(changed, Hold)  # kept firing by keep_firing_for: recorded, so the next pass holds it too
        if held:
            detail += f"; firing until clear for {rule.keep_firing_for}s"
        tenant = labels.get("tenant", "")
        self._record(now, tenant, rule, labels, changed.value, value, sample, threshold, detail=detail)
        if held:
            return
        summary.transitions.append((rule.name, labels, changed.value))
        episode = self._ledger.episodes.setdefault(instance, Episode())
        if changed is State.FIRING:
            episode.fired_ms, episode.fired_value = ms(now), value
            episode.fired_sample, episode.fired_figure = sample, figure if reading is Reading.BREACH else ""
            if rule.action is not None:
                self._pending.append((rule, instance, value, sample, threshold, figure))
        elif changed is State.RESOLVED:
            episode.resolved_ms = ms(now)

    def _queue_owed(self, now: datetime) -> None:
        """Everything a receiver has not had yet (new firings and resolutions, and what earlier
        passes failed to deliver); and the firing alerts again for Alertmanager."""
        rules = {r.name: r for r in self.pack.rules}
        for instance, episode in self._ledger.episodes.items():
            rule = rules.get(instance.rule)
            if rule is None or episode.fired_ms == 0:
                continue
            fired_at = when(episode.fired_ms) or now
            labels = dict(instance.labels)
            for sink in self.outbox.sinks(rule.severity):
                kind = self._ledger.owed(instance, sink.name)
                if kind == TRIGGER:
                    n = self._notification(rule, labels, True, fired_at, None, episode)
                elif kind == RESOLVE:
                    n = self._notification(rule, labels, False, fired_at, when(episode.resolved_ms), None)
                elif (
                    getattr(sink, "resend_firing", False)
                    and episode.open
                    and fired_at < now
                    and self.states.get(instance, AlertState()).state is State.FIRING
                ):
                    # Alertmanager expects firing alerts re-sent until they end; it deduplicates them, and
                    # keeps the annotations last sent: the same as the first
                    n = self._notification(rule, labels, True, fired_at, None, episode)
                else:
                    continue
                self.outbox.add(n, [sink], tried=self._ledger.attempts(instance, sink.name, kind or TRIGGER))

    def _notification(
        self, rule: Rule, labels: dict[str, str], firing: bool, starts: datetime, ends: datetime | None,
        episode: Episode | None,
    ) -> Notification:  # fmt: skip
        """A notification says the rule's criterion for this instance (overrides applied) and a
        firing's what fired it, the figure and its sample, so the person paged need not open the
        rules. A re-sent firing carries the same (Alertmanager keeps the annotations last sent)."""
        threshold, min_sample, _ = rule.limits(labels.get("tenant", ""), labels.get("kind", ""))
        annotations = {
            "summary": rule.summary,
            "runbook_url": self.runbook_base + rule.runbook,
            "criterion": criterion(rule, threshold, min_sample),
        }
        if firing and episode is not None and episode.fired_value is not None:
            annotations["value"] = f"{episode.fired_value:.4g}"
        if firing and episode is not None and episode.fired_figure:
            annotations["observed"] = f"{episode.fired_figure} ({episode.fired_sample:,} in the sample)"
        note = self._notes.get(Instance(rule.name, tuple(sorted(labels.items()))))
        if firing and note:
            annotations["action"] = note
        if firing:
            changed = self._changes(labels, starts)
            if changed:
                annotations["changes"] = changed
        return Notification(
            rule.name, {**rule.labels, **labels}, annotations, rule.severity, firing, starts, ends,
            generator_url=f"clinotel://alerts/{rule.name}", instance_labels=dict(labels),
        )  # fmt: skip

    def _run_actions(self, now: datetime, summary: Summary) -> None:
        """Each new firing's kill-switch action: switch, audit, record the change, note it for the page."""
        pending, self._pending = self._pending, []
        for rule, instance, value, sample, threshold, figure in pending:
            assert rule.action is not None
            labels = dict(instance.labels)
            tenant = labels.get("tenant", "")
            made = rule.action.disable_flag.for_tenant(tenant)
            action = made or rule.action.disable_flag
            if made is None:
                outcome = Outcome(
                    "skipped", f"the switch is tenant {action.tenant}'s; this alert is {tenant or 'no'} tenant's"
                )
            elif self.switch is None and self.dry_run:
                outcome = Outcome("dry_run", "no flag switch is configured: a real run could not switch it")
            elif self.switch is None:
                outcome = Outcome("failed", "no flag switch configured (a flagd file or a flag webhook)")
            else:
                try:
                    outcome = self.switch.disable(action, rule.name, self.dry_run)
                except Exception as e:  # noqa: BLE001 - a failed switch is audited and paged, not raised
                    outcome = Outcome("failed", first_line(e, 500))
            summary.actions.append((rule.name, action.describe(), outcome))
            receiver = self.switch.name if self.switch else ""
            detail = f"{outcome.result}: {outcome.detail}" + (f" (on {figure})" if figure else "")
            self._record(
                now, labels.get("tenant", ""), rule, labels, "action", value, sample, threshold, receiver, 0, detail
            )
            verb = {"applied": "switched", "unchanged": "already", "dry_run": "dry run: would switch",
                    "skipped": "did not switch"}  # fmt: skip
            told = outcome.result not in verb or (outcome.result == "dry_run" and self.switch is None)
            self._notes[instance] = f"{verb.get(outcome.result, 'FAILED to switch')} {action.describe()}" + (
                f": {outcome.detail}" if told else ""
            )
            if self.on_change is not None and outcome.result not in ("failed", "skipped"):
                try:
                    self.on_change(action, rule.name, outcome, now, labels.get("tenant", ""))
                except Exception as e:  # noqa: BLE001 - the switch happened; its change event is reported
                    summary.errors.append((rule.name, f"cannot record the change event: {first_line(e, 500)}"))
        self._flush_events(summary)

    def _changes(self, labels: dict[str, str], starts: datetime) -> str:
        """'What changed in the last N hours' in the alert's tenant and workflow kind ('' on error).
        An alert of no tenant (the collector's own rules) has none: every tenant's changes, with
        no tenant named, went into the operator's page (2026-12-07 review)."""
        tenant = labels.get("tenant")
        if self.changes_hours <= 0 or not tenant:
            return ""
        kind = labels.get("kind", "")
        key = (tenant, kind, starts)
        if key in self._changed:  # a query per alert was 5,000 a pass for one tenant's 5,000 services
            return self._changed[key]
        scope = {"workflow_kind": kind} if kind else {}
        since = starts - timedelta(hours=self.changes_hours)
        try:
            found = recent_changes(
                self.client, self.database, since, starts + timedelta(minutes=1), tenant=tenant, scope=scope,
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - a page without its change list still pages
            logger.warning("could not read the recent changes: %s", first_line(e, 500))
            found = []
        self._changed[key] = describe_changes(found, self.changes_hours) if found else ""
        return self._changed[key]

    def _record(
        self, now: datetime, tenant: str, rule: Rule, labels: dict[str, str], event: str, value: float | None,
        sample: int, threshold: float | None, receiver: str = "", attempt: int = 0, detail: str = "",
    ) -> None:  # fmt: skip
        # labels in one order whoever records them: a Map of the same labels in another order is another
        # value to ClickHouse, and the ledger would read one instance as two
        canonical = dict(sorted(labels.items()))
        self._events.append(
            (
                now,
                tenant,
                rule.name,
                canonical,
                event,
                rule.severity,
                value,
                sample,
                threshold,
                receiver,
                attempt,
                detail,
            )
        )

    def _flush_events(self, summary: Summary) -> bool:
        """Write the pass's events; False (and an error in `summary`) when the store refused them."""
        if not self._events:
            return True
        table = f"{self.database}.{tables.ALERT_EVENTS}"
        try:
            self.recorder.insert(table, self._events, column_names=list(tables.ALERT_EVENT_COLUMNS))
        except Exception as e:  # noqa: BLE001 - reported; the next pass starts again from what is stored
            failed = f"cannot record {len(self._events)} alert event(s) in {table}: {first_line(e, 500)}"
            summary.errors.append((STORE, failed))
            logger.warning("could not record %d alert events: %s", len(self._events), e)
            return False
        finally:
            self._events = []
        return True


def _capped(observations: list[Observation]) -> tuple[list[Observation], frozenset[str]]:
    """`observations` without the row past `MAX_INSTANCES_PER_TENANT` a capped query returns for a
    tenant that had more, and those tenants."""
    count: dict[str, int] = {}
    kept, capped = [], set()
    for o in observations:
        count[o.tenant] = count.get(o.tenant, 0) + 1
        if count[o.tenant] > MAX_INSTANCES_PER_TENANT:
            capped.add(o.tenant)
        else:
            kept.append(o)
    return kept, frozenset(capped)
