-- clinotel schema migration 17: the rollups keep the values their quantiles are read from instead of quantile's sample state (AggregateFunction(quantile(level), Float64)), read with quantileOrNullArray(level): each quantile indicator's in clinical_workflow_hours and clinical_cohort_hours (`<name>_state` -> `<name>_values`), the scheduling lead time's (`lead_time_days_state` -> `lead_time_days_values`) and the data-quality centiles' in clinical_signal_hours (`Sample` -> `Measured`), all Array(Float64). The figure is quantile()'s over the same values (its sample of up to 8,192 values: exact up to that many, bounded in memory past it), and reading values costs a third of merging samples (a fairness table's 66,790 rows: 33 ms merging samples, 10 ms reading values; the data-quality table's 29,906 rows: 52 ms merging). The rows stored before have empty values (their quantiles read as NULL) until the collector's next whole refresh, which it runs at its start; on a cluster, run `clinotel schema refresh-rollups --cluster NAME` on every shard after migrating. Dashboards generated before read the dropped columns: regenerate them.
-- Frozen: never edit an applied migration; add a new one.

ALTER TABLE {{local:clinical_workflow_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `end_to_end_p95_ms_values` Array(Float64) AFTER `end_to_end_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `queue_wait_p95_ms_values` Array(Float64) AFTER `queue_wait_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `decision_latency_p95_ms_values` Array(Float64) AFTER `decision_latency_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `review_latency_p95_ms_values` Array(Float64) AFTER `review_latency_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `lead_time_days_values` Array(Float64) AFTER `LastStart`,
    DROP COLUMN IF EXISTS `end_to_end_p95_ms_state`,
    DROP COLUMN IF EXISTS `queue_wait_p95_ms_state`,
    DROP COLUMN IF EXISTS `decision_latency_p95_ms_state`,
    DROP COLUMN IF EXISTS `review_latency_p95_ms_state`,
    DROP COLUMN IF EXISTS `lead_time_days_state`;

-- cluster only
ALTER TABLE {{name:clinical_workflow_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `end_to_end_p95_ms_values` Array(Float64) AFTER `end_to_end_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `queue_wait_p95_ms_values` Array(Float64) AFTER `queue_wait_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `decision_latency_p95_ms_values` Array(Float64) AFTER `decision_latency_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `review_latency_p95_ms_values` Array(Float64) AFTER `review_latency_p95_ms_rows`,
    ADD COLUMN IF NOT EXISTS `lead_time_days_values` Array(Float64) AFTER `LastStart`,
    DROP COLUMN IF EXISTS `end_to_end_p95_ms_state`,
    DROP COLUMN IF EXISTS `queue_wait_p95_ms_state`,
    DROP COLUMN IF EXISTS `decision_latency_p95_ms_state`,
    DROP COLUMN IF EXISTS `review_latency_p95_ms_state`,
    DROP COLUMN IF EXISTS `lead_time_days_state`;

ALTER TABLE {{local:clinical_workflow_hours}}{{on_cluster}}
    MODIFY COMMENT 'Workflows per UTC hour of their start and dimensions; per indicator its rows, hits or values (a quantile''s, read with quantileOrNullArray(level)); the human effort and rework of the workflows with a rollout mode; the latest start and the scheduling lead times (lead_time_days_values). Recomputed from clinical_workflows by the collector, one tenant-month at a time: read with sum() and quantileOrNullArray()';

-- cluster only
ALTER TABLE {{name:clinical_workflow_hours}}{{on_cluster}}
    MODIFY COMMENT 'Workflows per UTC hour of their start and dimensions; per indicator its rows, hits or values (a quantile''s, read with quantileOrNullArray(level)); the human effort and rework of the workflows with a rollout mode; the latest start and the scheduling lead times (lead_time_days_values). Recomputed from clinical_workflows by the collector, one tenant-month at a time: read with sum() and quantileOrNullArray()';

ALTER TABLE {{local:clinical_cohort_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `queue_wait_p95_ms_values` Array(Float64) AFTER `queue_wait_p95_ms_rows`,
    DROP COLUMN IF EXISTS `queue_wait_p95_ms_state`;

-- cluster only
ALTER TABLE {{name:clinical_cohort_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `queue_wait_p95_ms_values` Array(Float64) AFTER `queue_wait_p95_ms_rows`,
    DROP COLUMN IF EXISTS `queue_wait_p95_ms_state`;

ALTER TABLE {{local:clinical_cohort_hours}}{{on_cluster}}
    MODIFY COMMENT 'Workflows per UTC hour of their start, per cohort dimension and group: the rows, hits or values (a quantile''s) of the fairness indicators. Recomputed from clinical_workflows by the collector, one tenant-month at a time: read with sum() and quantileOrNullArray()';

-- cluster only
ALTER TABLE {{name:clinical_cohort_hours}}{{on_cluster}}
    MODIFY COMMENT 'Workflows per UTC hour of their start, per cohort dimension and group: the rows, hits or values (a quantile''s) of the fairness indicators. Recomputed from clinical_workflows by the collector, one tenant-month at a time: read with sum() and quantileOrNullArray()';

ALTER TABLE {{local:clinical_signal_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `Measured` Array(Float64) AFTER `Total`,
    DROP COLUMN IF EXISTS `Sample`;

-- cluster only
ALTER TABLE {{name:clinical_signal_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `Measured` Array(Float64) AFTER `Total`,
    DROP COLUMN IF EXISTS `Sample`;
