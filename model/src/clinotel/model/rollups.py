"""The hourly rollups the dashboards read instead of every row: `clinical_workflow_hours`
(collector migration 9) for the workflows' indicators and effort, `clinical_signal_hours`
(migration 10) for the signals read span by span from `otel_traces` (drift features, data quality,
rework, feedback).

One row per tenant, workflow kind, hour of the workflow's start and the dashboards' template
dimensions (`DIMENSIONS`). For each rolled-up indicator of `clinotel.model.indicators`: the
workflows it is about (`<name>_rows`), for a rate those it hits (`<name>_hits`), for a quantile
the values of its workflows (`<name>_values`, since migration 17: read with `quantile_of_values`,
`quantile(level)` over them; merging the sampled states kept before cost three times as much).
And for the flags and the time to schedule (migration 12): the flag evaluated (`FlagKey`), the
latest start (`LastStart`) and the scheduling lead times (`lead_time_days_values`, since migration
17; read with `quantile_of_values(0.5)`).

The collector recomputes the rollup from `clinical_workflows` (`refresh_select`) every few seconds
off the insert path, replacing whole days: a figure is the indicator's own SQL over the merged
workflows, so late ground truth counts in its workflow's hour and a workflow whose row is replaced
counts once. Read the columns with `sum()` (`quantile_of_values` for values), never row by row.

`clinical_cohort_hours` has one row per tenant, workflow kind, hour of the workflow's start, site,
department, model version, rollout cohort, cohort dimension (`Dimension`: `AgeBand`, …) and group
(`Grp`): the workflows (`members`) and each fairness indicator's rows, hits or state
(`COHORT_ROLLED_UP`: rows, hits or values), what the fairness tables and parity figures are
computed from.

`clinical_signal_hours` has one row per tenant, workflow kind, hour of the span, site, department,
shadow mode (the span's rollout mode), signal, bin and detail: `Rows`, `Hits` (a data-quality
check failing) and `Total` (rework minutes). A drift feature's bins are its `Bin`s; a
data-quality signal's rows are the decisions with its field; `workflow` counts workflows started
(rework's denominator); `rework` is per kind (`Bin`) and role (`Detail`); `feedback` per category
(`Bin`) and severity (`Detail`). The signals of `CENTILES` carry a value per row: `Measured` holds
the values (since migration 17; read with `quantile_of_values(level)`).

`clinical_stage_hours` (migration 11) has one row per tenant, workflow kind, hour of the span, the
dashboards' dimensions, stage, queue and shadow mode: `Spans`, a sketch of their duration
(`Duration`, in ms: DDSketch, `quantileDD`, since migration 15; read with `stage_centiles()`) and
`MaxQueueDepth`. Its projection `unfiltered` holds the same per tenant, workflow kind, stage, hour,
queue and shadow mode only: a panel with no site, department, model or cohort chosen reads it.
`clinical_feedback_hours` (migration 11) has one row per tenant, workflow kind, hour of the report,
site, department, category, severity, model version and decision of the workflow it judged, and
whether that workflow was found (`Joined`): `Reports`. `clinotel_service_hours` (migration 11) has
one row per tenant, service and hour of the span: `Spans` and the latest span's time (`LastSpan`).

`clinical_truth_hours` (migration 12) has one row per tenant, workflow kind, hour of the late
ground truth's arrival (the workflows view's `TruthTime`) and whether it joined a workflow
(`Joined`; 0: linked to a workflow never received): `Outcomes`.

A rollup row covers a whole hour: a range is widened to whole hours at its start (`time_filter`),
so a figure over a range that does not start on the hour counts the workflows of that hour that
started before the range too.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Final

from clinotel.model import clinical, efficiency
from clinotel.model.drift import FEATURES
from clinotel.model.feedback import feedback_decisions_sql
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS, Indicator
from clinotel.model.signals import IS_FEEDBACK, IS_REWORK, IS_WORKFLOW, KIND, SIGNALS, attr
from clinotel.model.sql import held_since, literal
from clinotel.model.tables import (
    COHORT_HOURS,
    FEEDBACK_HOURS,
    SERVICE_HOURS,
    SIGNAL_HOURS,
    STAGE_HOURS,
    TRUTH_HOURS,
    WORKFLOW_HOURS,
    WORKFLOWS,
)
from clinotel.model.workflow_signals import rework_by_workflow_sql
from clinotel.semconv import RolloutMode
from clinotel.semconv import attributes as A

__all__ = [
    "CENTILES",
    "COHORT_DIMENSIONS_ROLLED",
    "COHORT_HOURS",
    "COHORT_ROLLED_UP",
    "DIMENSIONS",
    "FEEDBACK",
    "FEEDBACK_HOURS",
    "LAST_START",
    "LEAD_TIME_VALUES",
    "MEASURED",
    "REWORK",
    "ROLLED_UP",
    "SERVICE_HOURS",
    "SIGNAL_DIMENSIONS",
    "SIGNAL_HOURS",
    "STAGE_CENTILES",
    "STAGE_DIMENSIONS",
    "STAGE_HOURS",
    "STAGE_SKETCH_ACCURACY",
    "TIME_COLUMN",
    "TRUTH_HOURS",
    "WORKFLOW",
    "WORKFLOW_HOURS",
    "cohort_dimension",
    "cohort_refresh_select",
    "columns",
    "conditional",
    "counts",
    "feedback_refresh_select",
    "hits",
    "hour_of",
    "of_tenants",
    "quantile_of_values",
    "refresh_select",
    "rolled_up",
    "sample",
    "service_refresh_select",
    "signal_refresh_select",
    "stage_centile",
    "stage_centiles",
    "stage_refresh_select",
    "starts_between",
    "time_filter",
    "truth_refresh_select",
    "value",
]

TIME_COLUMN: Final = "Hour"
"""The hour the rollup row's workflows started in (the workflows view's `StartTime`, truncated)."""
_FIRST_DIMENSIONS: Final = (
    "TenantId", "WorkflowKind", "Site", "Department", "ModelVersion", "RolloutCohort", "RolloutMode",
    "ReviewActorRole", "FlagVariant",
)  # fmt: skip
_ADDED_DIMENSIONS: Final = ("ReviewReason", "FallbackReason", "ShadowModelVersion")
"""Added by migration 11: in the table they follow the measures."""
_LATER_DIMENSIONS: Final = ("FlagKey",)
"""Added by migration 12, after migration 11's: the flag a workflow's decision evaluated."""
DIMENSIONS: Final = _FIRST_DIMENSIONS + _ADDED_DIMENSIONS + _LATER_DIMENSIONS
"""What a rollup row is per, besides its hour: the columns a panel on it may filter or group by."""
LAST_START: Final = "LastStart"
"""The latest start among a rollup row's workflows (read with `max()`): when a flag was last
evaluated (migration 12)."""
LEAD_TIME_VALUES: Final = "lead_time_days_values"
"""The workflows' scheduling lead times in days (`LeadTimeDays`, of those that have one; read with
`quantile_of_values(0.5)`, the median; migration 12, values since migration 17)."""
_LATER_MEASURES: Final = (
    f"max(StartTime) AS {LAST_START}",
    f"groupArrayIf(toFloat64(assumeNotNull(LeadTimeDays)), LeadTimeDays IS NOT NULL) AS {LEAD_TIME_VALUES}",
)
"""Added by migration 12, after its dimension: in the table they are its last columns."""

ROLLED_UP: Final = (
    "workflows",
    "completion_rate",
    "end_to_end_p95_ms",
    "queue_wait_p95_ms",
    "decision_latency_p95_ms",
    "slot_fill_rate",
    "under_triage_rate",
    "final_under_triage_rate",
    "high_risk_miss_rate",
    "high_priority_tpr",
    "escalation_miss_rate",
    "override_rate",
    "cds_override_rate",
    "fallback_rate",
    "model_error_rate",
    "low_confidence_share",
    "shadow_disagreement_rate",
    "high_priority_rate",
    "acceptance_rate",
    "review_latency_p95_ms",
)
"""The indicators the rollup has columns for (migration 9 created them; a new indicator needs a
migration adding its columns, and reads the workflows view until then)."""


def rolled_up(i: Indicator, by: Sequence[str] = ()) -> bool:
    """Whether the rollup holds the indicator, grouped by the columns `by`."""
    return (
        i.name in ROLLED_UP
        and i.table == WORKFLOWS
        and i.time_column == "StartTime"
        and all(c in DIMENSIONS for c in by)
    )


def _rows(i: Indicator) -> str:
    return f"{i.name}_rows"


def _hits(i: Indicator) -> str:
    return f"{i.name}_hits"


def _values(i: Indicator) -> str:
    return f"{i.name}_values"


def quantile_of_values(q: float | None, *, conditional: bool = False) -> str:
    """The aggregate reading a rollup's values column at level `q` (with a condition as its second
    argument when `conditional`): `quantile(q)` over the values, the indicator's own figure (its
    sample of up to 8,192 values: exact up to that many, memory bounded past it), NULL where a row
    counts workflows but holds no values (rows written before migration 17, until a refresh)."""
    return f"quantileOrNullArray{'If' if conditional else ''}({q})"


def columns(i: Indicator) -> tuple[str, ...]:
    """The rollup's columns for the indicator: its rows, and its hits (a rate) or values (a quantile)."""
    if i.kind == "rate":
        return _rows(i), _hits(i)
    if i.kind == "quantile":
        return _rows(i), _values(i)
    return (_rows(i),)


