"""The ClickHouse schema: the contrib exporter's trace tables, column for column, and clinotel's
migrations on top. One source for every table and column name the collector writes.

`otel_traces` keeps the OpenTelemetry Collector contrib ClickHouse exporter's columns and types
exactly, so the Go collector can write the same table and Grafana's trace views read it. The
layout may differ (the exporter's contract is the columns): a MATERIALIZED `TenantId` column (from
the resource attribute the collector stamps) leads the sort key, so one tenant's rows are read
without another's; then service and hour, then `TraceId`, which keeps a trace's spans together:
the random hex ids then compress (measured on the demo mix: 62.9 -> 47.3 bytes per span against
the contrib order `(ServiceName, SpanName, toDateTime(Timestamp))`) and a trace reads from
adjacent rows. Dashboards read the clinical views, which have their own order.

Cluster mode renders `ON CLUSTER`, Replicated engines for the local tables, and Distributed
tables under the public names; materialized views run on each node's local tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from clinotel.collector.sql import identifier, literal
from clinotel.semconv import attributes as A

__all__ = [
    "ALERT_EVENTS",
    "ALERT_EVENT_COLUMNS",
    "COLLECTOR_METRICS",
    "SCHEMA_VERSION",
    "SDK_TELEMETRY",
    "SDK_TELEMETRY_COLUMNS",
    "TENANT_COLUMN",
    "TRACES",
    "TRACES_INSERT_COLUMNS",
    "TRACE_ID_TS",
    "VERSIONS",
    "Migration",
    "SchemaError",
    "SchemaOptions",
    "SchemaTarget",
    "apply",
    "migrations",
    "render",
    "tenant_tables",
]

TRACES: Final = "otel_traces"
TRACE_ID_TS: Final = "otel_traces_trace_id_ts"
TRACE_ID_TS_MV: Final = "otel_traces_trace_id_ts_mv"
VERSIONS: Final = "clinotel_schema_versions"
TENANT_COLUMN: Final = "TenantId"
COLLECTOR_METRICS: Final = "clinotel_collector_metrics"
SDK_TELEMETRY: Final = "clinotel_sdk_telemetry"
SDK_TELEMETRY_COLUMNS: Final = {
    reason: "".join(word.capitalize() for word in reason.split("_")) for reason in A.HEALTH_COUNTERS
}
"""Reason (`clinotel.semconv.attributes.HEALTH_COUNTERS`) -> its column in `clinotel_sdk_telemetry`."""
ALERT_EVENTS: Final = "clinotel_alert_events"
ALERT_EVENT_COLUMNS: Final = (
    "Timestamp", "TenantId", "Rule", "Labels", "Event", "Severity", "Value", "Sample", "Threshold", "Receiver",
    "Attempt", "Detail",
)  # fmt: skip
"""The audit trail's columns, in insert order."""

TRACES_INSERT_COLUMNS: Final = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)
"""The contrib exporter's INSERT columns, in its order."""

_ATTR_MAP: Final = "Map(LowCardinality(String), String)"


