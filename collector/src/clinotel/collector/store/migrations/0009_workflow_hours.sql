-- clinotel schema migration 9: hourly rollups: clinical_workflow_hours, the workflows per hour of their start and the dashboards' dimensions
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinical_workflow_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Site` LowCardinality(String),
    `Department` LowCardinality(String),
    `ModelVersion` LowCardinality(String),
    `RolloutCohort` LowCardinality(String),
    `RolloutMode` LowCardinality(String),
    `ReviewActorRole` LowCardinality(String),
    `FlagVariant` LowCardinality(String),
    `workflows_rows` Int64,
    `completion_rate_rows` Int64,
    `completion_rate_hits` Int64,
    `end_to_end_p95_ms_rows` Int64,
    `end_to_end_p95_ms_state` AggregateFunction(quantile(0.95), Float64),
    `queue_wait_p95_ms_rows` Int64,
    `queue_wait_p95_ms_state` AggregateFunction(quantile(0.95), Float64),
    `decision_latency_p95_ms_rows` Int64,
    `decision_latency_p95_ms_state` AggregateFunction(quantile(0.95), Float64),
    `slot_fill_rate_rows` Int64,
    `slot_fill_rate_hits` Int64,
    `under_triage_rate_rows` Int64,
    `under_triage_rate_hits` Int64,
    `final_under_triage_rate_rows` Int64,
    `final_under_triage_rate_hits` Int64,
    `high_risk_miss_rate_rows` Int64,
    `high_risk_miss_rate_hits` Int64,
    `high_priority_tpr_rows` Int64,
    `high_priority_tpr_hits` Int64,
    `escalation_miss_rate_rows` Int64,
    `escalation_miss_rate_hits` Int64,
    `override_rate_rows` Int64,
    `override_rate_hits` Int64,
    `cds_override_rate_rows` Int64,
    `cds_override_rate_hits` Int64,
    `fallback_rate_rows` Int64,
    `fallback_rate_hits` Int64,
    `model_error_rate_rows` Int64,
    `model_error_rate_hits` Int64,
    `low_confidence_share_rows` Int64,
    `low_confidence_share_hits` Int64,
    `shadow_disagreement_rate_rows` Int64,
    `shadow_disagreement_rate_hits` Int64,
    `high_priority_rate_rows` Int64,
    `high_priority_rate_hits` Int64,
    `acceptance_rate_rows` Int64,
    `acceptance_rate_hits` Int64,
    `review_latency_p95_ms_rows` Int64,
    `review_latency_p95_ms_state` AggregateFunction(quantile(0.95), Float64),
    `effort_rows` Int64,
    `effort_minutes` Float64,
    `effort_minutes_sq` Float64,
    `effort_touches` Float64,
    `reworked` Int64,
    `rework_minutes` Float64
)
ENGINE = {{engine:MergeTree:clinical_workflow_hours}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, WorkflowKind, Hour, Site, Department, ModelVersion, RolloutCohort, RolloutMode, ReviewActorRole, FlagVariant){{ttl:Hour}}
COMMENT 'Workflows per UTC hour of their start and dimensions; per indicator its rows, hits or quantile state; the human effort and rework of the workflows with a rollout mode. Recomputed from clinical_workflows by the collector, one tenant-month at a time: read with sum() and quantileMerge()';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_workflow_hours}}{{on_cluster}} AS {{local:clinical_workflow_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_workflow_hours_local', rand());