def value(i: Indicator) -> str:
    """The indicator's aggregate over rollup rows: the same figure as `Indicator.value` over the
    workflows those rows hold."""
    if i.kind == "rate":
        return f"sum({_hits(i)}) / nullIf(sum({_rows(i)}), 0)"
    if i.kind == "quantile":
        return f"{quantile_of_values(i.q)}({_values(i)})"
    return f"sum({_rows(i)})"


def conditional(i: Indicator, also: str) -> tuple[str, str]:
    """(value, sample) over the rollup rows where `also` (SQL over its dimensions) holds: the same
    figures as `Indicator.conditional(also)` over the workflows those rows hold."""
    rows = f"sumIf({_rows(i)}, {also})"
    if i.kind == "rate":
        return f"sumIf({_hits(i)}, {also}) / nullIf({rows}, 0)", rows
    if i.kind == "quantile":
        return f"{quantile_of_values(i.q, conditional=True)}({_values(i)}, {also})", rows
    return rows, rows


def counts(i: Indicator, also: str) -> tuple[str, str]:
    """A rate's (hits, rows) over the rollup rows where `also` holds (`Indicator.counts(also)`)."""
    if i.kind != "rate":
        raise ValueError(f"{i.name} is a {i.kind}, not a rate: it has no hit count")
    return f"sumIf({_hits(i)}, {also})", f"sumIf({_rows(i)}, {also})"


