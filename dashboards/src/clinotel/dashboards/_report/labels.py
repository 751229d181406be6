"""Human labels for what the panel queries return: no SQL name (`p95_ms`, `dp_ratio`,
`ReviewActorRole`) reaches the page.

A column is looked up, in order: the indicators (a panel names an indicator's column by its
title, and a fairness table its disparity as `<indicator> disparity`), the report's own table of
the dashboards' aliases, the dashboard filters and cohort dimensions, and last a humaniser that
splits any other identifier into words and reads a unit suffix (`_ms`, `_s`, `_days`), so a column
added later still reads as words. Coded values are humanised too: `triage_nurse` as
`triage nurse`, a language code as its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from clinotel.dashboards._panels import FILTERS
from clinotel.dashboards._report.fmt import Quantity, quantity_of
from clinotel.model import clinical, indicators
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS, Indicator
from clinotel.semconv import Language

__all__ = ["ROW_UNIT", "Label", "bound_of", "human_title", "indicator_named", "label", "value_text"]

ROW_UNIT: Final = "row"
"""The quantity of a column whose unit is that of the indicator its row names (kill criteria)."""


@dataclass(frozen=True)
class Label:
    text: str
    quantity: Quantity | str
    """A `fmt.Quantity`, or `ROW_UNIT`."""
    bound: bool = False
    """An interval's end: empty where there is no interval (no test, an infinite end), which is
    not a sample too small."""


_ALIASES: Final[dict[str, tuple[str, Quantity | str]]] = {
    "time": ("Time (UTC)", "text"),
    "per_minute": ("Workflows per minute", "per_time"),
    "p50_ms": ("p50", "ms"),
    "p95_ms": ("p95", "ms"),
    "p99_ms": ("p99", "ms"),
    "spans": ("Spans", "count"),
    "depth": ("Deepest queue", "count"),
    "lead_days": ("Lead time, median", "days"),
    "workflows": ("Workflows", "count"),
    "completed": ("Completion rate", "percent"),
    "e2e_p95_s": ("End-to-end p95", "s"),
    "fallbacks": ("Fallback decisions", "count"),
    "agreement": ("Agreement", "percent"),
    "reason": ("Reason", "text"),
    "role": ("Clinician role", "text"),
    "overrides": ("Overrides", "count"),
    "spans_per_s": ("Spans per second", "per_time"),
    "what": ("What", "text"),
    "n": ("Count", "count"),
    "seconds": ("Ingestion lag p99", "s"),
    "pending": ("Pending in the log", "bytes"),
    "tenant": ("Tenant", "text"),
    "service": ("Service", "text"),
    "last_span": ("Last span", "text"),
    "state": ("State", "text"),
    "criterion": ("Kill criterion", "text"),
    "canary": ("Canary", ROW_UNIT),
    "baseline": ("Baseline", ROW_UNIT),
    "ratio": ("Canary ÷ baseline", "ratio"),
    "max_ratio": ("Limit", "ratio"),
    "n_canary": ("Canary sample", "count"),
    "n_baseline": ("Baseline sample", "count"),
    "status": ("Status", "text"),
    "dimension": ("Dimension", "text"),
    "groups": ("Groups compared", "count"),
    "dp_difference": ("High-priority assignment: highest − lowest group", "points"),
    "dp_ratio": ("High-priority assignment: lowest ÷ highest group", "ratio"),
    "eo_gap_under_triage": ("Under-triage: highest − lowest group", "points"),
    "fairness": ("Fairness", "text"),
    # the clinical views' columns a panel groups by
    "Stage": ("Stage", "text"),
    "QueueName": ("Queue", "text"),
    "ReviewActorRole": ("Clinician role", "text"),
    "ReviewReason": ("Reason", "text"),
    "FallbackReason": ("Fallback reason", "text"),
    "RolloutMode": ("Rollout mode", "text"),
    "FlagVariant": ("Flag variant", "text"),
    "ShadowModelVersion": ("Shadow model version", "text"),
    "Instance": ("Collector", "text"),
    "ServiceName": ("Service", "text"),
    # titled columns of the fairness, kill-criteria, feedback and late-outcome tables (issue 15):
    # already words, but their quantity is needed (`ROW_UNIT`: that of the indicator the row names)
    "Tenant": ("Tenant", "text"),
    "Workflow kind": ("Workflow kind", "text"),
    "Rollout cohort": ("Rollout cohort", "text"),
    "Model version": ("Model version", "text"),
    "Criterion": ("Kill criterion", "text"),
    "Canary": ("Canary", ROW_UNIT),
    "Baseline": ("Baseline", ROW_UNIT),
    "Ratio": ("Canary ÷ baseline", "ratio"),
    "Limit": ("Limit", "ratio"),
    "Canary rows": ("Canary sample", "count"),
    "Baseline rows": ("Baseline sample", "count"),
    "Status": ("Status", "text"),
    "Measure": ("Measure", "text"),
    "Workflows": ("Workflows", "count"),
    "Rows": ("Rows", "count"),
    "Value": ("Value", ROW_UNIT),
    "Reference group": ("Reference group", "text"),
    "Reference value": ("Reference value", ROW_UNIT),
    "Disparity": ("Group ÷ reference", "ratio"),
    "Verdict": ("Verdict", "text"),
    "Dimension": ("Dimension", "text"),
    "Groups": ("Groups compared", "count"),
    "Reason": ("Reason", "text"),
    "Role": ("Clinician role", "text"),
    "Overrides": ("Overrides", "count"),
    "Accepted": ("Accepted", "count"),
    "Overridden": ("Overridden", "count"),
    "Outcome": ("Outcome", "text"),
    "Outcomes": ("Outcomes", "count"),
    "outcomes": ("Outcomes", "count"),
    # the efficiency tables (`clinotel.model.efficiency`, issue 17)
    "kind": ("Workflow kind", "text"),
    "phase": ("Rollout phase", "text"),
    "site": ("Site", "text"),
    "department": ("Department", "text"),
    "minutes_per_workflow": ("Human minutes per workflow", "minutes"),
    "touches_per_workflow": ("Manual touches per workflow", "per_time"),
    "rework_rate": ("Workflows with rework", "percent"),
    "rework_minutes_per_workflow": ("Rework minutes per workflow", "minutes"),
    "shadow_minutes": ("Minutes per workflow in shadow", "minutes"),
    "minutes": ("Minutes per workflow", "minutes"),
    "saved_per_workflow": ("Minutes saved per workflow vs shadow", "minutes"),
    "net_minutes_saved": ("Net minutes saved (saved − rework)", "minutes"),
    "rework": ("Rework kind", "text"),
    "records": ("Rework records", "count"),
    "rework_minutes": ("Rework minutes (total)", "minutes"),
}
_NAMED_BOUNDS: Final = {
    "minutes_low": ("minutes_per_workflow", "95%", "low", ""),
    "minutes_high": ("minutes_per_workflow", "95%", "high", ""),
    "rework_low": ("rework_rate", "95%", "low", "Wilson"),
    "rework_high": ("rework_rate", "95%", "high", "Wilson"),
    "saved_low": ("saved_per_workflow", "95%", "low", "Welch"),
    "saved_high": ("saved_per_workflow", "95%", "high", "Welch"),
}
"""Interval ends a query names in SQL (`clinotel.model.efficiency`): (estimate, level, side, method)."""
_SDK_REASONS: Final = {  # clinotel.semconv.attributes.HEALTH_COUNTERS (a test holds them equal)
    "unregistered": "Unregistered attributes dropped",
    "invalid": "Invalid values dropped",
    "phi": "Values dropped as PHI",
    "redacted": "Values redacted",
    "internal_errors": "Internal errors",
}
_UNIT_SUFFIX: Final[tuple[tuple[str, Quantity], ...]] = (("_ms", "ms"), ("Ms", "ms"), ("_days", "days"), ("_s", "s"))
_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")
_CODE: Final = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
_CAMEL: Final = re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+\b")
_BY_TITLE: Final = {i.title: i for i in INDICATORS.values()}
_FILTER_LABELS: Final = {column: text for _, text, column in FILTERS}
_COLUMNS: Final = frozenset(
    {c.name for c in (*clinical.STAGE_COLUMNS, *clinical.COHORT_COLUMNS)} | set(clinical.WORKFLOW_COLUMNS)
)
_LANGUAGES: Final = {str(m.value): m.name.replace("_", " ").capitalize() for m in Language}
_BOUND: Final = re.compile(r"^(?P<base>.+?) (?P<pct>\d+(?:\.\d+)?%) (?P<side>low|high)(?P<rest>\b.*)$")
"""An interval's end as a column title: `Disparity 95% low`, `Ratio 95% high (sequential)`."""
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _parity() -> dict[str, Quantity]:
    """The between-groups parity figures (`clinotel.model.indicators.PARITY`, where the model has
    them): a difference of rates in points, a ratio as a ratio."""
    return {
        str(p.title): ("points" if p.aggregate == "difference" else "ratio") for p in getattr(indicators, "PARITY", ())
    }


