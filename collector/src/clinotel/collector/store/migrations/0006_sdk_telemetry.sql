-- clinotel schema migration 6: SDK telemetry: clinotel_sdk_telemetry from the clinotel.telemetry spans
-- Frozen: never edit an applied migration; add a new one.

CREATE TABLE IF NOT EXISTS {{local:clinotel_sdk_telemetry}}{{on_cluster}}
(
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TenantId` LowCardinality(String),
    `ServiceName` LowCardinality(String),
    `ServiceInstance` LowCardinality(String),
    `Unregistered` UInt64,
    `Invalid` UInt64,
    `Phi` UInt64,
    `Redacted` UInt64,
    `InternalErrors` UInt64
)
ENGINE = {{engine:MergeTree:clinotel_sdk_telemetry}}
PARTITION BY toDate(Timestamp)
ORDER BY (TenantId, ServiceName, Timestamp){{ttl:toDateTime(Timestamp)}}
COMMENT 'What each service''s clinotel gate dropped or redacted, per export batch';

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:clinotel_sdk_telemetry_mv}}{{on_cluster}}
TO {{local:clinotel_sdk_telemetry}}
AS SELECT
    Timestamp,
    TenantId,
    ServiceName,
    ResourceAttributes['service.instance.id'] AS ServiceInstance,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.unregistered']) AS `Unregistered`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.invalid']) AS `Invalid`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.phi']) AS `Phi`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.redacted']) AS `Redacted`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.internal_errors']) AS `InternalErrors`
FROM {{local:otel_traces}}
WHERE SpanName = 'clinotel.telemetry';

-- single node only
INSERT INTO {{local:clinotel_sdk_telemetry}}
SELECT
    Timestamp,
    TenantId,
    ServiceName,
    ResourceAttributes['service.instance.id'] AS ServiceInstance,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.unregistered']) AS `Unregistered`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.invalid']) AS `Invalid`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.dropped.phi']) AS `Phi`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.redacted']) AS `Redacted`,
    toUInt64OrZero(SpanAttributes['clinotel.telemetry.internal_errors']) AS `InternalErrors`
FROM {{local:otel_traces}}
WHERE SpanName = 'clinotel.telemetry';

-- cluster only
CREATE TABLE IF NOT EXISTS {{name:clinotel_sdk_telemetry}}{{on_cluster}} AS {{local:clinotel_sdk_telemetry}}
ENGINE = Distributed({{cluster_literal}}, {{db_literal}}, 'clinotel_sdk_telemetry_local', rand());
