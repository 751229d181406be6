-- clinotel schema migration 13: tighter codecs for otel_traces' start times and instrumentation scope: Timestamp by ZSTD(6) alone (rows follow the trace, not the clock, so deltas between neighbours are as random as the times themselves: 5.49 -> 4.79 bytes per span on the demo mix) and ScopeName, ScopeVersion by ZSTD(3) (the same few strings on every row: 0.25 -> 0.01 bytes each)
-- Frozen: never edit an applied migration; add a new one.

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `Timestamp` DateTime64(9) CODEC(ZSTD(6));

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `ScopeName` String CODEC(ZSTD(3));

ALTER TABLE {{local:otel_traces}}{{on_cluster}} MODIFY COLUMN `ScopeVersion` String CODEC(ZSTD(3));
