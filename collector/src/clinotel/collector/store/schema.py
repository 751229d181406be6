"""The ClickHouse schema: the contrib exporter's trace tables, column for column, and clinotel's
migrations on top. Table and column names come from `clinotel.model.tables` (re-exported here for the collector).

`otel_traces` keeps the OpenTelemetry Collector contrib ClickHouse exporter's columns and types
exactly, so the Go collector can write the same table and Grafana's trace views read it. The
layout may differ (the exporter's contract is the columns): a MATERIALIZED `TenantId` column (from
the resource attribute the collector stamps) leads the sort key, so one tenant's rows are read
without another's; then service and hour, then `TraceId`, which keeps a trace's spans together:
the random hex ids then compress (measured on the demo mix: 62.9 -> 47.3 bytes per span against
the contrib order `(ServiceName, SpanName, toDateTime(Timestamp))`) and a trace reads from
adjacent rows. Dashboards read the clinical views, which have their own order.

Every tenant table's partition key leads with `TenantId` (migration 7), so each part holds one
tenant's rows and a reader's tenant filter prunes the others' parts (docs/security.md).

The DDL is in `migrations/`, frozen: numbered files rendered for the deployment's options, never
edited once released. Cluster mode renders `ON CLUSTER`, Replicated engines for the local tables,
and Distributed tables under the public names; materialized views run on each node's local tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Protocol

from clinotel.collector.store.migrations import DataStep, baseline, frozen
from clinotel.model.sql import identifier, literal
from clinotel.model.store import StoreError, error_line
from clinotel.model.tables import (
    ALERT_EVENT_COLUMNS,
    ALERT_EVENTS,
    COLLECTOR_METRICS,
    DEFAULT_DATABASE,
    SDK_TELEMETRY,
    SDK_TELEMETRY_COLUMNS,
    TENANT_COLUMN,
    TRACE_ID_TS,
    TRACES,
    TRACES_INSERT_COLUMNS,
    VERSIONS,
    tenant_tables,
)

__all__ = [
    "ALERT_EVENTS",
    "ALERT_EVENT_COLUMNS",
    "COLLECTOR_METRICS",
    "SCHEMA_VERSION",
    "SDK_TELEMETRY",
    "SDK_TELEMETRY_COLUMNS",
    "STARTED",
    "TENANT_COLUMN",
    "TRACES",
    "TRACES_INSERT_COLUMNS",
    "TRACE_ID_TS",
    "VERSIONS",
    "Migration",
    "SchemaOptions",
    "SchemaTarget",
    "StoreVersion",
    "apply",
    "check_not_newer",
    "migrations",
    "refuse_newer",
    "render",
    "stored_version",
    "stored_version_sql",
    "tenant_tables",
]

TRACE_ID_TS_MV: Final = "otel_traces_trace_id_ts_mv"
MIN_DATABASE_NAME: Final = 3


@dataclass(frozen=True)
class SchemaOptions:
    """Where and how the schema is created."""

    database: str = DEFAULT_DATABASE
    cluster: str | None = None
    ttl_days: int | None = None

    def __post_init__(self) -> None:
        if self.ttl_days is not None and self.ttl_days <= 0:
            raise ValueError("ttl_days must be a positive number of days")
        if len(self.database) < MIN_DATABASE_NAME:
            # the frozen migrations' views name tables by one- and two-letter aliases (`m`, `w`), which
            # a database of that name would shadow
            raise ValueError(f"a database name has at least {MIN_DATABASE_NAME} characters, not {self.database!r}")

    def name(self, table: str) -> str:
        """The qualified name readers and writers use (Distributed in cluster mode)."""
        return f"{identifier(self.database)}.{identifier(table)}"

    def local(self, table: str) -> str:
        """The qualified name of the table holding the data on this node."""
        return self.name(self.local_name(table))

    def local_name(self, table: str) -> str:
        """The name (in `system.tables` and `system.parts`) of the table holding the data on this node."""
        return f"{table}_local" if self.cluster else table

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {identifier(self.cluster)}" if self.cluster else ""

    def engine(self, table: str, kind: str = "MergeTree") -> str:
        if not self.cluster:
            return f"{kind}()"
        path = literal(f"/clickhouse/tables/{{shard}}/{self.database}/{table}")
        return f"Replicated{kind}({path}, '{{replica}}')"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    run: DataStep | None = None
    """A data migration's code (it reads the store to decide what to do)."""


