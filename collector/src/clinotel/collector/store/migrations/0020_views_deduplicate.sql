-- clinotel schema migration 20: every table a segment's insert writes through its views remembers the insert's deduplication token, as otel_traces has since migration 1 (non_replicated_deduplication_window = 10000): otel_traces_trace_id_ts, clinical_stage_spans, clinical_unjoined_outcomes, clinical_workflows and clinotel_sdk_telemetry. Each view deduplicates its own block (deduplicate_blocks_in_dependent_materialized_views), and a table without a window never does: a segment inserted again (a replay after a crash between the insert and the segment's deletion, or a retry of an insert that failed after some views had written) was stored once in otel_traces and again in the tables derived from it, doubling a workflow's stage durations and span counts. Rows stored twice before this migration stay twice. On a cluster the replicated tables deduplicate by replicated_deduplication_window already: nothing changes there.
-- Frozen: never edit an applied migration; add a new one.

-- single node only
ALTER TABLE {{local:otel_traces_trace_id_ts}} MODIFY SETTING non_replicated_deduplication_window = 10000;

-- single node only
ALTER TABLE {{local:clinical_stage_spans}} MODIFY SETTING non_replicated_deduplication_window = 10000;

-- single node only
ALTER TABLE {{local:clinical_unjoined_outcomes}} MODIFY SETTING non_replicated_deduplication_window = 10000;

-- single node only
ALTER TABLE {{local:clinical_workflows}} MODIFY SETTING non_replicated_deduplication_window = 10000;

-- single node only
ALTER TABLE {{local:clinotel_sdk_telemetry}} MODIFY SETTING non_replicated_deduplication_window = 10000;
