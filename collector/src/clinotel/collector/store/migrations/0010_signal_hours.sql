-- clinotel schema migration 10: hourly signal rollups: clinical_signal_hours, the spans' decision inputs, data quality, rework and feedback per hour
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinical_signal_hours}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Site` LowCardinality(String),
    `Department` LowCardinality(String),
    `Shadow` UInt8,
    `Signal` LowCardinality(String),
    `Bin` LowCardinality(String),
    `Detail` LowCardinality(String),
    `Rows` Int64,
    `Hits` Int64,
    `Total` Float64
)
ENGINE = {{engine:MergeTree:clinical_signal_hours}}
PARTITION BY (TenantId, toYYYYMMDD(Hour))
ORDER BY (TenantId, Signal, WorkflowKind, Hour, Site, Department, Shadow, Bin, Detail){{ttl:Hour}}
COMMENT 'Spans per UTC hour of their time: per signal (a drift feature, a data-quality check, rework, feedback) and bin, the rows, the hits of a check and a total (rework minutes). Recomputed from otel_traces by the collector, one tenant-day at a time: read with sum()';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinical_signal_hours}}{{on_cluster}} AS {{local:clinical_signal_hours}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinical_signal_hours_local', rand());