def _versions(o: SchemaOptions) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {o.name(VERSIONS)}{o.on_cluster}
(
    `Version` UInt32,
    `Description` String,
    `AppliedAt` DateTime64(3) DEFAULT now64(3)
)
ENGINE = {o.engine(VERSIONS, "ReplacingMergeTree")}
ORDER BY Version"""


SCHEMA_VERSION: Final = len(frozen())


def migrations(o: SchemaOptions) -> list[Migration]:
    """Every migration, in order, rendered for `o` (the frozen files of `migrations/`)."""
    return [Migration(f.version, f.description, f.statements(o), f.run) for f in frozen()]


def render(o: SchemaOptions) -> str:
    """The whole schema as SQL text (`clinotel schema show`)."""
    parts = [f"-- clinotel schema version {SCHEMA_VERSION}", _versions(o) + ";"]
    start = baseline()
    after = 0
    if start is not None:
        after = start.version
        parts.append(
            f"-- baseline: what migrations 1 to {after} create in an empty database (`clinotel schema apply` "
            "upgrades an older store with the migrations themselves)"
        )
        parts.extend(s + ";" for s in start.statements(o))
    for m in migrations(o)[after:]:
        parts.append(f"-- migration {m.version}: {m.description}")
        parts.extend(s + ";" for s in m.statements)
        if m.run is not None:
            parts.append("-- (a data migration: `clinotel schema apply` runs it; it reads the store to decide)")
    from clinotel.collector.store.pipeline import Pipeline

    parts.append("-- ingest pipeline of this collector version (`clinotel serve` creates it where missing)")
    parts.extend(s + ";" for s in Pipeline.for_options(o).statements())
    return "\n\n".join(parts) + "\n"


class SchemaTarget(Protocol):
    """What apply() needs of a database client (clickhouse-connect's Client fits)."""

    def command(self, cmd: str) -> object: ...

    def query(self, query: str) -> object: ...


def apply(client: SchemaTarget, o: SchemaOptions, until: int | None = None) -> list[int]:
    """Apply the migrations not yet recorded, in order, up to `until` (every one by default);
    returns the versions applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {identifier(o.database)}{o.on_cluster}")
    client.command(_versions(o))
    stored = stored_version(client, o)
    refuse_newer(stored.version, o)
    done = set(stored.recorded)
    applied: list[int] = []
    start = baseline()
    if not done and start is not None and (until is None or until >= start.version):
        # a new store: the frozen baseline in one pass, recorded as the migrations it stands for
        first = migrations(o)[: start.version]
        with _migrating(client, o, first[-1], done):
            for statement in start.statements(o):
                client.command(statement)
            for m in first:
                _record(client, o, m)
                applied.append(m.version)
        done.update(applied)
    for m in migrations(o):
        if m.version in done or (until is not None and m.version > until):
            continue
        with _migrating(client, o, m, done | set(applied)):
            for statement in m.statements:
                client.command(statement)
            if m.run is not None:
                m.run(client, o)
            _record(client, o, m)
        applied.append(m.version)
    return applied


STARTED: Final = "started: "
"""The head of a version's `Description` while its migration runs. The row is written before the
migration's first statement, so a release that knows an earlier version refuses a store left
half-migrated by a crash (its check reads the largest version recorded): a kill -9 within
migration 21's second left 20 recorded and the decision columns renamed, an older collector started
on it and its views wrote every decision nowhere (an upgrade review). The migration's own row
replaces it once done (`ReplacingMergeTree` on `Version`); this release runs it again."""


@contextmanager
def _migrating(client: SchemaTarget, o: SchemaOptions, m: Migration, done: set[int]) -> Iterator[None]:
    """Run a migration's statements inside: marked started first, and any failure in one line."""
    at = max(done, default=0)
    try:
        client.command(
            f"INSERT INTO {o.name(VERSIONS)} (Version, Description) "
            f"VALUES ({m.version}, {literal(STARTED + m.description)})"
        )
        yield
    except StoreError:
        raise
    except Exception as e:
        # one line naming the migration: a start that fails here fails again at every restart
        raise StoreError(
            f"schema migration {m.version} failed: {error_line(e)} (the store is between schema versions {at} "
            f"and {m.version}, and a release that knows only {at} refuses it; what it holds is kept: fix the "
            "cause, e.g. a full disk or an object of your own in its way, and start this release again)"
        ) from e


@dataclass(frozen=True)
class StoreVersion:
    """What a store's recorded migrations say (`clinotel schema status`)."""

    recorded: tuple[int, ...]
    """The migrations finished."""
    started: tuple[int, ...]
    """The migrations started and not finished (a crash or a failure within them)."""

    @property
    def version(self) -> int:
        """The store's schema version as a release checks it: the largest recorded, started or not."""
        return max(self.recorded + self.started, default=0)


def stored_version(client: SchemaTarget, o: SchemaOptions) -> StoreVersion:
    """The store's migrations, finished and started (none when it has no schema yet)."""
    exists = client.query(
        f"SELECT count() FROM system.tables WHERE database = {literal(o.database)} AND name = {literal(VERSIONS)}"
    )
    if not getattr(exists, "result_rows", [[0]])[0][0]:
        return StoreVersion((), ())
    rows = getattr(client.query(f"SELECT Version, Description FROM {o.name(VERSIONS)} FINAL"), "result_rows", [])
    started = tuple(sorted(int(v) for v, d in rows if str(d).startswith(STARTED)))
    return StoreVersion(tuple(sorted(int(v) for v, d in rows if int(v) not in started)), started)


def check_not_newer(client: SchemaTarget, o: SchemaOptions) -> None:
    """StoreError when a newer release has migrated the store past what this code knows (for a
    command that uses the store without migrating it: the rollups' refresh)."""
    rows = getattr(client.query(stored_version_sql(o)), "result_rows", [])
    refuse_newer(int(rows[0][0] or 0) if rows else 0, o)


def stored_version_sql(o: SchemaOptions) -> str:
    """The query of the store's schema version (0 when no migration is recorded)."""
    return f"SELECT max(Version) FROM {o.name(VERSIONS)}"


def refuse_newer(version: int, o: SchemaOptions) -> None:
    """StoreError when `version` (the store's schema version) is past the last migration this code knows."""
    known = migrations(o)[-1].version
    if version > known:
        # an older release on a store a newer one migrated wrote through views that no longer
        # match the tables, and its refreshes failed every 30 s (an upgrade review)
        raise StoreError(
            f"this store is at schema version {version}, newer than this clinotel knows ({known}): a newer "
            "release migrated it. Run that release, or restore the data directory copied before the upgrade "
            "(docs/operations.md, Upgrading)"
        )


def _record(client: SchemaTarget, o: SchemaOptions, m: Migration) -> None:
    client.command(
        f"INSERT INTO {o.name(VERSIONS)} (Version, Description) VALUES ({m.version}, {literal(m.description)})"
    )
