"""Migration 8 (frozen): late ground truth joins its workflow by the pseudonymous workflow id, a
workflow nobody reviewed has no review latency, and outcomes that join nothing are kept apart.

- `clinical_workflow_ids` (EmbeddedRocksDB, a key-value table): for each (tenant, workflow kind,
  workflow id), the latest workflow's trace and start; kept by `clinical_workflow_ids_mv` as stage
  spans arrive. A materialized view sees only the inserted block, so the lookup is a direct join
  against this key-value table: one key read per row, not a scan.
- `clinical_workflows_mv` is re-created: an `outcome` span with no span link lands on the latest
  workflow with its id in its tenant and kind that started before it: one in the same inserted
  block (a window over the block: two materialized views on one table run in no fixed order),
  else the one in `clinical_workflow_ids`. `ReviewLatencyMs` is NULL without a review span (it was
  0), and `DecideMs` counts the live decision only (a shadow prediction is a zero-length `decide`
  span beside it).
- `clinical_unjoined_outcomes`: outcome spans that join nothing (no link, and no workflow with
  their id started before them), with the reason; the telemetry-health dashboard counts them.
  Before, each became a workflow row of its own.

Rows stored before (single node): `clinical_workflows` is recomputed from `clinical_stage_spans`
(every clinical span is there) into a new table with the corrected definition, a late outcome
joined to the latest workflow with its id started before it (an ASOF join over the history), and
swapped in; the key-value table and `clinical_unjoined_outcomes` are filled from the same history.
On a cluster the stored rows are left as they were (docs/operations.md says how to recompute them
shard by shard); new spans are joined as above, on the node that stores them.
"""

from __future__ import annotations

from typing import Any, Final

from clinotel.collector.store.migrations import render
from clinotel.model.sql import identifier, literal

DESCRIPTION: Final = (
    "late ground truth joined by pseudonymous workflow id; no review latency without a review; "
    "outcomes that join nothing kept apart"
)

_KEY: Final = "concat({t}TenantId, char(0), {t}WorkflowKind, char(0), {t}WorkflowId)"
_UNLINKED: Final = "{t}Stage = 'outcome' AND {t}LinkedTraceId = '' AND {t}WorkflowId != ''"

MAP: Final = """CREATE TABLE IF NOT EXISTS {{local:clinical_workflow_ids}}{{on_cluster}}
(
    `Key` String,
    `WorkflowTraceId` String,
    `WorkflowStart` DateTime64(9)
)
ENGINE = EmbeddedRocksDB%(ttl)s
PRIMARY KEY Key"""

UNJOINED: Final = """CREATE TABLE IF NOT EXISTS {{local:clinical_unjoined_outcomes}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `WorkflowKind` LowCardinality(String),
    `WorkflowId` String,
    `TraceId` String,
    `ServiceName` LowCardinality(String),
    `Reason` LowCardinality(String)
)
ENGINE = {{engine:MergeTree:clinical_unjoined_outcomes}}
PARTITION BY (TenantId, toDate(Timestamp))
ORDER BY (TenantId, WorkflowKind, Timestamp){{ttl:toDateTime(Timestamp)}}
COMMENT 'Late outcome spans that joined no workflow: no span link, and no workflow with their id before them'"""

UNJOINED_DISTRIBUTED: Final = """CREATE TABLE IF NOT EXISTS {{name:clinical_unjoined_outcomes}}{{on_cluster}}
AS {{local:clinical_unjoined_outcomes}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_unjoined_outcomes_local', rand())"""

MAP_VIEW: Final = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{{{local:clinical_workflow_ids_mv}}}}{{{{on_cluster}}}}
TO {{{{local:clinical_workflow_ids}}}}
AS SELECT
    b.Key AS Key,
    b.Trace AS WorkflowTraceId,
    if(m.WorkflowTraceId = b.Trace, least(m.WorkflowStart, b.Start), b.Start) AS WorkflowStart