def _stratum() -> dict[str, str]:
    """The stratum's column titles (`clinotel.model.indicators.STRATUM`, where the model has it)."""
    return {str(title): str(title) for _, title in getattr(indicators, "STRATUM", ())}


_PARITY: Final = _parity()
_STRATUM: Final = _stratum()


def bound_of(column: str) -> tuple[str, str, str, str] | None:
    """An interval end's column as (the estimate's column, `95%`, `low` or `high`, what follows)."""
    if column in _NAMED_BOUNDS:
        return _NAMED_BOUNDS[column]
    found = _BOUND.match(column)
    return None if found is None else (found["base"], found["pct"], found["side"], found["rest"].strip(" ()"))


def indicator_named(column: str) -> Indicator | None:
    """The indicator a result column stands for (panels name it by its title), if any."""
    return _BY_TITLE.get(column)


def _words(name: str) -> str:
    words = [w.lower() if not w.isupper() or len(w) == 1 else w for w in _WORD.findall(name)]
    text = " ".join(words) or name
    return text[:1].upper() + text[1:]


def label(column: str) -> Label:
    """How a result column is titled, and what quantity its values are."""
    found = _BY_TITLE.get(column)
    if found is not None:
        return Label(found.title, quantity_of(found.unit))
    if column.endswith(" disparity") and column[: -len(" disparity")] in INDICATORS:
        return Label(f"{INDICATORS[column[: -len(' disparity')]].title} ÷ reference", "ratio")
    if column in _ALIASES:
        text, quantity = _ALIASES[column]
        return Label(text, quantity)
    if column in _SDK_REASONS:
        return Label(_SDK_REASONS[column], "count")
    if column in _PARITY:
        return Label(column, _PARITY[column])
    if column in _STRATUM:
        return Label(column, "text")
    bound = bound_of(column)
    if bound is not None:
        base = label(bound[0])
        rest = f" ({bound[3]})" if bound[3] else ""
        return Label(f"{base.text}: {bound[1]} {bound[2]}{rest}", base.quantity, bound=True)
    if column in _FILTER_LABELS:
        return Label(_FILTER_LABELS[column], "text")
    if column in COHORT_DIMENSIONS:
        return Label(COHORT_DIMENSIONS[column], "text")
    if not _IDENTIFIER.match(column):
        # a title the query gave in words (`No feedback (escalate, timeout)`): kept as it is
        return Label(column, "count" if column.lower().endswith(" rows") else "number")
    for suffix, quantity in _UNIT_SUFFIX:
        if column.endswith(suffix) and len(column) > len(suffix):
            return Label(_words(column[: -len(suffix)]), quantity)
    return Label(_words(column), "number")


def value_text(column: str, value: str) -> str:
    """A coded value as a person reads it: a language code by its name, `snake_case` codes as
    words, the empty string as `(none)`."""
    if value == "":
        return "(none)"
    if column in ("Language", COHORT_DIMENSIONS.get("Language"), "Reference group") and value in _LANGUAGES:
        return f"{_LANGUAGES[value]} ({value})"
    if _CODE.match(value):
        return value.replace("_", " ")
    return value


def human_title(title: str) -> str:
    """A panel title with any column name of the clinical views in it as words (`Override rate
    by ReviewActorRole` reads `Override rate by clinician role`; `ClickHouse` stays)."""
    return _CAMEL.sub(lambda m: label(m.group(0)).text.lower() if m.group(0) in _COLUMNS else m.group(0), title)
