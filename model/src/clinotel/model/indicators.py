"""Clinical indicators: one SQL definition per metric, read by the dashboards and the alerts alike.

An indicator is a ratio (or a quantile, or a count) over the rows of one clinical view:
`value` is an aggregate expression, `sample` the aggregate counting the rows the value is about
(the denominator, used for minimum sample sizes and for "too few to show"), and `where` the rows
that qualify at all. Column names come from `clinotel.model.clinical`; the coded values
from `clinotel.semconv`.

Triage decisions and ground truth are coded `ESI-1` (most urgent) to `ESI-5`. Under-triage exists
twice: **model under-triage**, the live model decision less urgent than the truth (a larger ESI
number), and **final under-triage**, the priority the patient was left with after review. A
high-risk misclassification is a truly ESI-1/2 patient the model placed at ESI-3 or below.

Fairness figures compare groups within one stratum (`STRATUM`: tenant, workflow kind, rollout
cohort, model version), never pooled across them, against one reference group
(`reference_group`: the group with the most workflows in the stratum), for the tables and the
alerts alike. The figures named after Fairlearn's metrics (`PARITY`) are Fairlearn's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from clinotel.model import clinical
from clinotel.model.sql import literal
from clinotel.semconv import DecisionSource, OutcomeStatus, ReviewAction

__all__ = [
    "COHORT_DIMENSIONS",
    "INDICATORS",
    "PARITY",
    "REFERENCE_RULE",
    "STRATUM",
    "Indicator",
    "Kind",
    "Parity",
    "esi",
    "reference_group",
]

Unit = Literal["percentunit", "ms", "short", "s"]


def esi(column: str) -> str:
    """The ESI level (1–5) coded in a column, or NULL."""
    return f"toUInt8OrNull(extract({column}, '^ESI-([1-5])$'))"


_MODEL: Final = f"DecisionSource = {literal(DecisionSource.MODEL.value)}"
_TRUTH: Final = "OutcomeLabel != ''"
_TRIAGE_TRUTH: Final = f"{_MODEL} AND {esi('DecisionValue')} IS NOT NULL AND {esi('OutcomeLabel')} IS NOT NULL"
_RECEIVED: Final = "Spans > 0"
"""A workflow some of whose own spans arrived. A late outcome linked to a trace never received makes
a row of its own with no spans (the health dashboard lists them): not a workflow started, nor one
that needed escalation (a 2026-12-07 review counted 965 workflows of 962 sent)."""
_REVIEWED: Final = "ReviewAction != ''"
_FINAL: Final = "if(ReviewFinalValue != '', ReviewFinalValue, DecisionValue)"
"""The priority a workflow was left with: the reviewer's final value, else the decision unreviewed."""
_CDS_ACCEPTED: Final = f"ReviewAction = {literal(ReviewAction.ACCEPT.value)}"
_CDS_OVERRIDDEN: Final = (
    f"ReviewAction IN ({literal(ReviewAction.OVERRIDE.value)}, {literal(ReviewAction.REJECT.value)})"
)


Kind = Literal["rate", "quantile", "count"]


