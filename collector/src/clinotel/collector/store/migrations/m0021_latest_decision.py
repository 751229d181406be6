"""Migration 21 (frozen): a workflow's decision is the latest recorded, whole, not the largest of
each field.

`clinical_workflows` merged the live decision's fields with `max`, each on its own: a decision
re-scored within a workflow (`ESI-3` at 0.7, then `ESI-2` at 0.9 five seconds later) read as
`ESI-3` at 0.9, a decision that was never made, and counted as under-triage against a truth of
`ESI-2` (an outside audit with its own traffic, 2026-12-07). Now the live decision is the latest
live `decide` span that records one (a value, or a fallback: source `fallback` or a fallback
reason) and did not fail (status not ERROR), whole: source, value, confidence, risk, model name
and version and fallback reason (`DecisionLatest`: `max` over (time, fields…)); the shadow
prediction likewise, value and model version (`ShadowLatest`). A `decide` span that records no
decision (a source set before a model call that then failed) or that failed changes nothing; a
workflow whose decisions are all on failed spans reads the largest of each field, as before. The names
readers use become ALIAS columns over them, as migration 18 made the truth's and the review's; the
columns they were are renamed `…Max` and still written (the largest of each field, what rows
stored before this migration read, and what a workflow whose decide spans carry a field but
neither source nor value reads). "Latest" is by the span's start on the producer's clock; a span
stamped at or before the epoch counts as 1 ns after it; of two stamped the same instant, the
larger tuple wins. The rollout fields (mode, cohort, flag key and variant) stay the largest
recorded: they say which arm a workflow was in, not what was decided.

Rows are not rewritten. An insert that runs between the renaming and the view's new definition
(milliseconds) fails and is retried by the writer.
"""

from __future__ import annotations

from typing import Any, Final

from clinotel.collector.store.migrations import render
from clinotel.model.sql import identifier, literal

DESCRIPTION: Final = "the decision and the shadow prediction: the latest recorded, whole"

_EPOCH: Final = "toDateTime64(0, 9)"

LATEST: Final = (
    ("DecisionLatest", "Tuple(DateTime64(9), String, String, Nullable(Float64), String, String, String, String)"),
    ("ShadowLatest", "Tuple(DateTime64(9), String, String)"),
)
"""The stored columns added: (name, type of the `max` over (time, fields…))."""

_DECISION: Final = (
    ("DecisionSource", "LowCardinality(String)"),
    ("DecisionValue", "String"),
    ("DecisionConfidence", "Nullable(Float64)"),
    ("DecisionRisk", "LowCardinality(String)"),
    ("ModelName", "String"),
    ("ModelVersion", "String"),
    ("FallbackReason", "LowCardinality(String)"),
)
_SHADOW: Final = (("ShadowValue", "String"), ("ShadowModelVersion", "String"))

ALIASES: Final = tuple(
    (name, type_, f"if({latest}.1 > {_EPOCH}, {latest}.{i}, {name}Max)")
    for latest, fields in (("DecisionLatest", _DECISION), ("ShadowLatest", _SHADOW))
    for i, (name, type_) in enumerate(fields, start=2)
)
"""The names readers use, as ALIAS columns: (name, type, expression); each was a stored column,
renamed `<name>Max`."""


