-- clinotel schema migration 22: what the collector drops of a span's attributes is counted, as a service's clinotel gate counts its own: otel_traces gains AttributesDroppedUnregistered, AttributesDroppedInvalid and AttributesDroppedPhi (per span: keys not registered for spans; registered keys whose value fails its check or is an array, map or bytes; registered values that look like PHI; 0 for rows written by other pipelines), and a view adds them up, per tenant and service and insert, into clinotel_sdk_telemetry with ServiceInstance 'clinotel-collector', so the telemetry-health dashboard, the report and the sdk rules (sdk_phi_dropped) see the drops of services without the library, which were silent (an outside audit: a service's confidence of 1.5 and queue depth of -1 vanished without a count).
-- Frozen: never edit an applied migration; add a new one.

ALTER TABLE {{local:otel_traces}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `AttributesDroppedUnregistered` UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS `AttributesDroppedInvalid` UInt32 DEFAULT 0 CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS `AttributesDroppedPhi` UInt32 DEFAULT 0 CODEC(T64, ZSTD(1));

-- cluster only
ALTER TABLE {{name:otel_traces}}{{on_cluster}}
    ADD COLUMN IF NOT EXISTS `AttributesDroppedUnregistered` UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `AttributesDroppedInvalid` UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `AttributesDroppedPhi` UInt32 DEFAULT 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local:clinotel_collector_drops_mv}}{{on_cluster}}
TO {{local:clinotel_sdk_telemetry}}
AS SELECT
    now64(9) AS Timestamp,
    TenantId,
    ServiceName,
    'clinotel-collector' AS ServiceInstance,
    sum(AttributesDroppedUnregistered) AS `Unregistered`,
    sum(AttributesDroppedInvalid) AS `Invalid`,
    sum(AttributesDroppedPhi) AS `Phi`,
    toUInt64(0) AS `Redacted`,
    toUInt64(0) AS `InternalErrors`
FROM {{local:otel_traces}}
WHERE AttributesDroppedUnregistered > 0 OR AttributesDroppedInvalid > 0 OR AttributesDroppedPhi > 0
GROUP BY TenantId, ServiceName;