@dataclass(frozen=True)
class SchemaOptions:
    """Where and how the schema is created."""

    database: str = "clinotel"
    cluster: str | None = None
    ttl_days: int | None = None

    def __post_init__(self) -> None:
        if self.ttl_days is not None and self.ttl_days <= 0:
            raise ValueError("ttl_days must be a positive number of days")

    def name(self, table: str) -> str:
        """The qualified name readers and writers use (Distributed in cluster mode)."""
        return f"{identifier(self.database)}.{identifier(table)}"

    def local(self, table: str) -> str:
        """The qualified name of the table holding the data on this node."""
        return self.name(f"{table}_local" if self.cluster else table)

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {identifier(self.cluster)}" if self.cluster else ""

    def engine(self, table: str, kind: str = "MergeTree") -> str:
        if not self.cluster:
            return f"{kind}()"
        path = literal(f"/clickhouse/tables/{{shard}}/{self.database}/{table}")
        return f"Replicated{kind}({path}, '{{replica}}')"

    def partition_by(self, time_expr: str) -> str:
        """The partition key of a tenant table: the tenant first, so every part holds one
        tenant's rows and a reader's tenant filter prunes the others' parts before any of the
        reader's expressions is evaluated (docs/security.md)."""
        return f"({TENANT_COLUMN}, {time_expr})"

    def ttl(self, time_expr: str) -> str:
        return f"\nTTL {time_expr} + toIntervalDay({self.ttl_days})" if self.ttl_days else ""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def _traces(o: SchemaOptions) -> Iterator[str]:
    yield f"CREATE DATABASE IF NOT EXISTS {identifier(o.database)}{o.on_cluster}"
    yield f"""CREATE TABLE IF NOT EXISTS {o.local(TRACES)}{o.on_cluster}
(
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TraceId` String CODEC(ZSTD(1)),
    `SpanId` String CODEC(ZSTD(1)),
    `ParentSpanId` String CODEC(ZSTD(1)),
    `TraceState` String CODEC(ZSTD(1)),
    `SpanName` LowCardinality(String) CODEC(ZSTD(1)),
    `SpanKind` LowCardinality(String) CODEC(ZSTD(1)),
    `ServiceName` LowCardinality(String) CODEC(ZSTD(1)),
    `ResourceAttributes` {_ATTR_MAP} CODEC(ZSTD(1)),
    `ScopeName` String CODEC(ZSTD(1)),
    `ScopeVersion` String CODEC(ZSTD(1)),
    `SpanAttributes` {_ATTR_MAP} CODEC(ZSTD(1)),
    `Duration` UInt64 CODEC(ZSTD(1)),
    `StatusCode` LowCardinality(String) CODEC(ZSTD(1)),
    `StatusMessage` String CODEC(ZSTD(1)),
    `Events` Nested(`Timestamp` DateTime64(9), `Name` LowCardinality(String), `Attributes` {_ATTR_MAP}) CODEC(ZSTD(1)),
    `Links` Nested(`TraceId` String, `SpanId` String, `TraceState` String, `Attributes` {_ATTR_MAP}) CODEC(ZSTD(1)),
    `TenantId` LowCardinality(String) MATERIALIZED ResourceAttributes[{literal(A.TENANT_ID.key)}],
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
)
ENGINE = {o.engine(TRACES)}
PARTITION BY {o.partition_by("toDate(Timestamp)")}
ORDER BY (TenantId, ServiceName, toStartOfHour(Timestamp), TraceId){o.ttl("toDateTime(Timestamp)")}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000"""
    yield f"""CREATE TABLE IF NOT EXISTS {o.local(TRACE_ID_TS)}{o.on_cluster}
(
    `TraceId` String CODEC(ZSTD(1)),
    `Start` DateTime CODEC(Delta, ZSTD(1)),
    `End` DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {o.engine(TRACE_ID_TS)}
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start){o.ttl("toDateTime(Start)")}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""
    yield f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {o.local(TRACE_ID_TS_MV)}{o.on_cluster}
TO {o.local(TRACE_ID_TS)}
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {o.local(TRACES)}
WHERE TraceId != ''
GROUP BY TraceId"""
    if o.cluster:
        yield _distributed(o, TRACES, "cityHash64(TraceId)")
        yield _distributed(o, TRACE_ID_TS, "cityHash64(TraceId)")


def _distributed(o: SchemaOptions, table: str, sharding_key: str) -> str:
    assert o.cluster is not None
    return (
        f"CREATE TABLE IF NOT EXISTS {o.name(table)}{o.on_cluster} AS {o.local(table)}\n"
        f"ENGINE = Distributed({literal(o.cluster)}, {literal(o.database)}, {literal(table + '_local')}, "
        f"{sharding_key})"
    )