def hits(i: Indicator) -> str:
    """A rate's hits over rollup rows (its numerator: `Indicator.counts()[0]` over the workflows)."""
    if i.kind != "rate":
        raise ValueError(f"{i.name} is a {i.kind}, not a rate: it has no hit count")
    return f"sum({_hits(i)})"


def sample(i: Indicator) -> str:
    """The indicator's sample size over rollup rows (`Indicator.sample` over the workflows)."""
    return f"sum({_rows(i)})"


def time_filter(column: str = TIME_COLUMN) -> str:
    """The Grafana macro condition selecting the hours of the dashboard's range (its first hour
    whole); on another `column`, the same range (a row table read beside a rollup)."""
    return f"{column} >= toStartOfHour($__fromTime) AND {column} <= $__toTime"


def _measures(i: Indicator) -> list[str]:
    if i.kind == "rate":
        hits, rows = i.counts()
        return [f"toInt64({rows}) AS {_rows(i)}", f"toInt64({hits}) AS {_hits(i)}"]
    rows = i.conditional()[1]
    if i.kind == "quantile":
        present = f"({i.where}) AND ({i.expr}) IS NOT NULL"
        return [
            f"toInt64({rows}) AS {_rows(i)}",
            f"groupArrayIf(toFloat64(assumeNotNull({i.expr})), {present}) AS {_values(i)}",
        ]
    return [f"toInt64({rows}) AS {_rows(i)}"]


def hour_of(column: str) -> str:
    """The rollup row's hour of the instant `column`, as the select list's `Hour` (UTC, truncated):
    what every rollup is partitioned and swapped by; of rows within `sql.hours_held` only."""
    return f"toStartOfHour(toDateTime({column}, 'UTC')) AS {TIME_COLUMN}"


def _between(column: str, since: str | None, until: str | None) -> str:
    """`column` at or after SQL instant `since` and before `until` (either bound left out when None)."""
    return held_since(column, since) + ("" if until is None else f" AND {column} < {until}")


