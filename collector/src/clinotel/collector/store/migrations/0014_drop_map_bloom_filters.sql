-- clinotel schema migration 14: otel_traces without the contrib schema's four bloom filters on the attribute maps' keys and values. Any skip index over a map expression made the engine hold 120-140 MB more at an insert's peak (an 8 MiB segment into otel_traces: 231 MB with them, 89 MB without, 205-219 MB with any one of them), and they took 13 % of the collector's insert CPU, 14 % of a merge of otel_traces and 0.6 bytes a span. What they bought: a search of the raw spans by an attribute's value or key skipped granules (on 10M spans, a workflow id found nowhere: 76 ms with them, 903 ms without; a key no span has: 21 and 485 ms). The clinical views answer the common lookups by their own columns (clinical_workflows.WorkflowId, then the trace by TraceId). The TraceId bloom filter and the Duration minmax index stay.
-- Frozen: never edit an applied migration; add a new one.

ALTER TABLE {{local:otel_traces}}{{on_cluster}} DROP INDEX IF EXISTS idx_res_attr_key;

ALTER TABLE {{local:otel_traces}}{{on_cluster}} DROP INDEX IF EXISTS idx_res_attr_value;

ALTER TABLE {{local:otel_traces}}{{on_cluster}} DROP INDEX IF EXISTS idx_span_attr_key;

ALTER TABLE {{local:otel_traces}}{{on_cluster}} DROP INDEX IF EXISTS idx_span_attr_value;