VIEW: Final = """ALTER TABLE {{local:clinical_workflows_mv}}{{on_cluster}} MODIFY QUERY
SELECT
    TenantId,
    WorkflowKind,
    WorkflowTrace AS TraceId,
    min(Timestamp) AS `StartTime`,
    maxIf(EndTs, NotOutcome) AS `EndTime`,
    countIf(NotOutcome) AS `Spans`,
    countIf(IsError AND NotOutcome) AS `ErrorSpans`,
    max(ServiceName) AS `ServiceName`,
    max(Site) AS `Site`,
    max(Department) AS `Department`,
    max(ServiceLine) AS `ServiceLine`,
    max(WorkflowId) AS `WorkflowId`,
    max(AgeBand) AS `AgeBand`,
    max(Sex) AS `Sex`,
    max(Language) AS `Language`,
    max(PayerClass) AS `PayerClass`,
    max(RaceEthnicity) AS `RaceEthnicity`,
    max(Acuity) AS `Acuity`,
    sumIf(DurationMs, Stage = 'ingest') AS `IngestMs`,
    sumIf(DurationMs, Stage = 'queue') AS `QueueMs`,
    sumIf(DurationMs, LiveDecide) AS `DecideMs`,
    sumIf(DurationMs, Stage = 'review') AS `ReviewMs`,
    sumIf(DurationMs, Stage = 'act') AS `ActMs`,
    maxIf(DecisionSource, LiveDecide) AS `DecisionSourceMax`,
    maxIf(DecisionValue, LiveDecide) AS `DecisionValueMax`,
    maxIf(DecisionConfidence, LiveDecide) AS `DecisionConfidenceMax`,
    maxIf(DecisionRisk, LiveDecide) AS `DecisionRiskMax`,
    maxIf(ModelName, LiveDecide) AS `ModelNameMax`,
    maxIf(ModelVersion, LiveDecide) AS `ModelVersionMax`,
    maxIf(FallbackReason, LiveDecide) AS `FallbackReasonMax`,
    maxIf(RolloutMode, LiveDecide) AS `RolloutMode`,
    maxIf(RolloutCohort, LiveDecide) AS `RolloutCohort`,
    maxIf(FlagKey, LiveDecide) AS `FlagKey`,
    maxIf(FlagVariant, LiveDecide) AS `FlagVariant`,
    maxIf(DecisionValue, ShadowDecide) AS `ShadowValueMax`,
    maxIf(ModelVersion, ShadowDecide) AS `ShadowModelVersionMax`,
    maxIf((At, DecisionSource, DecisionValue, DecisionConfidence, DecisionRisk, ModelName, ModelVersion,
           FallbackReason), LiveDecide AND NOT IsError
           AND (DecisionValue != '' OR FallbackReason != '' OR DecisionSource = 'fallback')) AS `DecisionLatest`,
    maxIf((At, DecisionValue, ModelVersion), ShadowDecide AND NOT IsError AND DecisionValue != '') AS `ShadowLatest`,
    maxIf(ReviewAction, NotOutcome) AS `ReviewActionMax`,
    maxIf(ReviewActorRole, NotOutcome) AS `ReviewActorRoleMax`,
    maxIf(ReviewReason, NotOutcome) AS `ReviewReasonMax`,
    maxIf(ReviewFinalValue, NotOutcome) AS `ReviewFinalValueMax`,
    maxIf(ActionType, NotOutcome) AS `ActionType`,
    maxIf(ActionStatus, NotOutcome) AS `ActionStatus`,
    maxIf(ActionAutomated, NotOutcome) AS `ActionAutomated`,
    maxIf(SlotsOffered, NotOutcome) AS `SlotsOffered`,
    maxIf(SlotFilled, NotOutcome) AS `SlotFilled`,
    maxIf(LeadTimeDays, NotOutcome) AS `LeadTimeDays`,
    maxIf(OutcomeStatus, NotOutcome) AS `OutcomeStatus`,
    maxIf((At, ReviewAction, ReviewActorRole, ReviewReason), Stage = 'review' AND ReviewAction != '')
        AS `ReviewLatest`,
    maxIf((At, ReviewFinalValue), NotOutcome AND ReviewFinalValue != '') AS `ReviewFinalValueLatest`,
    maxIf(toNullable(coalesce(ReviewLatencyMs, DurationMs)), Stage = 'review') AS `ReviewLatencyMs`,
    maxIf((At, OutcomeLabel), IsOutcome AND OutcomeLabel != '') AS `OutcomeLabelLatest`,
    maxIf((At, assumeNotNull(AdverseEvent)), IsOutcome AND AdverseEvent IS NOT NULL) AS `AdverseEventLatest`,
    maxIf((At, assumeNotNull(EscalationNeeded)), IsOutcome AND EscalationNeeded IS NOT NULL)
        AS `EscalationNeededLatest`,
    maxIf(toNullable(Timestamp), IsOutcome) AS `TruthTime`
FROM
(
    SELECT
        *,
        Timestamp + toIntervalNanosecond(toInt64(DurationMs * 1e6)) AS EndTs,
        multiIf(Stage != 'outcome', TraceId, LinkedTraceId != '', LinkedTraceId, BlockWorkflow != '', BlockWorkflow,
                MapWorkflow != '' AND MapStart <= Timestamp, MapWorkflow, '') AS WorkflowTrace,
        Stage != 'outcome' AS NotOutcome,
        Stage = 'outcome' AS IsOutcome,
        Stage = 'decide' AND ifNull(Shadow, 0) = 0 AS LiveDecide,
        Stage = 'decide' AND Shadow = 1 AS ShadowDecide,
        greatest(Timestamp, fromUnixTimestamp64Nano(toInt64(1))) AS At
    FROM
    (
        SELECT
            s.*,
            if(s.WorkflowId != '', argMaxIf(s.TraceId, s.Timestamp, s.Stage != 'outcome') OVER (
                PARTITION BY s.TenantId, s.WorkflowKind, s.WorkflowId ORDER BY s.Timestamp
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), '') AS BlockWorkflow,
            m.WorkflowTraceId AS MapWorkflow,
            m.WorkflowStart AS MapStart
        FROM {{local:clinical_stage_spans}} AS s
        LEFT JOIN {{local:clinical_workflow_ids}} AS m
            ON m.Key = if(s.Stage = 'outcome' AND s.LinkedTraceId = '' AND s.WorkflowId != '',
                          concat(s.TenantId, char(0), s.WorkflowKind, char(0), s.WorkflowId), '')
    )
)
WHERE WorkflowTrace != ''
GROUP BY TenantId, WorkflowKind, WorkflowTrace
SETTINGS prefer_column_name_to_alias = 1, join_algorithm = 'direct'"""
"""`clinical_workflows_mv` of migration 18, writing the latest decision and shadow prediction whole."""