def starts_between(since: str | None, until: str | None) -> str:
    """The workflows view's rows whose `StartTime` is at or after SQL instant `since` and before
    `until` (either bound left out when None)."""
    return _between("StartTime", since, until)


def of_tenants(tenants: Collection[str]) -> str:
    """SQL: the row is one of `tenants`'."""
    return f"TenantId IN ({', '.join(map(literal, sorted(tenants)))})"


def _merged(
    workflows: str,
    since: str | None,
    source_filter: str,
    column: str = "StartTime",
    until: str | None = None,
    also: str | None = None,
    tenants: Collection[str] | None = None,
) -> str:
    """The workflows' rows merged (`FINAL`) from the parts `source_filter` keeps, and those of the
    table `also` (every row of workflows `source_filter` leaves out), those whose `column` (their
    start) is at or after `since` and before `until` (a condition on the merged value, after the
    merge); of the `tenants` only, when given (read from their partitions alone: a merge holds a
    block of every part it merges, so a refresh of many tenants' small parts takes them a few at a
    time)."""
    every = ", ".join(("*", *clinical.ALIAS_COLUMNS))
    merged = f"SELECT {every} FROM {workflows} FINAL WHERE {source_filter}"
    also_merged = f" UNION ALL SELECT {every} FROM {also} FINAL"
    if tenants is not None:
        merged = f"SELECT {every} FROM {workflows} FINAL WHERE ({source_filter}) AND {of_tenants(tenants)}"
        also_merged += f" WHERE {of_tenants(tenants)}"
    if also is not None:
        merged += also_merged
    return f"(SELECT * FROM ({merged}) WHERE {_between(column, since, until)})"


def refresh_select(
    workflows: str,
    traces: str,
    rework: str,
    since: str | None,
    source_filter: str = "1",
    until: str | None = None,
    also: str | None = None,
    rework_rows: str | None = None,
    tenants: Collection[str] | None = None,
) -> str:
    """The rollup rows of the workflows in the qualified table `workflows` (merged, `FINAL`) that
    started at or after SQL instant `since` (every one when None) and before `until` (when given):
    the indicators' own SQL (`Indicator.counts`), and the effort (`clinotel.model.efficiency`) of
    their spans in `traces` and of their rework records in `rework` (read from `since` on).
    `source_filter` narrows the workflows view's parts read (a window's partitions); the table
    `also` holds every row of the workflows it leaves out whole, merged with the rest. The table
    `rework_rows`, when given, holds `rework_by_workflow_sql`'s rows of every rework record, to
    read instead of the records from `since` on (a refresh month by month computes them once).
    `tenants`, when given: the rows of those tenants only (`_merged`)."""
    key = ", ".join(("TenantId", "WorkflowKind", TIME_COLUMN, *DIMENSIONS[2:]))
    measures = [m for name in ROLLED_UP for m in _measures(INDICATORS[name])]
    measures += [f"sumIf({expr}, RolloutMode != '') AS {name}" for name, expr in efficiency.ROLLUP_SUMS]
    effort = ", ".join(f"{sql} AS {name}" for name, sql in efficiency.EFFORT_COLUMNS)
    read = "\n".join((*measures, *DIMENSIONS, *_LATER_MEASURES))
    # the columns the figures read (a merge's memory grows with the columns it carries)
    needed = [c for c in clinical.WORKFLOW_COLUMNS if c != "StartTime" and re.search(rf"\b{c}\b", read)]
    columns = ", ".join(f"w.{c} AS {c}" for c in ("TenantId", "WorkflowKind", "TraceId", "StartTime", *needed))
    # a range's effort: of its workflows' traces only (a whole-store refresh reads every trace anyway)
    tenant_filter = None if tenants is None else of_tenants(tenants)
    among = None if since is None else f"SELECT TraceId FROM {workflows} WHERE {starts_between(since, until)}"
    if among is not None and tenant_filter is not None:
        among += f" AND {tenant_filter}"
    join = efficiency.EFFORT_JOIN.format(
        effort=efficiency.effort_by_trace_sql(traces, since, among=among, where=tenant_filter),
        rework=(
            f"SELECT * FROM {rework_rows}{'' if tenant_filter is None else f' WHERE {tenant_filter}'}"
            if rework_rows
            else rework_by_workflow_sql("", since, traces=rework, where=tenant_filter)
        ),
    )
    return (
        f"SELECT\n    TenantId, WorkflowKind, {hour_of('StartTime')}, "
        f"{', '.join(_FIRST_DIMENSIONS[2:])},\n    " + ",\n    ".join(measures) + ",\n    "
        f"{', '.join(_ADDED_DIMENSIONS)},\n    {', '.join(_LATER_DIMENSIONS)},\n    "
        + ",\n    ".join(_LATER_MEASURES)
        + "\n"
        f"FROM\n(\n    SELECT {columns}, {effort}\n"
        f"    FROM {_merged(workflows, since, source_filter, until=until, also=also, tenants=tenants)} AS w\n"
        f"    {join}\n)\n"
        f"GROUP BY {key}"
    )