def _versions(o: SchemaOptions) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {o.name(VERSIONS)}{o.on_cluster}
(
    `Version` UInt32,
    `Description` String,
    `AppliedAt` DateTime64(3) DEFAULT now64(3)
)
ENGINE = {o.engine(VERSIONS, "ReplacingMergeTree")}
ORDER BY Version"""


def _clinical(o: SchemaOptions) -> Iterator[str]:
    from clinotel.collector import clinical

    yield from clinical.statements(o)
    if o.cluster:
        yield _distributed(o, clinical.STAGE_SPANS, "cityHash64(TraceId)")
        yield _distributed(o, clinical.WORKFLOWS, "cityHash64(TraceId)")


def tenant_tables() -> tuple[str, ...]:
    """The tables with a `TenantId` column: what readers may query, each filtered to their tenant."""
    from clinotel.collector import clinical

    return (TRACES, clinical.STAGE_SPANS, clinical.WORKFLOWS, COLLECTOR_METRICS, ALERT_EVENTS, SDK_TELEMETRY)


def _alert_events(o: SchemaOptions) -> Iterator[str]:
    yield f"""CREATE TABLE IF NOT EXISTS {o.local(ALERT_EVENTS)}{o.on_cluster}
(
    `Timestamp` DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    `TenantId` LowCardinality(String),
    `Rule` LowCardinality(String),
    `Labels` {_ATTR_MAP},
    `Event` LowCardinality(String),
    `Severity` LowCardinality(String),
    `Value` Nullable(Float64),
    `Sample` UInt64,
    `Threshold` Nullable(Float64),
    `Receiver` LowCardinality(String),
    `Attempt` UInt16,
    `Detail` String
)
ENGINE = {o.engine(ALERT_EVENTS)}
PARTITION BY {o.partition_by("toYYYYMM(Timestamp)")}
ORDER BY (TenantId, Rule, Timestamp)
COMMENT 'Alert audit trail: every state transition and every notification attempt'"""
    if o.cluster:
        yield _distributed(o, ALERT_EVENTS, "rand()")


def _collector_metrics(o: SchemaOptions) -> Iterator[str]:
    yield f"""CREATE TABLE IF NOT EXISTS {o.local(COLLECTOR_METRICS)}{o.on_cluster}
(
    `Timestamp` DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    `TenantId` LowCardinality(String),
    `Instance` LowCardinality(String),
    `Metric` LowCardinality(String),
    `Labels` {_ATTR_MAP},
    `Kind` Enum8('counter' = 1, 'gauge' = 2),
    `Value` Float64 CODEC(ZSTD(1))
)
ENGINE = {o.engine(COLLECTOR_METRICS)}
PARTITION BY {o.partition_by("toDate(Timestamp)")}
ORDER BY (TenantId, Metric, Timestamp){o.ttl("toDateTime(Timestamp)")}
COMMENT 'Collector self-telemetry: counters as increases per row, gauges as they stood'"""
    if o.cluster:
        yield _distributed(o, COLLECTOR_METRICS, "rand()")


_TIGHTER_CODECS: Final = (
    ("ResourceAttributes", _ATTR_MAP, "ZSTD(9)"),
    ("SpanAttributes", _ATTR_MAP, "ZSTD(6)"),
    ("Duration", "UInt64", "T64, ZSTD(1)"),
)
"""Measured on the demo mix (one pass of unique spans, merged): resource attributes repeat per
service and all but vanish at ZSTD(9) (3.5 -> 0.04 B/span); span attributes 15.5 -> 9.9 B/span at
ZSTD(6) (9.1 at ZSTD(9), which cost a fifth of the insert throughput; 6 cost none measurable);
durations 4.3 -> 4.0 with T64. The table: 47.1 -> 37.6 bytes per span."""


def _codecs(o: SchemaOptions) -> Iterator[str]:
    for column, column_type, codec in _TIGHTER_CODECS:
        yield (
            f"ALTER TABLE {o.local(TRACES)}{o.on_cluster} MODIFY COLUMN {identifier(column)} {column_type} "
            f"CODEC({codec})"
        )


def _sdk_telemetry(o: SchemaOptions) -> Iterator[str]:
    counters = ",\n    ".join(f"{identifier(c)} UInt64" for c in SDK_TELEMETRY_COLUMNS.values())
    yield f"""CREATE TABLE IF NOT EXISTS {o.local(SDK_TELEMETRY)}{o.on_cluster}