def _kinds(client: Any, o: Any, table: str) -> dict[str, str]:
    """Column name -> default kind ('' for a stored column, 'ALIAS', …) of `table` on this node."""
    sql = (
        f"SELECT name, default_kind FROM system.columns "
        f"WHERE database = {literal(o.database)} AND table = {literal(table)}"
    )
    return {str(n): str(k) for n, k in getattr(client.query(sql), "result_rows", [])}


def run(client: Any, o: Any) -> None:
    on_cluster = f" ON CLUSTER {identifier(o.cluster)}" if o.cluster else ""
    local = "clinical_workflows_local" if o.cluster else "clinical_workflows"
    tables = [(local, render("{{local:clinical_workflows}}", o))]
    if o.cluster:
        tables.append(("clinical_workflows", render("{{name:clinical_workflows}}", o)))
    for table, qualified in tables:
        for name, type_ in LATEST:
            client.command(
                f"ALTER TABLE {qualified}{on_cluster} ADD COLUMN IF NOT EXISTS {identifier(name)} "
                f"SimpleAggregateFunction(max, {type_})"
            )
        kinds = _kinds(client, o, table)
        renames = [n for n, _, _ in ALIASES if kinds.get(n) == ""]  # only what is still stored: it can run again
        if renames:
            clauses = ", ".join(f"RENAME COLUMN {identifier(n)} TO {identifier(n + 'Max')}" for n in renames)
            client.command(f"ALTER TABLE {qualified}{on_cluster} {clauses}")
    client.command(render(VIEW, o))
    for _, qualified in tables:
        for name, type_, expr in ALIASES:
            client.command(
                f"ALTER TABLE {qualified}{on_cluster} ADD COLUMN IF NOT EXISTS {identifier(name)} {type_} ALIAS {expr}"
            )