SIGNAL_DIMENSIONS: Final = ("TenantId", "WorkflowKind", "Site", "Department")
"""What a signal rollup row is per, besides its hour, shadow mode, signal, bin and detail: the
dashboards' filters that `otel_traces` rows answer."""
WORKFLOW: Final = "workflow"
REWORK: Final = "rework"
FEEDBACK: Final = "feedback"
QUALITY: Final = ("context_missing_rate", "stale_demographics_rate", "late_lab_rate", "mapping_error_rate")
CENTILES: Final = {
    "demographics_age_h": f"toFloat64OrNull({attr(A.DATA_DEMOGRAPHICS_AGE_H.key)})",
    "lab_delay_min": f"toFloat64OrNull({attr(A.DATA_LAB_DELAY_MIN.key)})",
}
"""Signals whose rows carry a value for the 95th centile (`MEASURED`): the data-quality fields'
demographics age (hours) and lab delay (minutes), per decision that recorded them."""
MEASURED: Final = "Measured"
"""The signal rollup's column of the values of `CENTILES`' rows (read with `quantile_of_values`)."""


def _entries() -> list[str]:
    """(applies, signal, bin, detail, hit, total, sample) per kind of row a span gives."""
    none = "CAST(NULL, 'Nullable(Float64)')"
    out = [f"({f.bin} != '', {literal(f.name)}, {f.bin}, '', 0, 0., {none})" for f in FEATURES]
    for name in QUALITY:
        s = SIGNALS[name]
        out.append(f"({s.where}, {literal(name)}, '', '', {s.hit}, 0., {none})")
    for name, expr in CENTILES.items():
        out.append(f"({expr} IS NOT NULL, {literal(name)}, '', '', 0, 0., {expr})")
    out.append(f"({IS_WORKFLOW}, {literal(WORKFLOW)}, '', '', 0, 0., {none})")
    out.append(
        f"({IS_REWORK}, {literal(REWORK)}, {attr(A.REWORK_KIND.key)}, {attr(A.EFFORT_ACTOR_ROLE.key)}, 0, "
        f"toFloat64OrZero({attr(A.EFFORT_MINUTES.key)}), {none})"
    )
    out.append(
        f"({IS_FEEDBACK}, {literal(FEEDBACK)}, {attr(A.FEEDBACK_CATEGORY.key)}, {attr(A.FEEDBACK_SEVERITY.key)}, "
        f"0, 0., {none})"
    )
    return out


def signal_refresh_select(traces: str, since: str | None, until: str | None = None) -> str:
    """The signal rollup rows of the spans in the qualified table `traces` at or after SQL instant
    `since` (every one when None) and before `until` (when given)."""
    entries = ",\n        ".join(_entries())
    shadow = f"toUInt8({attr(A.ROLLOUT_MODE.key)} = {literal(RolloutMode.SHADOW.value)})"
    when = _between("Timestamp", since, until)
    keys = sorted({k for f in FEATURES for k in f.keys} | {k for n in QUALITY if (k := SIGNALS[n].key) is not None})
    # only spans that can give a row are expanded (a span's keys are read, not its whole map)
    carries = (
        f"hasAny(SpanAttributes.keys, [{', '.join(literal(k) for k in keys)}]) OR ({IS_WORKFLOW}) "
        f"OR ({IS_REWORK}) OR ({IS_FEEDBACK})"
    )
    return (
        f"SELECT TenantId, {KIND} AS WorkflowKind, {hour_of('Timestamp')},\n"
        f"    {attr(A.SITE.key)} AS Site, {attr(A.DEPARTMENT.key)} AS Department, {shadow} AS Shadow,\n"
        "    e.2 AS Signal, e.3 AS Bin, e.4 AS Detail, toInt64(count()) AS Rows, toInt64(sum(e.5)) AS Hits, "
        f"sum(e.6) AS Total,\n    groupArrayIf(assumeNotNull(e.7), e.7 IS NOT NULL) AS {MEASURED}\n"
        f"FROM {traces}\n"
        f"ARRAY JOIN arrayFilter(e -> e.1, [\n        {entries}\n    ]) AS e\n"
        f"WHERE ({when}) AND ({carries})\n"
        f"GROUP BY TenantId, WorkflowKind, {TIME_COLUMN}, Site, Department, Shadow, Signal, Bin, Detail"
    )


