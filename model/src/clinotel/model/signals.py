"""Signals read from `otel_traces` span by span (no view of their own yet): the data-quality
figures of the decision's inputs, the rework rate, and clinicians' coded feedback by category.
Alert rules name them like indicators (`threshold` or `baseline` rules); the dashboards show them.

Each signal is a `value` aggregate and a `sample` aggregate (its denominator, for minimum sample
sizes) over the rows where `where` holds; `KIND` is the workflow kind of a row (a feedback or
rework record carries the kind it is about).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from clinotel.model.sql import literal
from clinotel.semconv import FeedbackCategory
from clinotel.semconv import attributes as A

__all__ = [
    "FEEDBACK_OWNERS",
    "IS_FEEDBACK",
    "IS_REWORK",
    "IS_WORKFLOW",
    "KIND",
    "LATE_LAB_MIN",
    "SIGNALS",
    "STALE_DEMOGRAPHICS_H",
    "Signal",
    "attr",
]

STALE_DEMOGRAPHICS_H: Final = 24.0
"""Demographics older than this (hours since their last update from the EHR) count as stale."""
LATE_LAB_MIN: Final = 60.0
"""A lab result reaching the decision more than this many minutes after it was final is late."""

FEEDBACK_OWNERS: Final = {
    FeedbackCategory.WRONG_PRIORITY: "clinical-ml",
    FeedbackCategory.MISSING_CONTEXT: "ehr-integration",
    FeedbackCategory.CONFUSING_EXPLANATION: "clinical-ux",
    FeedbackCategory.TOO_SLOW: "platform",
    FeedbackCategory.WRONG_DATA: "ehr-integration",
    FeedbackCategory.ALERT_FATIGUE: "clinical-ux",
    FeedbackCategory.WORKFLOW_DISRUPTION: "clinical-informatics",
    FeedbackCategory.OTHER: "clinical-informatics",
}
"""The engineering team that owns each feedback category: the `team` label of its tickets."""


def attr(key: str) -> str:
    """The SQL reading attribute `key` of an `otel_traces` row ('' when absent)."""
    return f"SpanAttributes[{literal(key)}]"


def _has(key: str) -> str:
    return f"mapContains(SpanAttributes, {literal(key)})"


KIND: Final = f"if({_has(A.WORKFLOW_KIND.key)}, {attr(A.WORKFLOW_KIND.key)}, {attr(A.ABOUT_KIND.key)})"
IS_WORKFLOW: Final = f"ParentSpanId = '' AND {_has(A.WORKFLOW_KIND.key)} AND startsWith(SpanName, 'workflow ')"
"""A workflow's root span: one per workflow instance."""
IS_REWORK: Final = f"SpanName = {literal(A.REWORK_SPAN_NAME)}"
IS_FEEDBACK: Final = f"SpanName = {literal(A.FEEDBACK_SPAN_NAME)}"

Unit = Literal["percentunit", "short"]


@dataclass(frozen=True)
class Signal:
    """One figure over `otel_traces` rows."""

    name: str
    title: str
    description: str
    unit: Unit
    where: str
    value: str
    sample: str = "count()"
    min_sample: int = 30
    higher_is_worse: bool = True
    hit: str | None = None
    """A data-quality rate's check failing on one row (its `value` is the share of rows where it holds)."""
    key: str | None = None
    """A data-quality rate's attribute: its rows are the spans that carry it."""


def _rate(name: str, title: str, description: str, key: str, hit: str) -> Signal:
    value = f"countIf({hit}) / nullIf(count(), 0)"
    return Signal(name, title, description, "percentunit", _has(key), value, hit=hit, key=key)


SIGNALS: Final = {
    s.name: s
    for s in (
        _rate(
            "context_missing_rate",
            "Encounter context missing",
            "Decisions made without their encounter context (visit, location, attending).",
            A.DATA_CONTEXT_MISSING.key,
            f"{attr(A.DATA_CONTEXT_MISSING.key)} = 'true'",
        ),
        _rate(
            "stale_demographics_rate",
            "Stale demographics",
            f"Decisions whose demographics were last updated more than {STALE_DEMOGRAPHICS_H:g} h before.",
            A.DATA_DEMOGRAPHICS_AGE_H.key,
            f"toFloat64OrZero({attr(A.DATA_DEMOGRAPHICS_AGE_H.key)}) > {STALE_DEMOGRAPHICS_H}",
        ),
        _rate(
            "late_lab_rate",
            "Late lab data",
            f"Decisions whose lab results arrived more than {LATE_LAB_MIN:g} min after they were final.",
            A.DATA_LAB_DELAY_MIN.key,
            f"toFloat64OrZero({attr(A.DATA_LAB_DELAY_MIN.key)}) > {LATE_LAB_MIN}",
        ),
        _rate(
            "mapping_error_rate",
            "EHR mapping errors",
            "Decisions with at least one EHR field that could not be mapped to the model's inputs.",
            A.DATA_MAPPING_ERRORS.key,
            f"toInt64OrZero({attr(A.DATA_MAPPING_ERRORS.key)}) > 0",
        ),
        Signal(
            "rework_rate",
            "Rework rate",
            "Rework records (reopened, rescheduled, re-triaged, callbacks) per workflow started.",
            "percentunit",
            f"({IS_WORKFLOW}) OR ({IS_REWORK})",
            f"countIf({IS_REWORK}) / nullIf(countIf({IS_WORKFLOW}), 0)",
            f"countIf({IS_WORKFLOW})",
        ),
        *(
            Signal(
                f"feedback_{c.value}",
                f"Feedback: {c.value.replace('_', ' ')}",
                f"Clinician feedback reports coded `{c.value}` (owned by {FEEDBACK_OWNERS[c]}).",
                "short",
                f"{IS_FEEDBACK} AND {attr(A.FEEDBACK_CATEGORY.key)} = {literal(c.value)}",
                "count()",
                min_sample=1,
            )
            for c in FeedbackCategory
        ),
    )
}
"""Every signal by name."""
