-- clinotel schema migration 5: tighter codecs for otel_traces attribute maps and durations
-- Frozen: never edit an applied migration; add a new one.

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `ResourceAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(9));

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `SpanAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(6));

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `Duration` UInt64 CODEC(T64, ZSTD(1));
