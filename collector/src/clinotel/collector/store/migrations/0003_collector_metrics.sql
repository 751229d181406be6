-- clinotel schema migration 3: collector self-telemetry: clinotel_collector_metrics
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinotel_collector_metrics}}{{on_cluster}}
(
    `Timestamp` DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    `TenantId` LowCardinality(String),
    `Instance` LowCardinality(String),
    `Metric` LowCardinality(String),
    `Labels` Map(LowCardinality(String), String),
    `Kind` Enum8('counter' = 1, 'gauge' = 2),
    `Value` Float64 CODEC(ZSTD(1))
)
ENGINE = {{engine:MergeTree:clinotel_collector_metrics}}
PARTITION BY toDate(Timestamp)
ORDER BY (TenantId, Metric, Timestamp){{ttl:toDateTime(Timestamp)}}
COMMENT 'Collector self-telemetry: counters as increases per row, gauges as they stood';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_collector_metrics}}{{on_cluster}} AS {{local:clinotel_collector_metrics}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_collector_metrics_local', rand());
