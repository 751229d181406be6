-- clinotel schema migration 19: clinotel_changes, the change events (`clinotel.change` spans) one row each with their fields as columns, recomputed from otel_traces with the rollups, one tenant-month at a time. The dashboards' change annotations read it: over otel_traces, an annotation opened every day-partition of the range (at 10M spans over 8 months, 270 parts: 210-240 ms a dashboard load, and more with retention, whatever the number of changes). The report, pages, tickets and the release gate still read otel_traces (a narrow range, fresh to the last insert). Rows appear one refresh later (every 30 s, or nine times the last refresh when that is longer; at the collector's start, all of them); on a cluster, run `clinotel schema refresh-rollups --cluster NAME` on every shard after migrating. Dashboards generated before read otel_traces: regenerate them.
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinotel_changes}}{{on_cluster}}
(
    `TenantId` LowCardinality(String),
    `Hour` DateTime('UTC'),
    `Timestamp` DateTime64(9),
    `ServiceName` LowCardinality(String),
    `Kind` LowCardinality(String),
    `Name` String,
    `Version` String,
    `Actor` LowCardinality(String),
    `Site` LowCardinality(String),
    `Department` LowCardinality(String),
    `WorkflowKind` LowCardinality(String),
    `Stage` LowCardinality(String),
    `Result` LowCardinality(String)
)
ENGINE = {{engine:MergeTree:clinotel_changes}}
PARTITION BY (TenantId, toYYYYMM(Hour))
ORDER BY (TenantId, Hour, Timestamp){{ttl:Hour}}
COMMENT 'Change events (clinotel.change spans: deploys, flags, configuration, kill switches), one row each, their fields as columns, in the UTC hour of the change. Recomputed from otel_traces by the collector, one tenant-month at a time: read row by row';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_changes}}{{on_cluster}} AS {{local:clinotel_changes}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_changes_local', rand());