(
    `Timestamp` DateTime64(9) CODEC(Delta, ZSTD(1)),
    `TenantId` LowCardinality(String),
    `ServiceName` LowCardinality(String),
    `ServiceInstance` LowCardinality(String),
    {counters}
)
ENGINE = {o.engine(SDK_TELEMETRY)}
PARTITION BY {o.partition_by("toDate(Timestamp)")}
ORDER BY (TenantId, ServiceName, Timestamp){o.ttl("toDateTime(Timestamp)")}
COMMENT 'What each service''s clinotel gate dropped or redacted, per export batch'"""
    values = ",\n    ".join(
        f"toUInt64OrZero(SpanAttributes[{literal(A.HEALTH_COUNTERS[reason].key)}]) AS {identifier(column)}"
        for reason, column in SDK_TELEMETRY_COLUMNS.items()
    )
    select = f"""SELECT
    Timestamp,
    TenantId,
    ServiceName,
    ResourceAttributes[{literal(A.SERVICE_INSTANCE_ID.key)}] AS ServiceInstance,
    {values}
FROM {o.local(TRACES)}
WHERE SpanName = {literal(A.HEALTH_SPAN_NAME)}"""
    view = o.local(SDK_TELEMETRY + "_mv")
    yield f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view}{o.on_cluster}\nTO {o.local(SDK_TELEMETRY)}\nAS {select}"
    if o.cluster:
        yield _distributed(o, SDK_TELEMETRY, "rand()")
    else:
        # what is stored already (an INSERT has no ON CLUSTER: a cluster starts counting now)
        yield f"INSERT INTO {o.local(SDK_TELEMETRY)}\n{select}"


def _no_statements(o: SchemaOptions) -> Iterator[str]:
    """A data migration: nothing to render; `apply` runs its code (`_DATA_STEPS`)."""
    yield from ()


class SchemaError(RuntimeError):
    """A migration that cannot be applied to this store as it is."""


def _tenant_partitions(client: SchemaTarget, o: SchemaOptions) -> None:
    """Rebuild each tenant table whose partition key does not lead with TenantId (created before
    version 7). Each is copied into a new table with the tenant-first key and swapped in; the
    materialized views are dropped first and re-created after (they follow the tables they read
    and write by identity, not by name). A store created at version 7 or later has nothing to do."""
    names = ", ".join(literal(t + ("_local" if o.cluster else "")) for t in tenant_tables())
    db = literal(o.database)
    rows = _rows(client, f"SELECT name, partition_key FROM system.tables WHERE database = {db} AND name IN ({names})")
    stale = [(name, key) for name, key in rows if not key.startswith((f"({TENANT_COLUMN},", TENANT_COLUMN))]
    if not stale:
        return
    if o.cluster:
        raise SchemaError(
            f"{', '.join(n for n, _ in stale)} predate tenant partitions (schema version 7); on a cluster they are "
            "rebuilt by hand, shard by shard (docs/operations.md, 'Upgrading a cluster to schema version 7')"
        )
    views = _rows(
        client,
        f"SELECT name, create_table_query FROM system.tables WHERE database = {db} AND engine = 'MaterializedView'",
    )
    for name, _ in views:
        client.command(f"DROP VIEW IF EXISTS {o.name(name)}")
    for name, key in stale:
        where = f"database = {db} AND name = {literal(name)}"
        [(ddl,)] = _rows(client, f"SELECT create_table_query FROM system.tables WHERE {where}")
        old, new = o.name(name), o.name(name + "__v7")
        created = ddl.replace(f"CREATE TABLE {o.database}.{name} ", f"CREATE TABLE {new} ", 1)
        created = created.replace(f"PARTITION BY {key} ", f"PARTITION BY {o.partition_by(key)} ", 1)
        if created.count(new) != 1 or o.partition_by(key) not in created:
            raise SchemaError(f"cannot rebuild {old}: unexpected definition {ddl[:200]}")
        client.command(f"DROP TABLE IF EXISTS {new}")
        client.command(created)
        client.command(f"INSERT INTO {new} SELECT * FROM {old} SETTINGS insert_deduplicate = 0")
        client.command(f"EXCHANGE TABLES {old} AND {new}")
        client.command(f"DROP TABLE {new}")
    for _, create in views:
        client.command(create)


def _rows(client: SchemaTarget, sql: str) -> list[tuple[str, ...]]:
    return [tuple(str(v) for v in row) for row in getattr(client.query(sql), "result_rows", [])]


class _Steps(Protocol):
    def __call__(self, o: SchemaOptions) -> Iterator[str]: ...


_STEPS: Final[tuple[tuple[int, str, _Steps], ...]] = (
    (1, "contrib exporter trace tables, tenant-first sort key", _traces),
    (2, "clinical views: clinical_stage_spans, clinical_workflows", _clinical),
    (3, "collector self-telemetry: clinotel_collector_metrics", _collector_metrics),
    (4, "alert audit trail: clinotel_alert_events", _alert_events),
    (5, "tighter codecs for otel_traces attribute maps and durations", _codecs),
    (6, "SDK telemetry: clinotel_sdk_telemetry from the clinotel.telemetry spans", _sdk_telemetry),
    (7, "tenant-first partition keys on every tenant table (reader isolation)", _no_statements),
)
_DATA_STEPS: Final[dict[int, Callable[[SchemaTarget, SchemaOptions], None]]] = {7: _tenant_partitions}
"""Migrations that read the store to decide what to do, run by `apply` after their statements."""
_DATA_NOTES: Final = {7: "tables created before version 7 are rebuilt with TenantId leading the partition key"}
SCHEMA_VERSION: Final = max(v for v, _, _ in _STEPS)


def migrations(o: SchemaOptions) -> list[Migration]:
    """Every migration, in order, rendered for `o`."""
    return [Migration(v, d, tuple(steps(o))) for v, d, steps in _STEPS]


def render(o: SchemaOptions) -> str:
    """The whole schema as SQL text (`clinotel schema show`)."""
    parts = [f"-- clinotel schema version {SCHEMA_VERSION}", _versions(o) + ";"]
    for m in migrations(o):
        parts.append(f"-- migration {m.version}: {m.description}")
        parts.extend(s + ";" for s in m.statements)
        if m.version in _DATA_STEPS:
            parts.append(f"-- (data migration, run by `clinotel schema apply`: {_DATA_NOTES[m.version]})")
    from clinotel.collector.ingest import Pipeline

    parts.append("-- ingest pipeline of this collector version (`clinotel serve` creates it where missing)")
    parts.extend(s + ";" for s in Pipeline.for_options(o).statements())
    return "\n\n".join(parts) + "\n"


class SchemaTarget(Protocol):
    """What apply() needs of a database client (clickhouse-connect's Client fits)."""

    def command(self, cmd: str) -> object: ...

    def query(self, query: str) -> object: ...


def apply(client: SchemaTarget, o: SchemaOptions) -> list[int]:
    """Apply the migrations not yet recorded, in order; returns the versions applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {identifier(o.database)}{o.on_cluster}")
    client.command(_versions(o))
    result = client.query(f"SELECT Version FROM {o.name(VERSIONS)} FINAL")
    done = {int(row[0]) for row in getattr(result, "result_rows", [])}
    applied = []
    for m in migrations(o):
        if m.version in done:
            continue
        for statement in m.statements:
            client.command(statement)
        if m.version in _DATA_STEPS:
            _DATA_STEPS[m.version](client, o)
        client.command(
            f"INSERT INTO {o.name(VERSIONS)} (Version, Description) VALUES ({m.version}, {literal(m.description)})"
        )
        applied.append(m.version)
    return applied