STAGE_DIMENSIONS: Final = ("TenantId", "WorkflowKind", "Site", "Department", "ModelVersion", "RolloutCohort")
"""What a stage rollup row is per, besides its hour, stage, queue and shadow mode: the dashboards'
filters, which stage spans carry as columns."""


STAGE_SKETCH_ACCURACY: Final = 0.01
"""The relative accuracy of the stage rollup's duration sketch (DDSketch, `quantileDD`; migration
15): a centile read from it is within 1 % of the duration of that rank. It merges exactly (a
range's sketch is the sketch of its spans, whatever hours it is merged from), where the sample
`quantile` kept before drifted by up to 15 % over a long range (docs/performance.md)."""

STAGE_CENTILES: Final = (0.5, 0.95, 0.99)
"""The centiles of a stage's duration the panels show, read in one merge of the sketch: every
stage panel names the same aggregate, which the rollup's projection `unfiltered` holds (migration
15: a change here needs a new projection)."""


def stage_centiles(state: str = "Duration") -> str:
    """SQL: the array of `STAGE_CENTILES` (ms) of the stage rollup's duration sketch `state`,
    merged over a group's rows (NaN for none)."""
    levels = ", ".join(str(q) for q in STAGE_CENTILES)
    return f"quantilesDDMerge({STAGE_SKETCH_ACCURACY}, {levels})({state})"


def stage_centile(q: float) -> str:
    """SQL: centile `q` (one of `STAGE_CENTILES`) of the stage rollup's duration, in ms."""
    return f"{stage_centiles()}[{STAGE_CENTILES.index(q) + 1}]"


def stage_refresh_select(stages: str, since: str | None, until: str | None = None) -> str:
    """The stage rollup rows of the stage spans in the qualified table `stages` at or after SQL
    instant `since` (every one when None) and before `until` (when given): spans, their duration's
    sketch (read with `stage_centiles`) and the deepest queue reported, per hour, stage and queue."""
    key = ", ".join(("TenantId", "WorkflowKind", TIME_COLUMN, *STAGE_DIMENSIONS[2:], "Stage", "QueueName", "Shadow"))
    return (
        f"SELECT TenantId, WorkflowKind, {hour_of('Timestamp')}, {', '.join(STAGE_DIMENSIONS[2:])}, Stage, "
        "QueueName, toUInt8(ifNull(Shadow, 0)) AS Shadow,\n"
        f"    toInt64(count()) AS Spans, quantileDDState({STAGE_SKETCH_ACCURACY}, 0.95)(DurationMs) AS Duration, "
        "max(QueueDepth) AS MaxQueueDepth\n"
        f"FROM {stages}\nWHERE {_between('Timestamp', since, until)}\nGROUP BY {key}"
    )


def service_refresh_select(traces: str, since: str | None) -> str:
    """The service rollup rows of the spans in the qualified table `traces` at or after SQL instant
    `since` (every one when None): spans and the latest span's time per tenant, service and hour."""
    return (
        f"SELECT TenantId, ServiceName, {hour_of('Timestamp')}, toInt64(count()) AS Spans, "
        "max(Timestamp) AS LastSpan\n"
        f"FROM {traces}\nWHERE {held_since('Timestamp', since)}\nGROUP BY TenantId, ServiceName, {TIME_COLUMN}"
    )


