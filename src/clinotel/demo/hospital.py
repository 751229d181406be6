"""Run planned workflows through clinotel.instrumentation, exactly as a hospital service would.

Span times come from a simulation clock, so twelve hours of a hospital run in seconds while
every stage keeps its planned duration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import clinotel.instrumentation as ct
from clinotel.demo.scenario import CHANGES, FLAG_KEY, Scenario, WorkflowPlan
from clinotel.semconv import attributes as A

__all__ = [
    "EhrTimeoutError", "LateTruth", "SimClock", "record_changes", "record_truths", "run_workflow", "run_workflows",
]  # fmt: skip


class SimClock:
    """A nanosecond clock the simulation moves; pass it to `configure(clock=...)`."""

    def __init__(self, base_ns: int) -> None:
        self.base_ns = base_ns
        self.now = base_ns

    def __call__(self) -> int:
        return self.now

    def at(self, offset_ms: float) -> None:
        self.now = self.base_ns + int(offset_ms * 1e6)

    def advance(self, ms: float) -> None:
        self.now += int(ms * 1e6)


class EhrTimeoutError(Exception):
    """The EHR did not answer in time (the demo's ingest incident)."""


@dataclass(frozen=True, slots=True)
class LateTruth:
    """Ground truth to record later: when, for whom, and what."""

    offset_ms: float
    kind: str
    identifier: str
    traceparent: str
    label: str
    escalation_needed: bool | None = None


def run_workflow(plan: WorkflowPlan, clock: SimClock) -> LateTruth | None:
    """Run one planned workflow; returns the late ground truth it will receive, if any."""
    clock.at(plan.offset_ms)
    with ct.workflow(
        plan.kind,
        identifier=plan.identifier,
        site=plan.site,
        department=plan.department,
        service_line=plan.service_line,
        cohort=ct.Cohort.model_validate(plan.cohort),
    ) as wf:
        try:
            with ct.stage("ingest", attributes={A.INGEST_SOURCE.key: plan.ingest_source.value}):
                clock.advance(plan.ingest_ms)
                if plan.ingest_error is not None:
                    # The message names the patient, as real client libraries do; the PHI gate
                    # redacts it before export.
                    raise EhrTimeoutError(f"{plan.ingest_error} reading chart MRN {plan.identifier}")
        except EhrTimeoutError:
            with ct.stage("complete") as st:
                st.record_outcome(status="error")
            return None

        carrier = wf.enqueue(plan.queue_name, depth=plan.queue_depth)
        clock.advance(plan.queue_ms)
        with ct.dequeue(carrier):
            with ct.stage("decide") as st:
                clock.advance(plan.decide_ms)
                if plan.flag_variant is not None:
                    st.record_flag(FLAG_KEY, plan.flag_variant, provider="flagd", reason=plan.flag_reason)
                st.record_decision(**plan.decision)
                if plan.worth.inputs:
                    st.record_inputs(**plan.worth.inputs)
                st.record_data_quality(**plan.worth.quality)
                if plan.shadow is not None:
                    st.record_shadow(**plan.shadow)
            if plan.review is not None:
                with ct.stage("review") as st:
                    clock.advance(plan.review_ms)
                    st.record_review(**plan.review)
                    st.record_effort(**plan.worth.effort)
                    for category, severity in plan.worth.feedback:
                        ct.record_feedback(category, severity, actor_role=str(plan.review["actor_role"]))
            with ct.stage("act") as st:
                clock.advance(plan.act_ms)
                st.record_action(**plan.action)
                if plan.scheduling:
                    st.set_many({f"clinical.scheduling.{k}": v for k, v in plan.scheduling.items()})  # type: ignore[misc]
            with ct.stage("complete") as st:
                st.record_outcome(status=plan.outcome.value)
        if plan.worth.rework is not None:
            clock.advance(plan.worth.rework_after_ms)
            rework = dict(plan.worth.rework)
            ct.record_rework(str(rework.pop("kind")), workflow=wf, **rework)  # type: ignore[arg-type]
        if plan.truth is None:
            return None
        # the scenario's clinical rule: a truly ESI-1 patient needed escalation
        escalation = plan.truth == "ESI-1" if plan.kind == "triage" else None
        return LateTruth(
            plan.offset_ms + plan.truth_after_ms, plan.kind, plan.identifier, wf.traceparent, plan.truth, escalation
        )


def run_workflows(plans: Iterable[WorkflowPlan], clock: SimClock) -> list[LateTruth]:
    """Run plans in order; returns the late ground truth still to record."""
    return [t for t in (run_workflow(p, clock) for p in plans) if t is not None]


def record_truths(truths: Iterable[LateTruth], clock: SimClock) -> int:
    """Record late ground truth in time order, as outcome spans linked to their workflows."""
    n = 0
    for t in sorted(truths, key=lambda t: t.offset_ms):
        clock.at(t.offset_ms)
        if t.escalation_needed is None:
            ct.record_outcome(t.kind, identifier=t.identifier, link=t.traceparent, label=t.label)
        else:
            ct.record_outcome(
                t.kind,
                identifier=t.identifier,
                link=t.traceparent,
                label=t.label,
                escalation_needed=t.escalation_needed,
            )
        n += 1
    return n


def record_changes(scenario: Scenario, base_ns: int) -> int:
    """The story's change events (deploys, the model version, the canary flag), at their
    simulated times, through the configured clinotel; how many."""
    for c in CHANGES:
        at_ns = base_ns + int(c.at * scenario.window_ns)
        ct.record_change(c.kind, c.name, version=c.version, actor=c.actor, scope=dict(c.scope), at_ns=at_ns)
    return len(CHANGES)
