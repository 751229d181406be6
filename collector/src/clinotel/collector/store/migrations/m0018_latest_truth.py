"""Migration 18 (frozen): a workflow's ground truth and review are the latest recorded, not the
largest.

`clinical_workflows` merged a workflow's outcome label, adverse event, escalation and review with
`max`: a correction of the truth toward more urgency (`ESI-4` then `ESI-2`) was ignored, an adverse
event reported then withdrawn stayed reported, a re-review showed whichever action sorts last.
Now each ground-truth field is kept with the time of the `outcome` span that recorded it
(`OutcomeLabelLatest`, `AdverseEventLatest`, `EscalationNeededLatest`: `max` over (time, value),
the value of the latest span that carries it), the review with the time of the latest `review`
span carrying an action (`ReviewLatest`: time, action, role, reason), and the final value acted on
with the time of the latest span other than an outcome that carries one (`ReviewFinalValueLatest`:
the review's, or the action's when it records what was done). A span stamped at or before the
epoch counts as 1 ns after it (a producer with an unset clock: its record is kept, not taken for
none). Two records stamped the same instant are ordered by their values (the larger wins). The
names readers use (`OutcomeLabel`, `AdverseEvent`, `EscalationNeeded`, `ReviewAction`,
`ReviewActorRole`, `ReviewReason`, `ReviewFinalValue`) become ALIAS columns over them, so every
query, dashboard and Grafana panel reads the same names. The columns they were are renamed
`…Max` and kept: rows stored before this migration have no time to order by and read as they
did (their largest value), and a review field recorded on a span other than a `review` span still
reads from `…Max` when the workflow has no review span with an action.

Rows are not rewritten. An insert that runs between the renaming and the view's new definition
(milliseconds) fails and is retried by the writer.
"""

from __future__ import annotations

from typing import Any, Final

from clinotel.collector.store.migrations import render
from clinotel.model.sql import identifier, literal

DESCRIPTION: Final = "ground truth and review: the latest recorded, not the largest"

_EPOCH: Final = "toDateTime64(0, 9)"

LATEST: Final = (
    ("OutcomeLabelLatest", "Tuple(DateTime64(9), String)"),
    ("AdverseEventLatest", "Tuple(DateTime64(9), UInt8)"),
    ("EscalationNeededLatest", "Tuple(DateTime64(9), UInt8)"),
    ("ReviewLatest", "Tuple(DateTime64(9), String, String, String)"),
    ("ReviewFinalValueLatest", "Tuple(DateTime64(9), String)"),
)
"""The stored columns added: (name, type of the `max` over (time, value…))."""

ALIASES: Final = (
    ("OutcomeLabel", "String", "if(OutcomeLabelLatest.2 != '', OutcomeLabelLatest.2, OutcomeLabelMax)"),
    (
        "AdverseEvent",
        "Nullable(UInt8)",
        f"if(AdverseEventLatest.1 > {_EPOCH}, toNullable(AdverseEventLatest.2), AdverseEventMax)",
    ),
    (
        "EscalationNeeded",
        "Nullable(UInt8)",
        f"if(EscalationNeededLatest.1 > {_EPOCH}, toNullable(EscalationNeededLatest.2), EscalationNeededMax)",
    ),
    ("ReviewAction", "LowCardinality(String)", f"if(ReviewLatest.1 > {_EPOCH}, ReviewLatest.2, ReviewActionMax)"),
    (
        "ReviewActorRole",
        "LowCardinality(String)",
        f"if(ReviewLatest.1 > {_EPOCH}, ReviewLatest.3, ReviewActorRoleMax)",
    ),
    ("ReviewReason", "LowCardinality(String)", f"if(ReviewLatest.1 > {_EPOCH}, ReviewLatest.4, ReviewReasonMax)"),
    (
        "ReviewFinalValue",
        "String",
        f"if(ReviewFinalValueLatest.1 > {_EPOCH}, ReviewFinalValueLatest.2, ReviewFinalValueMax)",
    ),
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
    maxIf(DecisionSource, LiveDecide) AS `DecisionSource`,
    maxIf(DecisionValue, LiveDecide) AS `DecisionValue`,
    maxIf(DecisionConfidence, LiveDecide) AS `DecisionConfidence`,
    maxIf(DecisionRisk, LiveDecide) AS `DecisionRisk`,
    maxIf(ModelName, LiveDecide) AS `ModelName`,
    maxIf(ModelVersion, LiveDecide) AS `ModelVersion`,
    maxIf(FallbackReason, LiveDecide) AS `FallbackReason`,
    maxIf(RolloutMode, LiveDecide) AS `RolloutMode`,
    maxIf(RolloutCohort, LiveDecide) AS `RolloutCohort`,
    maxIf(FlagKey, LiveDecide) AS `FlagKey`,
    maxIf(FlagVariant, LiveDecide) AS `FlagVariant`,
    maxIf(DecisionValue, ShadowDecide) AS `ShadowValue`,
    maxIf(ModelVersion, ShadowDecide) AS `ShadowModelVersion`,
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
"""`clinical_workflows_mv` of migration 16 writing the latest truth and review."""


def _kinds(client: Any, o: Any, table: str) -> dict[str, str]:
    """Column name -> default kind ('' for a stored column, 'ALIAS', …) of `table` on this node."""
    sql = (
        f"SELECT name, default_kind FROM system.columns "
        f"WHERE database = {literal(o.database)} AND table = {literal(table)}"
    )
    return {str(n): str(k) for n, k in getattr(client.query(sql), "result_rows", [])}


def _alter(client: Any, o: Any, table: str, qualified: str) -> None:
    """`table`'s stored columns added, the readers' names renamed `…Max` where still stored."""
    on_cluster = f" ON CLUSTER {identifier(o.cluster)}" if o.cluster else ""
    for name, type_ in LATEST:
        client.command(
            f"ALTER TABLE {qualified}{on_cluster} ADD COLUMN IF NOT EXISTS {identifier(name)} "
            f"SimpleAggregateFunction(max, {type_})"
        )
    kinds = _kinds(client, o, table)
    renames = [n for n, _, _ in ALIASES if kinds.get(n) == ""]
    if renames:
        clauses = ", ".join(f"RENAME COLUMN {identifier(n)} TO {identifier(n + 'Max')}" for n in renames)
        client.command(f"ALTER TABLE {qualified}{on_cluster} {clauses}")


def _aliases(client: Any, o: Any, qualified: str) -> None:
    on_cluster = f" ON CLUSTER {identifier(o.cluster)}" if o.cluster else ""
    for name, type_, expr in ALIASES:
        client.command(
            f"ALTER TABLE {qualified}{on_cluster} ADD COLUMN IF NOT EXISTS {identifier(name)} {type_} ALIAS {expr}"
        )


def run(client: Any, o: Any) -> None:
    local = "clinical_workflows_local" if o.cluster else "clinical_workflows"
    tables = [(local, render("{{local:clinical_workflows}}", o))]
    if o.cluster:
        tables.append(("clinical_workflows", render("{{name:clinical_workflows}}", o)))
    for table, qualified in tables:
        _alter(client, o, table, qualified)
    client.command(render(VIEW, o))
    for _, qualified in tables:
        _aliases(client, o, qualified)
