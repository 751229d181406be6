"""The clinical views: typed tables derived inside ClickHouse from `otel_traces` by
materialized views, so any OTLP pipeline that fills `otel_traces` fills them too.

- `clinical_stage_spans`: one row per stage span (and per late `outcome` span), the registered
  attributes as real columns, tenant first in the sort key.
- `clinical_workflows`: one row per workflow instance (its trace), merged as spans arrive:
  per-stage durations, the live decision, the shadow prediction, the review, the action, how it
  ended and, when it comes days later, the ground truth (a late `outcome` span lands on the row of
  the workflow it links to). Read it with `FINAL` or aggregate by its key.

Every column name here is the one dashboards and alerts use; every attribute key comes from
`clinotel.semconv`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from clinotel.collector.sql import literal
from clinotel.semconv import AttributeDef, AttrType, Stage
from clinotel.semconv import attributes as A

if TYPE_CHECKING:
    from clinotel.collector.schema import SchemaOptions

__all__ = ["STAGE_COLUMNS", "STAGE_SPANS", "WORKFLOWS", "WORKFLOW_COLUMNS", "Column", "statements"]

STAGE_SPANS: Final = "clinical_stage_spans"
WORKFLOWS: Final = "clinical_workflows"


@dataclass(frozen=True)
class Column:
    """A typed column holding one registered attribute."""

    name: str
    attribute: AttributeDef

    @property
    def type(self) -> str:
        t = self.attribute.type
        if t is AttrType.BOOLEAN:
            return "Nullable(UInt8)"
        if t is AttrType.INT:
            return "Nullable(Int64)"
        if t is AttrType.DOUBLE:
            return "Nullable(Float64)"
        if self.attribute.closed or self.attribute.values:
            return "LowCardinality(String)"
        return "String"

    def expr(self, source: str = "SpanAttributes") -> str:
        """The column's value read from an attribute map of `otel_traces`."""
        key = literal(self.attribute.key)
        t = self.attribute.type
        if t is AttrType.BOOLEAN:
            return f"if(mapContains({source}, {key}), toUInt8({source}[{key}] = 'true'), NULL)"
        if t is AttrType.INT:
            return f"toInt64OrNull({source}[{key}])"
        if t is AttrType.DOUBLE:
            return f"toFloat64OrNull({source}[{key}])"
        return f"{source}[{key}]"


STAGE_COLUMNS: Final = (
    Column("WorkflowKind", A.WORKFLOW_KIND),
    Column("Stage", A.WORKFLOW_STAGE),
    Column("Site", A.SITE),
    Column("Department", A.DEPARTMENT),
    Column("ServiceLine", A.SERVICE_LINE),
    Column("WorkflowId", A.WORKFLOW_ID),
    Column("IngestSource", A.INGEST_SOURCE),
    Column("QueueName", A.QUEUE_NAME),
    Column("QueueDepth", A.QUEUE_DEPTH),
    Column("DecisionSource", A.DECISION_SOURCE),
    Column("DecisionValue", A.DECISION_VALUE),
    Column("DecisionConfidence", A.DECISION_CONFIDENCE),
    Column("DecisionRisk", A.DECISION_RISK),
    Column("ModelName", A.DECISION_MODEL_NAME),
    Column("ModelVersion", A.DECISION_MODEL_VERSION),
    Column("FallbackReason", A.DECISION_FALLBACK_REASON),
    Column("Shadow", A.DECISION_SHADOW),
    Column("RolloutMode", A.ROLLOUT_MODE),
    Column("RolloutCohort", A.ROLLOUT_COHORT),
    Column("FlagKey", A.FEATURE_FLAG_KEY),
    Column("FlagVariant", A.FEATURE_FLAG_VARIANT),
    Column("ReviewAction", A.REVIEW_ACTION),
    Column("ReviewActorRole", A.REVIEW_ACTOR_ROLE),
    Column("ReviewReason", A.REVIEW_REASON),
    Column("ReviewFinalValue", A.REVIEW_FINAL_VALUE),
    Column("ReviewLatencyMs", A.REVIEW_LATENCY_MS),
    Column("ActionType", A.ACTION_TYPE),
    Column("ActionTarget", A.ACTION_TARGET),
    Column("ActionStatus", A.ACTION_STATUS),
    Column("ActionAutomated", A.ACTION_AUTOMATED),
    Column("SlotsOffered", A.SCHEDULING_SLOTS_OFFERED),
    Column("SlotFilled", A.SCHEDULING_SLOT_FILLED),
    Column("LeadTimeDays", A.SCHEDULING_LEAD_TIME_DAYS),
    Column("OutcomeStatus", A.OUTCOME_STATUS),
    Column("OutcomeLabel", A.OUTCOME_LABEL),
    Column("AdverseEvent", A.OUTCOME_ADVERSE_EVENT),
    Column("EscalationNeeded", A.OUTCOME_ESCALATION_NEEDED),
)

