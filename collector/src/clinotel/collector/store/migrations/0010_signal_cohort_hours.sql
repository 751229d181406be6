-- clinotel schema migration 10: hourly signal and cohort rollups: clinical_signal_hours (the spans' decision inputs, data quality, rework and feedback) and clinical_cohort_hours (the fairness indicators per cohort group)
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinical_signal_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Site` LowCardinality(String),
    `Department` LowCardinality(String),
    `Shadow` UInt8,
    `Signal` LowCardinality(String),
    `Bin` LowCardinality(String),
    `Detail` LowCardinality(String),
    `Rows` Int64,
    `Hits` Int64,
    `Total` Float64
)
ENGINE = {{engine:MergeTree:clinical_signal_hours}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, Signal, WorkflowKind, Hour, Site, Department, Shadow, Bin, Detail){{ttl:Hour}}
COMMENT 'Spans per UTC hour of their time: per signal (a drift feature, a data-quality check, rework, feedback) and bin, the rows, the hits of a check and a total (rework minutes). Recomputed from otel_traces by the collector, one tenant-month at a time: read with sum()';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_signal_hours}}{{on_cluster}} AS {{local:clinical_signal_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_signal_hours_local', rand());

CREATE TABLE IF NOT EXISTS {{local:clinical_cohort_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Site` LowCardinality(String),
    `Department` LowCardinality(String),
    `ModelVersion` LowCardinality(String),
    `RolloutCohort` LowCardinality(String),
    `Dimension` LowCardinality(String),
    `Grp` LowCardinality(String),
    `members` Int64,
    `under_triage_rate_rows` Int64,
    `under_triage_rate_hits` Int64,
    `override_rate_rows` Int64,
    `override_rate_hits` Int64,
    `high_priority_rate_rows` Int64,
    `high_priority_rate_hits` Int64,
    `queue_wait_p95_ms_rows` Int64,
    `queue_wait_p95_ms_state` AggregateFunction(quantile(0.95), Float64),
    `high_priority_tpr_rows` Int64,
    `high_priority_tpr_hits` Int64
)
ENGINE = {{engine:MergeTree:clinical_cohort_hours}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, Dimension, WorkflowKind, Hour, Site, Department, ModelVersion, RolloutCohort, Grp){{ttl:Hour}}
COMMENT 'Workflows per UTC hour of their start, per cohort dimension and group: the rows, hits or quantile state of the fairness indicators. Recomputed from clinical_workflows by the collector, one tenant-month at a time: read with sum() and quantileMerge()';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_cohort_hours}}{{on_cluster}} AS {{local:clinical_cohort_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_cohort_hours_local', rand());
