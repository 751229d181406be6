"""The clinical views: typed tables derived inside ClickHouse from `otel_traces` by
materialized views, so any OTLP pipeline that fills `otel_traces` fills them too.

- `clinical_stage_spans`: one row per stage span (and per late `outcome` span), the registered
  attributes as real columns, tenant first in the sort key.
- `clinical_workflows`: one row per workflow instance (its trace), merged as spans arrive:
  per-stage durations, the live decision, the shadow prediction, the review, the action, how it
  ended and, when it comes days later, the ground truth: a late `outcome` span lands on the row of
  the workflow it links to or, without a link, of the latest workflow with its pseudonymous
  workflow id (in its tenant and workflow kind) that started before it. Read it with `FINAL` (the
  decision, the shadow prediction, the ground truth and the review are ALIAS columns over merged
  state: aggregating the rows yourself, or `SELECT *`, which leaves ALIAS columns out, does not
  read them).
- `clinical_unjoined_outcomes`: late `outcome` spans that joined no workflow, with the reason (the
  telemetry-health dashboard counts them; they are not workflows).

Every column name here is the one dashboards and alerts use; every attribute key comes from
`clinotel.semconv`. This is the model; the tables' DDL is in the collector's frozen migrations
(`clinotel.collector.store.migrations`), and a test compares the two, so a column added here needs a
migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from clinotel.model.sql import literal
from clinotel.model.tables import STAGE_SPANS, UNJOINED_OUTCOME_COLUMNS, UNJOINED_OUTCOMES, WORKFLOWS
from clinotel.semconv import AttributeDef, AttrType, DecisionSource, Stage
from clinotel.semconv import attributes as A

__all__ = [
    "ALIAS_COLUMNS",
    "COHORT_COLUMNS",
    "STAGE_COLUMNS",
    "STAGE_SPANS",
    "UNJOINED_OUTCOMES",
    "UNJOINED_OUTCOME_COLUMNS",
    "WORKFLOWS",
    "WORKFLOW_COLUMNS",
    "Column",
    "WorkflowColumn",
    "stored_column",
    "workflow_columns",
]


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

COHORT_COLUMNS: Final = (
    Column("AgeBand", A.COHORT_AGE_BAND),
    Column("Sex", A.COHORT_SEX),
    Column("Language", A.COHORT_LANGUAGE),
    Column("PayerClass", A.COHORT_PAYER_CLASS),
    Column("RaceEthnicity", A.COHORT_RACE_ETHNICITY),
    Column("Acuity", A.COHORT_ACUITY),
)

_STAGE_DURATIONS: Final = (Stage.INGEST, Stage.QUEUE, Stage.DECIDE, Stage.REVIEW, Stage.ACT)


@dataclass(frozen=True)
class WorkflowColumn:
    """A clinical_workflows column: its type, its aggregate, and its per-block expression; or,
    with `alias`, an ALIAS column over stored ones (no aggregate of its own)."""

    name: str
    type: str
    function: str
    expr: str
    alias: str = ""
    read: bool = True
    """False for a stored column readers do not use by name (what an alias is computed from)."""


def _is(stage: Stage) -> str:
    return f"Stage = {literal(stage.value)}"


_OUTCOME: Final = _is(Stage.OUTCOME)
_NOT_OUTCOME: Final = f"Stage != {literal(Stage.OUTCOME.value)}"
_EPOCH: Final = "toDateTime64(0, 9)"
_DECIDED: Final = (
    f"(DecisionValue != '' OR FallbackReason != '' OR DecisionSource = {literal(DecisionSource.FALLBACK.value)})"
)
"""A `decide` span records a decision: a value, or a fallback (its source or its reason)."""
_AT: Final = "greatest(Timestamp, fromUnixTimestamp64Nano(toInt64(1)))"
"""A record's time for "the latest": a span stamped at or before the epoch counts as 1 ns after it."""


def _in_tuple(type_: str) -> str:
    """A column's type as an element of a stored tuple (which keeps no LowCardinality)."""
    return type_.removeprefix("LowCardinality(").removesuffix(")") if type_.startswith("LowCardinality(") else type_