_COHORT_COLUMNS: Final = (
    Column("AgeBand", A.COHORT_AGE_BAND),
    Column("Sex", A.COHORT_SEX),
    Column("Language", A.COHORT_LANGUAGE),
    Column("PayerClass", A.COHORT_PAYER_CLASS),
    Column("RaceEthnicity", A.COHORT_RACE_ETHNICITY),
    Column("Acuity", A.COHORT_ACUITY),
)

_STAGE_DURATIONS: Final = (Stage.INGEST, Stage.QUEUE, Stage.DECIDE, Stage.REVIEW, Stage.ACT)


@dataclass(frozen=True)
class _Agg:
    """A clinical_workflows column: its type, its aggregate, and its per-block expression."""

    name: str
    type: str
    function: str
    expr: str


def _is(stage: Stage) -> str:
    return f"Stage = {literal(stage.value)}"


_OUTCOME: Final = _is(Stage.OUTCOME)
_NOT_OUTCOME: Final = f"Stage != {literal(Stage.OUTCOME.value)}"


def _workflow_aggregates() -> list[_Agg]:
    by_name = {c.name: c for c in STAGE_COLUMNS}
    live = f"{_is(Stage.DECIDE)} AND ifNull(Shadow, 0) = 0"
    shadow = f"{_is(Stage.DECIDE)} AND Shadow = 1"
    out = [
        _Agg("StartTime", "DateTime64(9)", "min", "min(Timestamp)"),
        _Agg("EndTime", "DateTime64(9)", "max", f"maxIf(EndTs, {_NOT_OUTCOME})"),
        _Agg("Spans", "UInt64", "sum", f"countIf({_NOT_OUTCOME})"),
        _Agg("ErrorSpans", "UInt64", "sum", f"countIf(IsError AND {_NOT_OUTCOME})"),
        _Agg("ServiceName", "LowCardinality(String)", "max", "max(ServiceName)"),
    ]
    for name in ("Site", "Department", "ServiceLine", "WorkflowId"):
        c = by_name[name]
        out.append(_Agg(name, c.type, "max", f"max({name})"))
    for c in _COHORT_COLUMNS:
        out.append(_Agg(c.name, c.type, "max", f"max({c.name})"))
    for stage in _STAGE_DURATIONS:
        out.append(_Agg(f"{stage.value.capitalize()}Ms", "Float64", "sum", f"sumIf(DurationMs, {_is(stage)})"))
    for name in (
        "DecisionSource", "DecisionValue", "DecisionConfidence", "DecisionRisk", "ModelName", "ModelVersion",
        "FallbackReason", "RolloutMode", "RolloutCohort", "FlagKey", "FlagVariant",
    ):  # fmt: skip
        c = by_name[name]
        out.append(_Agg(name, c.type, "max", f"maxIf({name}, {live})"))
    out.append(_Agg("ShadowValue", "String", "max", f"maxIf(DecisionValue, {shadow})"))
    out.append(_Agg("ShadowModelVersion", "String", "max", f"maxIf(ModelVersion, {shadow})"))
    for name in (
        "ReviewAction", "ReviewActorRole", "ReviewReason", "ReviewFinalValue", "ActionType", "ActionStatus",
        "ActionAutomated", "SlotsOffered", "SlotFilled", "LeadTimeDays", "OutcomeStatus",
    ):  # fmt: skip
        c = by_name[name]
        out.append(_Agg(name, c.type, "max", f"maxIf({name}, {_NOT_OUTCOME})"))
    out.append(
        _Agg("ReviewLatencyMs", "Nullable(Float64)", "max",
             f"maxIf(coalesce(ReviewLatencyMs, DurationMs), {_is(Stage.REVIEW)})")
    )  # fmt: skip
    for name in ("OutcomeLabel", "AdverseEvent", "EscalationNeeded"):
        c = by_name[name]
        out.append(_Agg(name, c.type, "max", f"maxIf({name}, {_OUTCOME})"))
    out.append(_Agg("TruthTime", "Nullable(DateTime64(9))", "max", f"maxIf(toNullable(Timestamp), {_OUTCOME})"))
    return out


