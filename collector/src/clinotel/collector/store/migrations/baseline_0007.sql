-- clinotel schema baseline: version 7
-- Frozen: what migrations 1 to 7 create in an empty database, in one pass (a new store
-- starts here; a store at an earlier version runs the migrations). Never edit; add migrations.

CREATE DATABASE IF NOT EXISTS {{db}}{{on_cluster}};

CREATE TABLE IF NOT EXISTS {{local:otel_traces}}{{on_cluster}}
(
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TraceId` String CODEC(ZSTD(1)),
    `SpanId` String CODEC(ZSTD(1)),
    `ParentSpanId` String CODEC(ZSTD(1)),
    `TraceState` String CODEC(ZSTD(1)),
    `SpanName` LowCardinality(String) CODEC(ZSTD(1)),
    `SpanKind` LowCardinality(String) CODEC(ZSTD(1)),
    `ServiceName` LowCardinality(String) CODEC(ZSTD(1)),
    `ResourceAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    `ScopeName` String CODEC(ZSTD(1)),
    `ScopeVersion` String CODEC(ZSTD(1)),
    `SpanAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    `Duration` UInt64 CODEC(ZSTD(1)),
    `StatusCode` LowCardinality(String) CODEC(ZSTD(1)),
    `StatusMessage` String CODEC(ZSTD(1)),
    `Events` Nested(`Timestamp` DateTime64(9), `Name` LowCardinality(String), `Attributes` Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    `Links` Nested(`TraceId` String, `SpanId` String, `TraceState` String, `Attributes` Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    `TenantId` LowCardinality(String) MATERIALIZED ResourceAttributes['clinical.tenant.id'],
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
)
ENGINE = {{engine:MergeTree:otel_traces}}
PARTITION BY (TenantId, toDate(Timestamp))
ORDER BY (TenantId, ServiceName, toStartOfHour(Timestamp), TraceId){{ttl:toDateTime(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {{local:otel_traces_trace_id_ts}}{{on_cluster}}
(
    `TraceId` String CODEC(ZSTD(1)),
    `Start` DateTime CODEC(Delta, ZSTD(1)),
    `End` DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine:MergeTree:otel_traces_trace_id_ts}}
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start){{ttl:toDateTime(Start)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:otel_traces_trace_id_ts_mv}}{{on_cluster}}
TO {{local:otel_traces_trace_id_ts}}
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {{local:otel_traces}}
WHERE TraceId != ''
GROUP BY TraceId;

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:otel_traces}}{{on_cluster}} AS {{local:otel_traces}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'otel_traces_local', cityHash64(TraceId));

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:otel_traces_trace_id_ts}}{{on_cluster}} AS {{local:otel_traces_trace_id_ts}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'otel_traces_trace_id_ts_local', cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS {{local:clinical_stage_spans}}{{on_cluster}}
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
    `WorkflowKind` String,
    `Stage` LowCardinality(String),
    `Site` String,
    `Department` String,
    `ServiceLine` String,
    `WorkflowId` String,
    `IngestSource` LowCardinality(String),
    `QueueName` String,
    `QueueDepth` Nullable(Int64),
    `DecisionSource` LowCardinality(String),
    `DecisionValue` String,
    `DecisionConfidence` Nullable(Float64),
    `DecisionRisk` LowCardinality(String),
    `ModelName` String,
    `ModelVersion` String,
    `FallbackReason` LowCardinality(String),
    `Shadow` Nullable(UInt8),
    `RolloutMode` LowCardinality(String),
    `RolloutCohort` LowCardinality(String),
    `FlagKey` String,
    `FlagVariant` String,
    `ReviewAction` LowCardinality(String),
    `ReviewActorRole` LowCardinality(String),
    `ReviewReason` LowCardinality(String),
    `ReviewFinalValue` String,
    `ReviewLatencyMs` Nullable(Float64),
    `ActionType` String,
    `ActionTarget` String,
    `ActionStatus` LowCardinality(String),
    `ActionAutomated` Nullable(UInt8),
    `SlotsOffered` Nullable(Int64),
    `SlotFilled` Nullable(UInt8),
    `LeadTimeDays` Nullable(Float64),
    `OutcomeStatus` LowCardinality(String),
    `OutcomeLabel` String,
    `AdverseEvent` Nullable(UInt8),
    `EscalationNeeded` Nullable(UInt8),
    `AgeBand` LowCardinality(String),
    `Sex` LowCardinality(String),
    `Language` LowCardinality(String),
    `PayerClass` LowCardinality(String),
    `RaceEthnicity` LowCardinality(String),
    `Acuity` LowCardinality(String)
)
ENGINE = {{engine:MergeTree:clinical_stage_spans}}
PARTITION BY (TenantId, toDate(Timestamp))
ORDER BY (TenantId, WorkflowKind, Stage, Timestamp){{ttl:toDateTime(Timestamp)}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:clinical_stage_spans_mv}}{{on_cluster}}
TO {{local:clinical_stage_spans}}
AS SELECT
    ResourceAttributes['clinical.tenant.id'] AS TenantId,
    Timestamp,
    TraceId,
    SpanId,
    ParentSpanId,
    Links.TraceId[1] AS LinkedTraceId,
    ServiceName,
    Duration / 1e6 AS DurationMs,
    toUInt8(StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS IsError,
    SpanAttributes['clinical.workflow.kind'] AS `WorkflowKind`,
    SpanAttributes['clinical.workflow.stage'] AS `Stage`,
    SpanAttributes['clinical.site'] AS `Site`,
    SpanAttributes['clinical.department'] AS `Department`,
    SpanAttributes['clinical.service_line'] AS `ServiceLine`,
    SpanAttributes['clinical.workflow.id'] AS `WorkflowId`,
    SpanAttributes['clinical.ingest.source'] AS `IngestSource`,
    SpanAttributes['clinical.queue.name'] AS `QueueName`,
    toInt64OrNull(SpanAttributes['clinical.queue.depth']) AS `QueueDepth`,
    SpanAttributes['clinical.decision.source'] AS `DecisionSource`,
    SpanAttributes['clinical.decision.value'] AS `DecisionValue`,
    toFloat64OrNull(SpanAttributes['clinical.decision.confidence']) AS `DecisionConfidence`,
    SpanAttributes['clinical.decision.risk'] AS `DecisionRisk`,
    SpanAttributes['clinical.decision.model.name'] AS `ModelName`,
    SpanAttributes['clinical.decision.model.version'] AS `ModelVersion`,
    SpanAttributes['clinical.decision.fallback_reason'] AS `FallbackReason`,
    if(mapContains(SpanAttributes, 'clinical.decision.shadow'), toUInt8(SpanAttributes['clinical.decision.shadow'] = 'true'), NULL) AS `Shadow`,
    SpanAttributes['clinical.rollout.mode'] AS `RolloutMode`,
    SpanAttributes['clinical.rollout.cohort'] AS `RolloutCohort`,
    SpanAttributes['feature_flag.key'] AS `FlagKey`,
    SpanAttributes['feature_flag.result.variant'] AS `FlagVariant`,
    SpanAttributes['clinical.review.action'] AS `ReviewAction`,
    SpanAttributes['clinical.review.actor_role'] AS `ReviewActorRole`,
    SpanAttributes['clinical.review.reason'] AS `ReviewReason`,
    SpanAttributes['clinical.review.final_value'] AS `ReviewFinalValue`,
    toFloat64OrNull(SpanAttributes['clinical.review.latency_ms']) AS `ReviewLatencyMs`,
    SpanAttributes['clinical.action.type'] AS `ActionType`,
    SpanAttributes['clinical.action.target'] AS `ActionTarget`,
    SpanAttributes['clinical.action.status'] AS `ActionStatus`,
    if(mapContains(SpanAttributes, 'clinical.action.automated'), toUInt8(SpanAttributes['clinical.action.automated'] = 'true'), NULL) AS `ActionAutomated`,
    toInt64OrNull(SpanAttributes['clinical.scheduling.slots_offered']) AS `SlotsOffered`,
    if(mapContains(SpanAttributes, 'clinical.scheduling.slot_filled'), toUInt8(SpanAttributes['clinical.scheduling.slot_filled'] = 'true'), NULL) AS `SlotFilled`,
    toFloat64OrNull(SpanAttributes['clinical.scheduling.lead_time_days']) AS `LeadTimeDays`,
    SpanAttributes['clinical.outcome.status'] AS `OutcomeStatus`,
    SpanAttributes['clinical.outcome.label'] AS `OutcomeLabel`,
    if(mapContains(SpanAttributes, 'clinical.outcome.adverse_event'), toUInt8(SpanAttributes['clinical.outcome.adverse_event'] = 'true'), NULL) AS `AdverseEvent`,
    if(mapContains(SpanAttributes, 'clinical.outcome.escalation_needed'), toUInt8(SpanAttributes['clinical.outcome.escalation_needed'] = 'true'), NULL) AS `EscalationNeeded`,
    SpanAttributes['clinical.cohort.age_band'] AS `AgeBand`,
    SpanAttributes['clinical.cohort.sex'] AS `Sex`,
    SpanAttributes['clinical.cohort.language'] AS `Language`,
    SpanAttributes['clinical.cohort.payer_class'] AS `PayerClass`,
    SpanAttributes['clinical.cohort.race_ethnicity'] AS `RaceEthnicity`,
    SpanAttributes['clinical.cohort.acuity'] AS `Acuity`
FROM {{local:otel_traces}}
WHERE mapContains(SpanAttributes, 'clinical.workflow.kind');

CREATE TABLE IF NOT EXISTS {{local:clinical_workflows}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `TraceId` String,
    `StartTime` SimpleAggregateFunction(min, DateTime64(9)),
    `EndTime` SimpleAggregateFunction(max, DateTime64(9)),
    `Spans` SimpleAggregateFunction(sum, UInt64),
    `ErrorSpans` SimpleAggregateFunction(sum, UInt64),
    `ServiceName` SimpleAggregateFunction(max, LowCardinality(String)),
    `Site` SimpleAggregateFunction(max, String),
    `Department` SimpleAggregateFunction(max, String),
    `ServiceLine` SimpleAggregateFunction(max, String),
    `WorkflowId` SimpleAggregateFunction(max, String),
    `AgeBand` SimpleAggregateFunction(max, LowCardinality(String)),
    `Sex` SimpleAggregateFunction(max, LowCardinality(String)),
    `Language` SimpleAggregateFunction(max, LowCardinality(String)),
    `PayerClass` SimpleAggregateFunction(max, LowCardinality(String)),
    `RaceEthnicity` SimpleAggregateFunction(max, LowCardinality(String)),
    `Acuity` SimpleAggregateFunction(max, LowCardinality(String)),
    `IngestMs` SimpleAggregateFunction(sum, Float64),
    `QueueMs` SimpleAggregateFunction(sum, Float64),
    `DecideMs` SimpleAggregateFunction(sum, Float64),
    `ReviewMs` SimpleAggregateFunction(sum, Float64),
    `ActMs` SimpleAggregateFunction(sum, Float64),
    `DecisionSource` SimpleAggregateFunction(max, LowCardinality(String)),
    `DecisionValue` SimpleAggregateFunction(max, String),
    `DecisionConfidence` SimpleAggregateFunction(max, Nullable(Float64)),
    `DecisionRisk` SimpleAggregateFunction(max, LowCardinality(String)),
    `ModelName` SimpleAggregateFunction(max, String),
    `ModelVersion` SimpleAggregateFunction(max, String),
    `FallbackReason` SimpleAggregateFunction(max, LowCardinality(String)),
    `RolloutMode` SimpleAggregateFunction(max, LowCardinality(String)),
    `RolloutCohort` SimpleAggregateFunction(max, LowCardinality(String)),
    `FlagKey` SimpleAggregateFunction(max, String),
    `FlagVariant` SimpleAggregateFunction(max, String),
    `ShadowValue` SimpleAggregateFunction(max, String),
    `ShadowModelVersion` SimpleAggregateFunction(max, String),
    `ReviewAction` SimpleAggregateFunction(max, LowCardinality(String)),
    `ReviewActorRole` SimpleAggregateFunction(max, LowCardinality(String)),
    `ReviewReason` SimpleAggregateFunction(max, LowCardinality(String)),
    `ReviewFinalValue` SimpleAggregateFunction(max, String),
    `ActionType` SimpleAggregateFunction(max, String),
    `ActionStatus` SimpleAggregateFunction(max, LowCardinality(String)),
    `ActionAutomated` SimpleAggregateFunction(max, Nullable(UInt8)),
    `SlotsOffered` SimpleAggregateFunction(max, Nullable(Int64)),
    `SlotFilled` SimpleAggregateFunction(max, Nullable(UInt8)),
    `LeadTimeDays` SimpleAggregateFunction(max, Nullable(Float64)),
    `OutcomeStatus` SimpleAggregateFunction(max, LowCardinality(String)),
    `ReviewLatencyMs` SimpleAggregateFunction(max, Nullable(Float64)),
    `OutcomeLabel` SimpleAggregateFunction(max, String),
    `AdverseEvent` SimpleAggregateFunction(max, Nullable(UInt8)),
    `EscalationNeeded` SimpleAggregateFunction(max, Nullable(UInt8)),
    `TruthTime` SimpleAggregateFunction(max, Nullable(DateTime64(9)))
)
ENGINE = {{engine:AggregatingMergeTree:clinical_workflows}}
PARTITION BY (TenantId, toYYYYMM(StartTime))
ORDER BY (TenantId, WorkflowKind, TraceId){{ttl:toDateTime(StartTime)}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:clinical_workflows_mv}}{{on_cluster}}
TO {{local:clinical_workflows}}
AS SELECT
    TenantId,
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
    sumIf(DurationMs, Stage = 'decide') AS `DecideMs`,
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
    maxIf(coalesce(ReviewLatencyMs, DurationMs), Stage = 'review') AS `ReviewLatencyMs`,
    maxIf(OutcomeLabel, Stage = 'outcome') AS `OutcomeLabel`,
    maxIf(AdverseEvent, Stage = 'outcome') AS `AdverseEvent`,
    maxIf(EscalationNeeded, Stage = 'outcome') AS `EscalationNeeded`,
    maxIf(toNullable(Timestamp), Stage = 'outcome') AS `TruthTime`
FROM
(
    SELECT
        *,
        Timestamp + toIntervalNanosecond(toInt64(DurationMs * 1e6)) AS EndTs,
        if(Stage = 'outcome' AND LinkedTraceId != '', LinkedTraceId, TraceId) AS WorkflowTrace
    FROM {{local:clinical_stage_spans}}
)
GROUP BY TenantId, WorkflowKind, WorkflowTrace
SETTINGS prefer_column_name_to_alias = 1;

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_stage_spans}}{{on_cluster}} AS {{local:clinical_stage_spans}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_stage_spans_local', cityHash64(TraceId));

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_workflows}}{{on_cluster}} AS {{local:clinical_workflows}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_workflows_local', cityHash64(TraceId));

CREATE TABLE IF NOT EXISTS {{local:clinotel_collector_metrics}}{{on_cluster}}
(
    `Timestamp` DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    `TenantId` LowCardinality(String),
    `Instance` LowCardinality(String),
    `Metric` LowCardinality(String),
    `Labels` Map(LowCardinality(String), String),
    `Kind` Enum8('counter' = 1, 'gauge' = 2),
    `Value` Float64 CODEC(ZSTD(1))
)
ENGINE = {{engine:MergeTree:clinotel_collector_metrics}}
PARTITION BY (TenantId, toDate(Timestamp))
ORDER BY (TenantId, Metric, Timestamp){{ttl:toDateTime(Timestamp)}}
COMMENT 'Collector self-telemetry: counters as increases per row, gauges as they stood';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_collector_metrics}}{{on_cluster}} AS {{local:clinotel_collector_metrics}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_collector_metrics_local', rand());

CREATE TABLE IF NOT EXISTS {{local:clinotel_alert_events}}{{on_cluster}}
(
    `Timestamp` DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    `TenantId` LowCardinality(String),
    `Rule` LowCardinality(String),
    `Labels` Map(LowCardinality(String), String),
    `Event` LowCardinality(String),
    `Severity` LowCardinality(String),
    `Value` Nullable(Float64),
    `Sample` UInt64,
    `Threshold` Nullable(Float64),
    `Receiver` LowCardinality(String),
    `Attempt` UInt16,
    `Detail` String
)
ENGINE = {{engine:MergeTree:clinotel_alert_events}}
PARTITION BY (TenantId, toYYYYMM(Timestamp))
ORDER BY (TenantId, Rule, Timestamp)
COMMENT 'Alert audit trail: every state transition and every notification attempt';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_alert_events}}{{on_cluster}} AS {{local:clinotel_alert_events}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_alert_events_local', rand());

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `ResourceAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(9));

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `SpanAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(6));

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `Duration` UInt64 CODEC(T64, ZSTD(1));

CREATE TABLE IF NOT EXISTS {{local:clinotel_sdk_telemetry}}{{on_cluster}}
(
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TenantId` LowCardinality(String),
    `ServiceName` LowCardinality(String),
    `ServiceInstance` LowCardinality(String),
    `Unregistered` UInt64,
    `Invalid` UInt64,
    `Phi` UInt64,
    `Redacted` UInt64,
    `InternalErrors` UInt64
)
ENGINE = {{engine:MergeTree:clinotel_sdk_telemetry}}
PARTITION BY (TenantId, toDate(Timestamp))
ORDER BY (TenantId, ServiceName, Timestamp){{ttl:toDateTime(Timestamp)}}
COMMENT 'What each service''s clinotel gate dropped or redacted, per export batch';

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:clinotel_sdk_telemetry_mv}}{{on_cluster}}
TO {{local:clinotel_sdk_telemetry}}
AS SELECT
    Timestamp,
    TenantId,
    ServiceName,
    ResourceAttributes['service.instance.id'] AS ServiceInstance,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.unregistered']) AS `Unregistered`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.invalid']) AS `Invalid`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.phi']) AS `Phi`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.redacted']) AS `Redacted`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.internal_errors']) AS `InternalErrors`
FROM {{local:otel_traces}}
WHERE SpanName = 'clinotel.telemetry';

-- single node only
INSERT INTO {{local:clinotel_sdk_telemetry}}
SELECT
    Timestamp,
    TenantId,
    ServiceName,
    ResourceAttributes['service.instance.id'] AS ServiceInstance,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.unregistered']) AS `Unregistered`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.invalid']) AS `Invalid`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.phi']) AS `Phi`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.redacted']) AS `Redacted`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.internal_errors']) AS `InternalErrors`
FROM {{local:otel_traces}}
WHERE SpanName = 'clinotel.telemetry';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_sdk_telemetry}}{{on_cluster}} AS {{local:clinotel_sdk_telemetry}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_sdk_telemetry_local', rand());
