-- clinotel schema migration 4: alert audit trail: clinotel_alert_events
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinotel_alert_events}}{{on_cluster}}
(
    `Timestamp` DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    `TenantId` LowCardinality(String),
    `Rule` LowCardinality(String),
    `Labels` Map(LowCardinality(String), String),
    `Event` LowCardinality(String),
    `Severity` LowCardinality(String),
    `Value` Nullable(Float64),
    `Sample` UInt64,
    `Threshold` Nullable(Float64),
    `Receiver` LowCardinality(String),
    `Attempt` UInt16,
    `Detail` String
)
ENGINE = {{engine:MergeTree:clinotel_alert_events}}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TenantId, Rule, Timestamp)
COMMENT 'Alert audit trail: every state transition and every notification attempt';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_alert_events}}{{on_cluster}} AS {{local:clinotel_alert_events}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_alert_events_local', rand());
