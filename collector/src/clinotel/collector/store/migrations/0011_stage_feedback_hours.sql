-- clinotel schema migration 11: hourly stage, feedback and service rollups: clinical_stage_hours (the stage spans' counts, duration centile state and queue depth), clinical_feedback_hours (clinician feedback joined to the decision it judged), clinotel_service_hours (spans per service and when it was last heard), clinical_signal_hours' centile state (Sample: the data-quality panels' demographics age and lab delay), and three more dimensions of clinical_workflow_hours (review reason, fallback reason, shadow model version)
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinical_feedback_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Site` LowCardinality(String),
    `Department` LowCardinality(String),
    `Category` LowCardinality(String),
    `Severity` LowCardinality(String),
    `ModelVersion` LowCardinality(String),
    `Decision` String,
    `Joined` UInt8,
    `Reports` Int64
)
ENGINE = {{engine:MergeTree:clinical_feedback_hours}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, WorkflowKind, Hour, Site, Department, Category, Severity, ModelVersion, Decision, Joined){{ttl:Hour}}
COMMENT 'Clinician feedback reports per UTC hour of the report, category and severity, with the model version and decision of the workflow each judged (by span link, else by workflow id; empty and Joined 0 when not found). Recomputed by the collector, one tenant-month at a time: read with sum(Reports)';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_feedback_hours}}{{on_cluster}} AS {{local:clinical_feedback_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_feedback_hours_local', rand());

CREATE TABLE IF NOT EXISTS {{local:clinical_stage_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Site` LowCardinality(String),
    `Department` LowCardinality(String),
    `ModelVersion` LowCardinality(String),
    `RolloutCohort` LowCardinality(String),
    `Stage` LowCardinality(String),
    `QueueName` LowCardinality(String),
    `Shadow` UInt8,
    `Spans` Int64,
    `Duration` AggregateFunction(quantile(0.95), Float64),
    `MaxQueueDepth` Nullable(Int64)
)
ENGINE = {{engine:MergeTree:clinical_stage_hours}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, WorkflowKind, Stage, Hour, Site, Department, ModelVersion, RolloutCohort, QueueName, Shadow){{ttl:Hour}}
COMMENT 'Stage spans per UTC hour of the span, per stage and queue (shadow predictions apart): the spans, the state of their duration centiles (ms; read with quantileMerge(level)) and the deepest queue reported. Recomputed from clinical_stage_spans by the collector, one tenant-month at a time';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_stage_hours}}{{on_cluster}} AS {{local:clinical_stage_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_stage_hours_local', rand());

CREATE TABLE IF NOT EXISTS {{local:clinotel_service_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `ServiceName` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Spans` Int64,
    `LastSpan` DateTime64(9)
)
ENGINE = {{engine:MergeTree:clinotel_service_hours}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, ServiceName, Hour){{ttl:Hour}}
COMMENT 'Spans per tenant, service and UTC hour of the span, and the latest span''s time. Recomputed from otel_traces by the collector, one tenant-month at a time: read with sum(Spans) and max(LastSpan)';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_service_hours}}{{on_cluster}} AS {{local:clinotel_service_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_service_hours_local', rand());

ALTER TABLE {{local:clinical_signal_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `Sample` AggregateFunction(quantile(0.95), Float64);

-- cluster only
ALTER TABLE {{name:clinical_signal_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `Sample` AggregateFunction(quantile(0.95), Float64);

ALTER TABLE {{local:clinical_workflow_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `ReviewReason` LowCardinality(String),
    ADD COLUMN IF NOT EXISTS `FallbackReason` LowCardinality(String),
    ADD COLUMN IF NOT EXISTS `ShadowModelVersion` LowCardinality(String);

-- cluster only
ALTER TABLE {{name:clinical_workflow_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `ReviewReason` LowCardinality(String),
    ADD COLUMN IF NOT EXISTS `FallbackReason` LowCardinality(String),
    ADD COLUMN IF NOT EXISTS `ShadowModelVersion` LowCardinality(String);
