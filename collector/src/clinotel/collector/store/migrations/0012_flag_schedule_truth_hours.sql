-- clinotel schema migration 12: the flags, the time to schedule and the late ground truth as rollups: in clinical_workflow_hours the flag evaluated (FlagKey, a dimension beside FlagVariant), the latest start of the row's workflows (LastStart) and the state of the scheduling lead time's centiles (lead_time_days_state); clinical_truth_hours, the workflows' late outcomes per hour of their arrival
-- Frozen: never edit an applied migration; add a new one.

ALTER TABLE {{local:clinical_workflow_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `FlagKey` LowCardinality(String),
    ADD COLUMN IF NOT EXISTS `LastStart` DateTime64(9),
    ADD COLUMN IF NOT EXISTS `lead_time_days_state` AggregateFunction(quantile(0.5), Float64);

-- cluster only
ALTER TABLE {{name:clinical_workflow_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `FlagKey` LowCardinality(String),
    ADD COLUMN IF NOT EXISTS `LastStart` DateTime64(9),
    ADD COLUMN IF NOT EXISTS `lead_time_days_state` AggregateFunction(quantile(0.5), Float64);

CREATE TABLE IF NOT EXISTS {{local:clinical_truth_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Joined` UInt8,
    `Outcomes` Int64
)
ENGINE = {{engine:MergeTree:clinical_truth_hours}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, WorkflowKind, Hour, Joined){{ttl:Hour}}
COMMENT 'Late ground truth per UTC hour of its arrival (the workflows view''s TruthTime): outcomes that joined a workflow (Joined 1) or are linked to a workflow never received (Joined 0). Recomputed from clinical_workflows by the collector, one tenant-month at a time: read with sum(Outcomes)';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_truth_hours}}{{on_cluster}} AS {{local:clinical_truth_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_truth_hours_local', rand());