def feedback_refresh_select(traces: str, workflows: str, since: str | None) -> str:
    """The feedback rollup rows of the feedback records in the qualified span table `traces` at or
    after SQL instant `since` (every one when None), each joined to its workflow in the qualified
    workflows view `workflows` (`clinotel.model.feedback`)."""
    rows = feedback_decisions_sql(traces, workflows, held_since("Timestamp", since))
    key = f"TenantId, WorkflowKind, {TIME_COLUMN}, Site, Department, Category, Severity, ModelVersion, Decision, Joined"
    return (
        f"SELECT TenantId, kind AS WorkflowKind, {hour_of('Timestamp')}, site AS Site, department AS Department,\n"
        "    category AS Category, severity AS Severity, model_version AS ModelVersion, decision AS Decision, "
        "joined AS Joined,\n    toInt64(count()) AS Reports\n"
        f"FROM (\n{rows}\n)\nGROUP BY {key}"
    )


COHORT_ROLLED_UP: Final = (
    "under_triage_rate", "override_rate", "high_priority_rate", "queue_wait_p95_ms", "high_priority_tpr",
)  # fmt: skip
"""The indicators `clinical_cohort_hours` holds per cohort group (the fairness measures and parity)."""
COHORT_DIMENSIONS_ROLLED: Final = ("TenantId", "WorkflowKind", "Site", "Department", "ModelVersion", "RolloutCohort")
"""What a cohort rollup row is per, besides its hour, dimension and group."""


def cohort_dimension(i: Indicator, by: Sequence[str]) -> str | None:
    """The cohort dimension a series of `i` grouped by `by` reads from the cohort rollup (exactly
    one of `by` is a cohort dimension, the others its other columns), or None."""
    dimensions = [c for c in by if c in COHORT_DIMENSIONS]
    others = [c for c in by if c not in COHORT_DIMENSIONS]
    if i.name in COHORT_ROLLED_UP and len(dimensions) == 1 and all(c in COHORT_DIMENSIONS_ROLLED for c in others):
        return dimensions[0]
    return None


def cohort_refresh_select(
    workflows: str,
    since: str | None,
    source_filter: str = "1",
    until: str | None = None,
    also: str | None = None,
    tenants: Collection[str] | None = None,
) -> str:
    """The cohort rollup rows of the workflows in the qualified table `workflows` (merged; with the
    table `also`, as for `refresh_select`) that started at or after SQL instant `since` (every one
    when None) and before `until` (when given): a row per cohort dimension and group (groups ''
    left out), the fairness indicators' own SQL; of the `tenants` only, when given."""
    pairs = ", ".join(f"({literal(d)}, toString({d}))" for d in COHORT_DIMENSIONS)
    measures = ",\n    ".join(m for name in COHORT_ROLLED_UP for m in _measures(INDICATORS[name]))
    key = ", ".join(("TenantId", "WorkflowKind", TIME_COLUMN, *COHORT_DIMENSIONS_ROLLED[2:], "Dimension", "Grp"))
    return (
        f"SELECT\n    TenantId, WorkflowKind, {hour_of('StartTime')}, "
        f"{', '.join(COHORT_DIMENSIONS_ROLLED[2:])}, d.1 AS Dimension, d.2 AS Grp,\n"
        f"    toInt64(count()) AS members,\n    {measures}\n"
        f"FROM {_merged(workflows, since, source_filter, until=until, also=also, tenants=tenants)}\n"
        f"ARRAY JOIN [{pairs}] AS d\n"
        "WHERE d.2 != ''\n"
        f"GROUP BY {key}"
    )


def truth_refresh_select(
    workflows: str,
    since: str | None,
    source_filter: str = "1",
    also: str | None = None,
    tenants: Collection[str] | None = None,
) -> str:
    """The truth rollup's rows: the workflows in the qualified table `workflows` (merged, `FINAL`,
    from the parts `source_filter` keeps; with the table `also`, as for `refresh_select`) whose
    ground truth arrived at or after SQL instant `since` (every one when None), per hour of its
    arrival; joined when the workflow's own spans were received (`Spans > 0`); of the `tenants`
    only, when given."""
    return (
        f"SELECT TenantId, WorkflowKind, {hour_of('assumeNotNull(TruthTime)')}, toUInt8(Spans > 0) AS Joined, "
        "toInt64(count()) AS Outcomes\n"
        f"FROM {_merged(workflows, since, source_filter, 'TruthTime', also=also, tenants=tenants)}\n"
        "WHERE TruthTime IS NOT NULL\n"
        f"GROUP BY TenantId, WorkflowKind, {TIME_COLUMN}, Joined"
    )
