-- clinotel schema migration 15: clinical_stage_hours keeps each row's stage durations as a DDSketch (quantileDD, 1 % relative accuracy) instead of quantile's sample, and a projection `unfiltered` per tenant, workflow kind, stage, hour, queue and shadow mode that the stage panels read when no site, department, model or cohort is chosen. Why: quantile's sample merged over a long range drifted (on 10M spans, the ingest stage's p95 over 226 days read 584 ms; the spans' own p95 is 509 ms); a sketch merges exactly, within 1 % of the duration of that rank. And a panel over the whole range read every row's sample (72 MB at 10M spans, 160 ms); the projection holds one sketch per hour and stage (14 MB, 47 ms). The rows stored before keep their counts and an empty sketch (their centiles read as none) until the collector's next whole refresh, which it runs at its start; on a cluster, run `clinotel schema refresh-rollups --cluster NAME` on every shard after migrating.
-- Frozen: never edit an applied migration; add a new one.

-- first, so that a run interrupted after the projection was added can run again (the projection names Duration)
ALTER TABLE {{local:clinical_stage_hours}}{{on_cluster}} DROP PROJECTION IF EXISTS `unfiltered`;

ALTER TABLE {{local:clinical_stage_hours}}{{on_cluster}} DROP COLUMN IF EXISTS `Duration`;

ALTER TABLE {{local:clinical_stage_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `Duration` AggregateFunction(quantileDD(0.01, 0.95), Float64) AFTER `Spans`;

-- cluster only
ALTER TABLE {{name:clinical_stage_hours}}{{on_cluster}} DROP COLUMN IF EXISTS `Duration`;

-- cluster only
ALTER TABLE {{name:clinical_stage_hours}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `Duration` AggregateFunction(quantileDD(0.01, 0.95), Float64) AFTER `Spans`;

ALTER TABLE {{local:clinical_stage_hours}}{{on_cluster}}
    ADD PROJECTION IF NOT EXISTS `unfiltered`
    (
        SELECT TenantId, WorkflowKind, Stage, Hour, QueueName, Shadow,
            sum(Spans), quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(Duration)
        GROUP BY TenantId, WorkflowKind, Stage, Hour, QueueName, Shadow
    );

ALTER TABLE {{local:clinical_stage_hours}}{{on_cluster}}
    MODIFY COMMENT 'Stage spans per UTC hour of the span, per stage and queue (shadow predictions apart): the spans, a sketch of their duration (ms, DDSketch at 1 % relative accuracy; read with quantilesDDMerge(0.01, 0.5, 0.95, 0.99), which the projection unfiltered holds per tenant, kind, stage, hour, queue and shadow mode) and the deepest queue reported. Recomputed from clinical_stage_spans by the collector, one tenant-month at a time';

-- cluster only
ALTER TABLE {{name:clinical_stage_hours}}{{on_cluster}}
    MODIFY COMMENT 'Stage spans per UTC hour of the span, per stage and queue (shadow predictions apart): the spans, a sketch of their duration (ms, DDSketch at 1 % relative accuracy; read with quantilesDDMerge(0.01, 0.5, 0.95, 0.99), which the projection unfiltered holds per tenant, kind, stage, hour, queue and shadow mode) and the deepest queue reported. Recomputed from clinical_stage_spans by the collector, one tenant-month at a time';