@dataclass(frozen=True)
class Indicator:
    """One metric over a clinical view, declared by what it is, from which its SQL, its panels,
    its alert queries and its documentation are rendered.

    - a **rate**: rows where `hit` holds, among rows where `where` holds (the denominator);
    - a **quantile** `q` of `expr` over rows where `where` holds;
    - a **count** of rows where `where` holds.
    """

    name: str
    title: str
    description: str
    unit: Unit
    kind: Kind
    where: str = "1"
    """Which rows qualify at all (the denominator of a rate)."""
    hit: str | None = None
    """A rate's numerator condition."""
    expr: str | None = None
    """A quantile's expression."""
    q: float | None = None
    """A quantile's level."""
    table: str = clinical.WORKFLOWS
    time_column: str = "StartTime"
    min_sample: int = 30
    """Below this many rows the figure is shown as too few, and alerts do not fire."""
    higher_is_worse: bool = True
    needs_ground_truth: bool = False
    """Computed against the late ground truth (days after the workflow): its panels use hourly
    buckets, and its figures are provisional until the truth has arrived."""
    denominator: str = ""
    """The rows the figure is about, in words (a rate's denominator, a quantile's rows)."""

    def __post_init__(self) -> None:
        if self.kind == "rate" and self.hit is None:
            raise ValueError(f"{self.name}: a rate needs `hit`")
        if self.kind == "quantile" and (self.expr is None or self.q is None):
            raise ValueError(f"{self.name}: a quantile needs `expr` and `q`")

    @property
    def value(self) -> str:
        """Aggregate SQL giving the metric over rows already filtered by `where`."""
        if self.kind == "rate":
            return f"countIf({self.hit}) / nullIf(count(), 0)"
        if self.kind == "quantile":
            return f"quantile({self.q})({self.expr})"
        return "count()"

    @property
    def sample(self) -> str:
        """Aggregate SQL counting the rows the value is about (its denominator)."""
        return "count()"

    def conditional(self, also: str | None = None) -> tuple[str, str]:
        """(value, sample) as aggregates over any rows, `where` (and `also`) folded in: for
        tables that put several indicators side by side, grouped by something else."""
        where = self.where if also is None else f"({self.where}) AND ({also})"
        sample = f"countIf({where})"
        if self.kind == "rate":
            return f"countIf(({self.hit}) AND ({where})) / nullIf({sample}, 0)", sample
        if self.kind == "quantile":
            return f"quantileIf({self.q})({self.expr}, {where})", sample
        return sample, sample

    def counts(self, also: str | None = None) -> tuple[str, str]:
        """A rate's (hits, rows) as count aggregates over any rows, `where` (and `also`) folded
        in: what its intervals and tests are computed from."""
        if self.kind != "rate":
            raise ValueError(f"{self.name} is a {self.kind}, not a rate: it has no hit count")
        where = self.where if also is None else f"({self.where}) AND ({also})"
        return f"countIf(({self.hit}) AND ({where}))", f"countIf({where})"

    @property
    def final(self) -> str:
        """`FINAL` for the workflows view, whose rows merge as a workflow's spans arrive."""
        return " FINAL" if self.table == clinical.WORKFLOWS else ""


def _rate(name: str, title: str, description: str, hit: str, where: str, **kw: object) -> Indicator:
    return Indicator(name, title, description, "percentunit", "rate", where, hit=hit, **kw)  # type: ignore[arg-type]


def _quantile(name: str, title: str, description: str, q: float, expr: str, where: str, denominator: str) -> Indicator:
    return Indicator(name, title, description, "ms", "quantile", where, expr=expr, q=q, denominator=denominator)