WORKFLOW_COLUMNS: Final = tuple(a.name for a in _workflow_aggregates())


def statements(o: SchemaOptions) -> Iterator[str]:
    """The clinical tables and their materialized views, rendered for `o`."""
    q_local, q_engine, q_ttl, on_cluster = o.local, o.engine, o.ttl, o.on_cluster
    traces = q_local("otel_traces")

    stage_cols = ",\n    ".join(f"`{c.name}` {c.type}" for c in STAGE_COLUMNS + _COHORT_COLUMNS)
    yield f"""CREATE TABLE IF NOT EXISTS {q_local(STAGE_SPANS)}{on_cluster}
(
    `TenantId` LowCardinality(String),
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TraceId` String CODEC(ZSTD(1)),
    `SpanId` String CODEC(ZSTD(1)),
    `ParentSpanId` String CODEC(ZSTD(1)),
    `LinkedTraceId` String CODEC(ZSTD(1)),
    `ServiceName` LowCardinality(String),
    `DurationMs` Float64 CODEC(ZSTD(1)),
    `IsError` UInt8,
    {stage_cols}
)
ENGINE = {q_engine(STAGE_SPANS)}
PARTITION BY {o.partition_by("toDate(Timestamp)")}
ORDER BY (TenantId, WorkflowKind, Stage, Timestamp){q_ttl("toDateTime(Timestamp)")}"""

    stage_exprs = (
        ",\n    ".join(f"{c.expr()} AS `{c.name}`" for c in STAGE_COLUMNS)
        + ",\n    "
        + ",\n    ".join(f"{c.expr()} AS `{c.name}`" for c in _COHORT_COLUMNS)
    )
    yield f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {q_local(STAGE_SPANS + "_mv")}{on_cluster}
TO {q_local(STAGE_SPANS)}
AS SELECT
    ResourceAttributes[{literal(A.TENANT_ID.key)}] AS TenantId,
    Timestamp,
    TraceId,
    SpanId,
    ParentSpanId,
    Links.TraceId[1] AS LinkedTraceId,
    ServiceName,
    Duration / 1e6 AS DurationMs,
    toUInt8(StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS IsError,
    {stage_exprs}
FROM {traces}
WHERE mapContains(SpanAttributes, {literal(A.WORKFLOW_KIND.key)})"""

    aggs = _workflow_aggregates()
    wf_cols = ",\n    ".join(f"`{a.name}` SimpleAggregateFunction({a.function}, {a.type})" for a in aggs)
    yield f"""CREATE TABLE IF NOT EXISTS {q_local(WORKFLOWS)}{on_cluster}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `TraceId` String,
    {wf_cols}
)
ENGINE = {q_engine(WORKFLOWS, "AggregatingMergeTree")}
PARTITION BY {o.partition_by("toYYYYMM(StartTime)")}
ORDER BY (TenantId, WorkflowKind, TraceId){q_ttl("toDateTime(StartTime)")}"""

    # A late outcome carries its workflow's root span as its first link: it lands on that row.
    # The aggregates are named after the columns they read; prefer_column_name_to_alias makes
    # `maxIf(DecisionValue, …) AS DecisionValue` read the column, not its own alias.
    wf_exprs = ",\n    ".join(f"{a.expr} AS `{a.name}`" for a in aggs)
    yield f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {q_local(WORKFLOWS + "_mv")}{on_cluster}
TO {q_local(WORKFLOWS)}
AS SELECT
    TenantId,
    WorkflowKind,
    WorkflowTrace AS TraceId,
    {wf_exprs}
FROM
(
    SELECT
        *,
        Timestamp + toIntervalNanosecond(toInt64(DurationMs * 1e6)) AS EndTs,
        if({_OUTCOME} AND LinkedTraceId != '', LinkedTraceId, TraceId) AS WorkflowTrace
    FROM {q_local(STAGE_SPANS)}
)
GROUP BY TenantId, WorkflowKind, WorkflowTrace
SETTINGS prefer_column_name_to_alias = 1"""