FROM
(
    SELECT Key, argMax(TraceId, TraceStart) AS Trace, max(TraceStart) AS Start
    FROM
    (
        SELECT {_KEY.format(t="")} AS Key, TraceId, min(Timestamp) AS TraceStart
        FROM {{{{local:clinical_stage_spans}}}}
        WHERE Stage != 'outcome' AND WorkflowId != ''
        GROUP BY Key, TraceId
    )
    GROUP BY Key
) AS b
LEFT JOIN {{{{local:clinical_workflow_ids}}}} AS m ON m.Key = b.Key
WHERE m.Key = '' OR m.WorkflowTraceId = b.Trace OR m.WorkflowStart <= b.Start
SETTINGS join_algorithm = 'direct'"""

_RESOLVED: Final = f"""SELECT
            s.*,
            if(s.WorkflowId != '', argMaxIf(s.TraceId, s.Timestamp, s.Stage != 'outcome') OVER (
                PARTITION BY s.TenantId, s.WorkflowKind, s.WorkflowId ORDER BY s.Timestamp
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), '') AS BlockWorkflow,
            m.WorkflowTraceId AS MapWorkflow,
            m.WorkflowStart AS MapStart
        FROM {{{{local:clinical_stage_spans}}}} AS s
        LEFT JOIN {{{{local:clinical_workflow_ids}}}} AS m
            ON m.Key = if({_UNLINKED.format(t="s.")}, {_KEY.format(t="s.")}, '')"""
"""The inserted block's spans, each outcome with its candidate workflows: the latest one with its
id earlier in the block, and the one the key-value table holds."""

_JOINED: Final = "BlockWorkflow != '' OR (MapWorkflow != '' AND MapStart <= Timestamp)"

_AGGREGATES: Final = """    TenantId,
    WorkflowKind,
    WorkflowTrace AS TraceId,
    min(Timestamp) AS `StartTime`,
    maxIf(EndTs, Stage != 'outcome') AS `EndTime`,
    countIf(Stage != 'outcome') AS `Spans`,
    countIf(IsError AND Stage != 'outcome') AS `ErrorSpans`,
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
    sumIf(DurationMs, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `DecideMs`,
    sumIf(DurationMs, Stage = 'review') AS `ReviewMs`,
    sumIf(DurationMs, Stage = 'act') AS `ActMs`,
    maxIf(DecisionSource, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `DecisionSource`,
    maxIf(DecisionValue, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `DecisionValue`,
    maxIf(DecisionConfidence, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `DecisionConfidence`,
    maxIf(DecisionRisk, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `DecisionRisk`,
    maxIf(ModelName, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `ModelName`,
    maxIf(ModelVersion, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `ModelVersion`,
    maxIf(FallbackReason, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `FallbackReason`,
    maxIf(RolloutMode, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `RolloutMode`,
    maxIf(RolloutCohort, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `RolloutCohort`,
    maxIf(FlagKey, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `FlagKey`,
    maxIf(FlagVariant, Stage = 'decide' AND ifNull(Shadow, 0) = 0) AS `FlagVariant`,
    maxIf(DecisionValue, Stage = 'decide' AND Shadow = 1) AS `ShadowValue`,
    maxIf(ModelVersion, Stage = 'decide' AND Shadow = 1) AS `ShadowModelVersion`,
    maxIf(ReviewAction, Stage != 'outcome') AS `ReviewAction`,
    maxIf(ReviewActorRole, Stage != 'outcome') AS `ReviewActorRole`,
    maxIf(ReviewReason, Stage != 'outcome') AS `ReviewReason`,
    maxIf(ReviewFinalValue, Stage != 'outcome') AS `ReviewFinalValue`,
    maxIf(ActionType, Stage != 'outcome') AS `ActionType`,
    maxIf(ActionStatus, Stage != 'outcome') AS `ActionStatus`,
    maxIf(ActionAutomated, Stage != 'outcome') AS `ActionAutomated`,
    maxIf(SlotsOffered, Stage != 'outcome') AS `SlotsOffered`,
    maxIf(SlotFilled, Stage != 'outcome') AS `SlotFilled`,
    maxIf(LeadTimeDays, Stage != 'outcome') AS `LeadTimeDays`,
    maxIf(OutcomeStatus, Stage != 'outcome') AS `OutcomeStatus`,
    maxIf(toNullable(coalesce(ReviewLatencyMs, DurationMs)), Stage = 'review') AS `ReviewLatencyMs`,
    maxIf(OutcomeLabel, Stage = 'outcome') AS `OutcomeLabel`,
    maxIf(AdverseEvent, Stage = 'outcome') AS `AdverseEvent`,
    maxIf(EscalationNeeded, Stage = 'outcome') AS `EscalationNeeded`,
    maxIf(toNullable(Timestamp), Stage = 'outcome') AS `TruthTime`"""

WORKFLOWS_VIEW: Final = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {{{{local:clinical_workflows_mv}}}}{{{{on_cluster}}}}
TO {{{{local:clinical_workflows}}}}
AS SELECT
{_AGGREGATES}
FROM
(
    SELECT
        *,
        Timestamp + toIntervalNanosecond(toInt64(DurationMs * 1e6)) AS EndTs,
        multiIf(Stage != 'outcome', TraceId, LinkedTraceId != '', LinkedTraceId, BlockWorkflow != '', BlockWorkflow,
                MapWorkflow != '' AND MapStart <= Timestamp, MapWorkflow, '') AS WorkflowTrace
    FROM
    (
        {_RESOLVED}
    )
)
WHERE WorkflowTrace != ''
GROUP BY TenantId, WorkflowKind, WorkflowTrace
SETTINGS prefer_column_name_to_alias = 1, join_algorithm = 'direct'"""

UNJOINED_VIEW: Final = f"""CREATE MATERIALIZED VIEW IF NOT EXISTS
{{{{local:clinical_unjoined_outcomes_mv}}}}{{{{on_cluster}}}}
TO {{{{local:clinical_unjoined_outcomes}}}}
AS SELECT
    TenantId,
    Timestamp,
    WorkflowKind,
    WorkflowId,
    TraceId,
    ServiceName,
    multiIf(WorkflowId = '', 'no link and no workflow id',
            MapWorkflow != '', 'the workflow with this id started after the outcome',
            'no workflow with this id') AS Reason
FROM
(
    {_RESOLVED}
)
WHERE Stage = 'outcome' AND LinkedTraceId = '' AND NOT ({_JOINED})
SETTINGS join_algorithm = 'direct'"""

# --- the history (single node): the same joins, with an ASOF join over every workflow's start

_HISTORY_CANDIDATES: Final = """SELECT TenantId AS wTenant, WorkflowKind AS wKind, WorkflowId AS wId, TraceId AS wTrace,
               min(Timestamp) AS wStart
        FROM {{local:clinical_stage_spans}}
        WHERE Stage != 'outcome' AND WorkflowId != ''
        GROUP BY wTenant, wKind, wId, wTrace"""

_HISTORY_RESOLVED: Final = f"""SELECT s.*, if({_UNLINKED.format(t="s.")}, w.wTrace, '') AS HistoryWorkflow
        FROM {{{{local:clinical_stage_spans}}}} AS s
        ASOF LEFT JOIN (
        {_HISTORY_CANDIDATES}
        ) AS w ON s.TenantId = w.wTenant AND s.WorkflowKind = w.wKind AND s.WorkflowId = w.wId
              AND s.Timestamp >= w.wStart"""

HISTORY_MAP: Final = f"""INSERT INTO {{{{local:clinical_workflow_ids}}}}
SELECT {_KEY.format(t="")} AS Key, argMax(TraceId, TraceStart), max(TraceStart)
FROM
(
    SELECT TenantId, WorkflowKind, WorkflowId, TraceId, min(Timestamp) AS TraceStart
    FROM {{{{local:clinical_stage_spans}}}}
    WHERE Stage != 'outcome' AND WorkflowId != ''
    GROUP BY TenantId, WorkflowKind, WorkflowId, TraceId
)
GROUP BY Key"""

HISTORY_WORKFLOWS: Final = f"""INSERT INTO %(target)s
SELECT
{_AGGREGATES}
FROM
(
    SELECT
        *,
        Timestamp + toIntervalNanosecond(toInt64(DurationMs * 1e6)) AS EndTs,
        multiIf(Stage != 'outcome', TraceId, LinkedTraceId != '', LinkedTraceId, HistoryWorkflow) AS WorkflowTrace
    FROM
    (
        {_HISTORY_RESOLVED}
    )
)
WHERE WorkflowTrace != ''
GROUP BY TenantId, WorkflowKind, WorkflowTrace
SETTINGS prefer_column_name_to_alias = 1, insert_deduplicate = 0"""

HISTORY_UNJOINED: Final = f"""INSERT INTO {{{{local:clinical_unjoined_outcomes}}}}
SELECT TenantId, Timestamp, WorkflowKind, WorkflowId, TraceId, ServiceName,
       if(WorkflowId = '', 'no link and no workflow id', 'no workflow with this id') AS Reason
FROM
(
    {_HISTORY_RESOLVED}
)
WHERE Stage = 'outcome' AND LinkedTraceId = '' AND HistoryWorkflow = ''
SETTINGS insert_deduplicate = 0"""


def _rows(client: Any, sql: str) -> list[tuple[str, ...]]:
    return [tuple(str(v) for v in row) for row in getattr(client.query(sql), "result_rows", [])]


def _qualified(o: Any, table: str) -> str:
    return f"{identifier(o.database)}.{identifier(table)}"


def _rebuild_workflows(client: Any, o: Any) -> None:
    """`clinical_workflows` recomputed from the stage spans into a copy, which is swapped in."""
    name = "clinical_workflows"
    where = f"database = {literal(o.database)} AND name = {literal(name)}"
    [(create,)] = _rows(client, f"SELECT create_table_query FROM system.tables WHERE {where}")
    new = _qualified(o, name + "__v8")
    copy = create.replace(f"CREATE TABLE {o.database}.{name} ", f"CREATE TABLE {new} ", 1)
    if copy == create:
        raise RuntimeError(f"cannot rebuild {o.database}.{name}: unexpected definition {create[:200]}")
    client.command(f"DROP TABLE IF EXISTS {new}")
    client.command(copy)
    client.command(render(HISTORY_WORKFLOWS % {"target": new}, o))
    client.command(f"EXCHANGE TABLES {_qualified(o, name)} AND {new}")
    client.command(f"DROP TABLE {new}")


def run(client: Any, o: Any) -> None:
    ttl = f"({int(o.ttl_days) * 86400})" if o.ttl_days else ""
    client.command(render(MAP % {"ttl": ttl}, o))
    client.command(render(UNJOINED, o))
    if o.cluster:
        client.command(render(UNJOINED_DISTRIBUTED, o))
    # the view reading the key-value table is re-created after the history is in: views follow
    # the tables they write to by identity, and the rebuild swaps clinical_workflows
    client.command(render("DROP VIEW IF EXISTS {{local:clinical_workflows_mv}}{{on_cluster}} SYNC", o))
    stored = int(_rows(client, render("SELECT count() FROM {{local:clinical_stage_spans}}", o))[0][0])
    if stored and not o.cluster:
        client.command(render(HISTORY_MAP, o))
        _rebuild_workflows(client, o)
        client.command(render(HISTORY_UNJOINED, o))
    client.command(render(MAP_VIEW, o))
    client.command(render(WORKFLOWS_VIEW, o))
    client.command(render(UNJOINED_VIEW, o))