INDICATORS: Final = {
    i.name: i
    for i in (
        # --- operations
        Indicator(
            "workflows",
            "Workflows",
            "Workflow instances started.",
            "short",
            "count",
            where=_RECEIVED,
            higher_is_worse=False,
            denominator="every workflow started in the range",
            min_sample=0,  # a count: a handful of workflows is a figure, not "too few"
        ),
        _rate(
            "completion_rate",
            "Completion rate",
            "Share of workflows that ended completed.",
            f"OutcomeStatus = {literal(OutcomeStatus.COMPLETED.value)}",
            "OutcomeStatus != ''",
            higher_is_worse=False,
            denominator="workflows that have ended (any outcome status)",
        ),
        _quantile(
            "end_to_end_p95_ms",
            "End-to-end time p95",
            "From ingestion to the end of the last stage, 95th centile.",
            0.95,
            "dateDiff('millisecond', StartTime, EndTime)",
            "EndTime > StartTime",
            "workflows with at least one finished stage",
        ),
        _quantile(
            "queue_wait_p95_ms",
            "Queue wait p95",
            "Time in the queue stage, 95th centile.",
            0.95,
            "QueueMs",
            "QueueMs > 0",
            "workflows that waited in a queue",
        ),
        _quantile(
            "decision_latency_p95_ms",
            "Decision latency p95",
            "Time in the decide stage, 95th centile.",
            0.95,
            "DecideMs",
            "DecideMs > 0 OR DecisionSource != ''",  # a decision made within the clock's tick is one too
            "workflows with a decide stage (the live decision; a shadow prediction is not a stage)",
        ),
        _rate(
            "slot_fill_rate",
            "Slot fill rate",
            "Scheduling workflows whose slot was filled.",
            "SlotFilled = 1",
            "WorkflowKind = 'scheduling' AND SlotFilled IS NOT NULL",
            higher_is_worse=False,
            denominator="scheduling workflows that recorded whether the slot was filled",
        ),
        # --- safety (against late ground truth)
        _rate(
            "under_triage_rate",
            "Model under-triage",
            "The model's triage decision less urgent than the true acuity: what the model did, before review.",
            f"{esi('DecisionValue')} > {esi('OutcomeLabel')}",
            _TRIAGE_TRUTH,
            needs_ground_truth=True,
            denominator="live model triage decisions (ESI) whose ground truth arrived",
        ),
        _rate(
            "final_under_triage_rate",
            "Final under-triage",
            "The priority assigned after review (the decision where nobody reviewed it) less urgent than the true "
            "acuity: what the patient was left with.",
            f"{esi(_FINAL)} > {esi('OutcomeLabel')}",
            f"{esi(_FINAL)} IS NOT NULL AND {esi('OutcomeLabel')} IS NOT NULL",
            needs_ground_truth=True,
            denominator="triage workflows with a final priority (ESI) whose ground truth arrived, whoever decided",
        ),
        _rate(
            "high_risk_miss_rate",
            "High-risk misclassification",
            "Truly ESI-1/2 patients the model placed at ESI-3 or below.",
            f"{esi('DecisionValue')} >= 3",
            f"{_TRIAGE_TRUTH} AND {esi('OutcomeLabel')} <= 2",
            needs_ground_truth=True,
            denominator="live model triage decisions whose ground truth is ESI-1 or ESI-2",
        ),
        _rate(
            "high_priority_tpr",
            "High-priority true-positive rate",
            "Truly ESI-1/2 patients the model placed at ESI-1/2 (1 − high-risk misclassification): the "
            "true-positive rate of equal opportunity.",
            f"{esi('DecisionValue')} <= 2",
            f"{_TRIAGE_TRUTH} AND {esi('OutcomeLabel')} <= 2",
            needs_ground_truth=True,
            higher_is_worse=False,
            denominator="live model triage decisions whose ground truth is ESI-1 or ESI-2",
        ),
        _rate(
            "escalation_miss_rate",
            "Escalation misses",
            "Workflows whose ground truth needed escalation that were not escalated.",
            f"ReviewAction != {literal(ReviewAction.ESCALATE.value)} "
            f"AND OutcomeStatus != {literal(OutcomeStatus.ESCALATED.value)}",
            f"EscalationNeeded = 1 AND {_RECEIVED}",
            needs_ground_truth=True,
            denominator="workflows whose ground truth says escalation was needed",
        ),
        _rate(
            "override_rate",
            "Override rate",
            "Reviewed model decisions the clinician overrode.",
            f"ReviewAction = {literal(ReviewAction.OVERRIDE.value)}",
            f"{_MODEL} AND {_REVIEWED}",
            denominator="every review of a live model decision: accept, override, reject, escalate and timeout",
        ),
        _rate(
            "cds_override_rate",
            "Overridden (CDS Hooks feedback)",
            "Model decisions overridden, as CDS Hooks feedback counts them: outcome `overridden` (override or "
            "reject) among `accepted` and `overridden`.",
            _CDS_OVERRIDDEN,
            f"{_MODEL} AND ({_CDS_ACCEPTED} OR {_CDS_OVERRIDDEN})",
            denominator="reviews of a live model decision that CDS Hooks feedback would carry: accept (accepted), "
            "override and reject (overridden); escalate and timeout send no feedback",
        ),
        _rate(
            "fallback_rate",
            "Fallback rate",
            "Decisions made by a fallback because the model was unavailable.",
            "FallbackReason != ''",
            "DecisionSource != ''",
            denominator="workflows with a live decision, whoever made it",
        ),
        _rate(
            "model_error_rate",
            "Workflow error rate",
            "Workflows with at least one span in error.",
            "ErrorSpans > 0",
            _RECEIVED,
            denominator="every workflow",
        ),
        _rate(
            "low_confidence_share",
            "Low-confidence share",
            "Model decisions with confidence under 0.6.",
            "DecisionConfidence < 0.6",
            f"{_MODEL} AND DecisionConfidence IS NOT NULL",
            denominator="live model decisions that recorded a confidence",
        ),
        _rate(
            "shadow_disagreement_rate",
            "Shadow disagreement",
            "Workflows where the shadow model's decision differs from the live one.",
            "ShadowValue != DecisionValue",
            "ShadowValue != '' AND DecisionValue != ''",
            denominator="workflows with both a live decision and a shadow prediction",
        ),
        _rate(
            "high_priority_rate",
            "High-priority assignment rate",
            "Model triage decisions at ESI-1 or ESI-2 (the selection rate of demographic parity).",
            f"{esi('DecisionValue')} <= 2",
            f"{_MODEL} AND {esi('DecisionValue')} IS NOT NULL",
            higher_is_worse=False,
            denominator="live model triage decisions (ESI), ground truth or not",
        ),
        # --- clinician trust
        _rate(
            "acceptance_rate",
            "Acceptance rate",
            "Reviewed model decisions the clinician accepted.",
            f"ReviewAction = {literal(ReviewAction.ACCEPT.value)}",
            f"{_MODEL} AND {_REVIEWED}",
            higher_is_worse=False,
            denominator="every review of a live model decision: accept, override, reject, escalate and timeout",
        ),
        _quantile(
            "review_latency_p95_ms",
            "Review latency p95",
            "Time to a clinician's review, 95th centile.",
            0.95,
            "ReviewLatencyMs",
            "ReviewLatencyMs IS NOT NULL",
            "reviewed workflows (a workflow nobody reviewed has no review latency)",
        ),
    )
}
"""Every indicator by name."""