def workflow_columns() -> list[WorkflowColumn]:
    by_name = {c.name: c for c in STAGE_COLUMNS}
    live = f"{_is(Stage.DECIDE)} AND ifNull(Shadow, 0) = 0"
    shadow = f"{_is(Stage.DECIDE)} AND Shadow = 1"
    out = [
        WorkflowColumn("StartTime", "DateTime64(9)", "min", "min(Timestamp)"),
        WorkflowColumn("EndTime", "DateTime64(9)", "max", f"maxIf(EndTs, {_NOT_OUTCOME})"),
        WorkflowColumn("Spans", "UInt64", "sum", f"countIf({_NOT_OUTCOME})"),
        WorkflowColumn("ErrorSpans", "UInt64", "sum", f"countIf(IsError AND {_NOT_OUTCOME})"),
        WorkflowColumn("ServiceName", "LowCardinality(String)", "max", "max(ServiceName)"),
    ]
    for name in ("Site", "Department", "ServiceLine", "WorkflowId"):
        c = by_name[name]
        out.append(WorkflowColumn(name, c.type, "max", f"max({name})"))
    for c in COHORT_COLUMNS:
        out.append(WorkflowColumn(c.name, c.type, "max", f"max({c.name})"))
    for stage in _STAGE_DURATIONS:
        # a shadow prediction is a zero-length `decide` span beside the live one: not a stage
        which = live if stage is Stage.DECIDE else _is(stage)
        out.append(WorkflowColumn(f"{stage.value.capitalize()}Ms", "Float64", "sum", f"sumIf(DurationMs, {which})"))
    # the decision of record is the latest live `decide` span that recorded one and did not fail,
    # whole, and the shadow prediction the latest shadow span's (migration 21); `…Max` holds the
    # largest of each field, what rows stored before it read, and workflows whose decisions all failed
    decision = ("DecisionSource", "DecisionValue", "DecisionConfidence", "DecisionRisk", "ModelName", "ModelVersion",
                "FallbackReason")  # fmt: skip
    for name in decision:
        out.append(WorkflowColumn(f"{name}Max", by_name[name].type, "max", f"maxIf({name}, {live})", read=False))
    for name in ("RolloutMode", "RolloutCohort", "FlagKey", "FlagVariant"):  # the arm a workflow was in
        out.append(WorkflowColumn(name, by_name[name].type, "max", f"maxIf({name}, {live})"))
    shadows = (("ShadowValue", "DecisionValue"), ("ShadowModelVersion", "ModelVersion"))
    for name, field in shadows:
        out.append(WorkflowColumn(f"{name}Max", "String", "max", f"maxIf({field}, {shadow})", read=False))
    for latest, names, fields, recorded in (
        ("DecisionLatest", decision, decision, f"{live} AND NOT IsError AND {_DECIDED}"),
        (
            "ShadowLatest",
            [n for n, _ in shadows],
            [f for _, f in shadows],
            f"{shadow} AND NOT IsError AND DecisionValue != ''",
        ),
    ):
        # a tuple drops LowCardinality
        types = ", ".join(_in_tuple(by_name[f].type) for f in fields)
        newest = f"maxIf(({_AT}, {', '.join(fields)}), {recorded})"
        out.append(WorkflowColumn(latest, f"Tuple(DateTime64(9), {types})", "max", newest, read=False))
        for i, (name, field) in enumerate(zip(names, fields, strict=True), start=2):
            alias = f"if({latest}.1 > {_EPOCH}, {latest}.{i}, {name}Max)"
            out.append(WorkflowColumn(name, by_name[field].type, "", "", alias=alias))
    for name in (
        "ActionType", "ActionStatus", "ActionAutomated", "SlotsOffered", "SlotFilled", "LeadTimeDays", "OutcomeStatus",
    ):  # fmt: skip
        c = by_name[name]
        out.append(WorkflowColumn(name, c.type, "max", f"maxIf({name}, {_NOT_OUTCOME})"))
    # the review of record is the latest `review` span with an action, and the final value the
    # latest recorded on any span but an outcome (migration 18); `…Max` holds the largest value of
    # any span, what rows stored before it read, and spans other than `review` for the review's
    review = ("ReviewAction", "ReviewActorRole", "ReviewReason", "ReviewFinalValue")
    for name in review:
        c = by_name[name]
        out.append(WorkflowColumn(f"{name}Max", c.type, "max", f"maxIf({name}, {_NOT_OUTCOME})", read=False))
    whole = review[:3]
    latest = f"Tuple(DateTime64(9), {', '.join('String' for _ in whole)})"  # a tuple drops LowCardinality
    newest = f"maxIf(({_AT}, {', '.join(whole)}), {_is(Stage.REVIEW)} AND ReviewAction != '')"
    out.append(WorkflowColumn("ReviewLatest", latest, "max", newest, read=False))
    final = f"maxIf(({_AT}, ReviewFinalValue), {_NOT_OUTCOME} AND ReviewFinalValue != '')"
    out.append(WorkflowColumn("ReviewFinalValueLatest", "Tuple(DateTime64(9), String)", "max", final, read=False))
    for i, name in enumerate(whole, start=2):
        alias = f"if(ReviewLatest.1 > {_EPOCH}, ReviewLatest.{i}, {name}Max)"
        out.append(WorkflowColumn(name, by_name[name].type, "", "", alias=alias))
    alias = f"if(ReviewFinalValueLatest.1 > {_EPOCH}, ReviewFinalValueLatest.2, ReviewFinalValueMax)"
    out.append(WorkflowColumn("ReviewFinalValue", by_name["ReviewFinalValue"].type, "", "", alias=alias))
    out.append(
        WorkflowColumn("ReviewLatencyMs", "Nullable(Float64)", "max",
             f"maxIf(toNullable(coalesce(ReviewLatencyMs, DurationMs)), {_is(Stage.REVIEW)})")
    )  # fmt: skip
    # each field of the ground truth is the latest `outcome` span's that carries it (migration 18);
    # `…Max`, no longer written, holds what rows stored before it read (their largest value)
    for name in ("OutcomeLabel", "AdverseEvent", "EscalationNeeded"):
        c = by_name[name]
        if c.type == "String":
            value, present, alias = name, f"{name} != ''", f"if({name}Latest.2 != '', {name}Latest.2, {name}Max)"
        else:
            value, present = f"assumeNotNull({name})", f"{name} IS NOT NULL"
            alias = f"if({name}Latest.1 > {_EPOCH}, toNullable({name}Latest.2), {name}Max)"
        stored = c.type.removeprefix("Nullable(").removesuffix(")") if c.type.startswith("Nullable(") else c.type
        out.append(WorkflowColumn(f"{name}Max", c.type, "max", "", read=False))
        out.append(
            WorkflowColumn(f"{name}Latest", f"Tuple(DateTime64(9), {stored})", "max",
                           f"maxIf(({_AT}, {value}), {_OUTCOME} AND {present})", read=False)
        )  # fmt: skip
        out.append(WorkflowColumn(name, c.type, "", "", alias=alias))
    out.append(
        WorkflowColumn("TruthTime", "Nullable(DateTime64(9))", "max", f"maxIf(toNullable(Timestamp), {_OUTCOME})")
    )
    return out


WORKFLOW_COLUMNS: Final = tuple(a.name for a in workflow_columns() if a.read)
"""The names readers use (stored and ALIAS columns), in order."""

ALIAS_COLUMNS: Final = tuple(a.name for a in workflow_columns() if a.alias)
"""The names readers use that are ALIAS columns: `SELECT *` leaves them out; name them."""


def stored_column(name: str) -> str:
    """The stored column a row written directly into the workflows view (a test's, a backfill's)
    sets for the readers' column `name`: for an ALIAS column, its `…Max`, what it reads when no
    later record carries a time (as rows stored before migration 18 do)."""
    return f"{name}Max" if name in ALIAS_COLUMNS else name
