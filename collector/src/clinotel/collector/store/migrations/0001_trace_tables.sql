-- clinotel schema migration 1: contrib exporter trace tables, tenant-first sort key
-- Frozen: never edit an applied migration; add a new one.

CREATE DATABASE IF NOT EXISTS {{db}}{{on_cluster}};

CREATE TABLE IF NOT EXISTS {{local:otel_traces}}{{on_cluster}}
(
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TraceId` String CODEC(ZSTD(1)),
    `SpanId` String CODEC(ZSTD(1)),
    `ParentSpanId` String CODEC(ZSTD(1)),
    `TraceState` String CODEC(ZSTD(1)),
    `SpanName` LowCardinality(String) CODEC(ZSTD(1)),
    `SpanKind` LowCardinality(String) CODEC(ZSTD(1)),
    `ServiceName` LowCardinality(String) CODEC(ZSTD(1)),
    `ResourceAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    `ScopeName` String CODEC(ZSTD(1)),
    `ScopeVersion` String CODEC(ZSTD(1)),
    `SpanAttributes` Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    `Duration` UInt64 CODEC(ZSTD(1)),
    `StatusCode` LowCardinality(String) CODEC(ZSTD(1)),
    `StatusMessage` String CODEC(ZSTD(1)),
    `Events` Nested(`Timestamp` DateTime64(9), `Name` LowCardinality(String), `Attributes` Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    `Links` Nested(`TraceId` String, `SpanId` String, `TraceState` String, `Attributes` Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    `TenantId` LowCardinality(String) MATERIALIZED ResourceAttributes['clinical.tenant.id'],
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
)
ENGINE = {{engine:MergeTree:otel_traces}}
PARTITION BY toDate(Timestamp)
ORDER BY (TenantId, ServiceName, toStartOfHour(Timestamp), TraceId){{ttl:toDateTime(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {{local:otel_traces_trace_id_ts}}{{on_cluster}}
(
    `TraceId` String CODEC(ZSTD(1)),
    `Start` DateTime CODEC(Delta, ZSTD(1)),
    `End` DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine:MergeTree:otel_traces_trace_id_ts}}
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start){{ttl:toDateTime(Start)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:otel_traces_trace_id_ts_mv}}{{on_cluster}}
TO {{local:otel_traces_trace_id_ts}}
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {{local:otel_traces}}
WHERE TraceId != ''
GROUP BY TraceId;

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:otel_traces}}{{on_cluster}} AS {{local:otel_traces}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'otel_traces_local', cityHash64(TraceId));

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:otel_traces_trace_id_ts}}{{on_cluster}} AS {{local:otel_traces_trace_id_ts}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'otel_traces_trace_id_ts_local', cityHash64(TraceId));