COHORT_DIMENSIONS: Final = {
    "AgeBand": "Age band",
    "Sex": "Sex",
    "Language": "Language",
    "PayerClass": "Payer class",
    "ServiceLine": "Service line",
}
"""The clinical_workflows columns fairness is measured across, with their titles."""

STRATUM: Final = (
    ("TenantId", "Tenant"),
    ("WorkflowKind", "Workflow kind"),
    ("RolloutCohort", "Rollout cohort"),
    ("ModelVersion", "Model version"),
)
"""(column, title): groups are compared within one value of each, never pooled across them (a
workflow kind's rates mean something else than another's; a canary's rates are not its
baseline's)."""

REFERENCE_RULE: Final = (
    "the group with the most workflows in its stratum (tenant, workflow kind, rollout cohort, model version), "
    "ties to the later name"
)
"""The reference group of every disparity, in the tables and the alerts alike."""


def reference_group(group: str, size: str, partition: str, carried: str | None = None) -> str:
    """SQL window expression naming the reference group (`REFERENCE_RULE`) of each row's
    stratum: `group` and `size` (its workflows) are columns of a grouped subquery, `partition`
    the stratum's columns; with `carried`, that expression of the reference group's row instead
    of its name (a tuple: its name and figures, with one window function)."""
    return f"argMax({carried or group}, ({size}, {group})) OVER (PARTITION BY {partition})"


@dataclass(frozen=True)
class Parity:
    """A between-groups figure over a rate: `difference` = max − min, `ratio` = min ÷ max over the
    groups with enough rows. `fairlearn`: the figure is Fairlearn's function of that name (with
    `method='between_groups'`), checked against Fairlearn in the tests."""

    name: str
    title: str
    indicator: str
    aggregate: Literal["difference", "ratio"]
    fairlearn: bool = True


PARITY: Final = (
    Parity("demographic_parity_difference", "Demographic parity difference", "high_priority_rate", "difference"),
    Parity("demographic_parity_ratio", "Demographic parity ratio", "high_priority_rate", "ratio"),
    Parity("equal_opportunity_difference", "Equal opportunity difference", "high_priority_tpr", "difference"),
    Parity("equal_opportunity_ratio", "Equal opportunity ratio", "high_priority_tpr", "ratio"),
    Parity("under_triage_gap", "Model under-triage gap (max − min)", "under_triage_rate", "difference", False),
)
"""The parity figures: Fairlearn's demographic parity (selection rate: high-priority assignment)
and equal opportunity (true-positive rate among the truly urgent: ESI-1/2 placed at ESI-1/2),
and the spread of model under-triage, which is not a Fairlearn metric."""
