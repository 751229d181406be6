"""Migration 7 (frozen): TenantId leads the partition key of every tenant table, so a reader's
tenant filter prunes the other tenants' parts before any of its expressions is evaluated.

A table created by migrations 1–6 is rebuilt with the same definition and the tenant-first key:
an empty one is dropped and created again (on a cluster too, `ON CLUSTER`); one with rows is
copied into the new table and swapped in (single node; on a cluster the copy is shard by shard,
by hand: docs/operations.md). The materialized views follow the tables they read and write by
identity, not by name: they are dropped first and created again from their own definitions.
"""

from __future__ import annotations

from typing import Any, Final

from clinotel.model.sql import identifier, literal

DESCRIPTION: Final = "tenant-first partition keys on every tenant table (reader isolation)"
TENANT: Final = "TenantId"
TABLES: Final = (
    "otel_traces",
    "clinical_stage_spans",
    "clinical_workflows",
    "clinotel_collector_metrics",
    "clinotel_alert_events",
    "clinotel_sdk_telemetry",
)
"""The tables with a TenantId column when this migration was written."""


class RebuildRefusedError(RuntimeError):
    """A table that cannot be rebuilt here (rows on a cluster)."""


def _rows(client: Any, sql: str) -> list[tuple[str, ...]]:
    return [tuple(str(v) for v in row) for row in getattr(client.query(sql), "result_rows", [])]


def _on_cluster(o: Any) -> str:
    return f" ON CLUSTER {identifier(o.cluster)}" if o.cluster else ""


def _qualified(o: Any, table: str) -> str:
    return f"{identifier(o.database)}.{identifier(table)}"


def _with_on_cluster(create: str, database: str, name: str, o: Any) -> str:
    """A definition from `system.tables` with `ON CLUSTER` after its name (cluster mode)."""
    head = f"{database}.{name} "
    if not o.cluster:
        return create
    if head not in create:
        raise RebuildRefusedError(f"unexpected definition of {database}.{name}: {create[:120]}")
    return create.replace(head, f"{database}.{name}{_on_cluster(o)} ", 1)


def run(client: Any, o: Any) -> None:
    db = literal(o.database)
    local = {t: f"{t}_local" if o.cluster else t for t in TABLES}
    names = ", ".join(literal(n) for n in local.values())
    keys = _rows(client, f"SELECT name, partition_key FROM system.tables WHERE database = {db} AND name IN ({names})")
    stale = [(name, key) for name, key in keys if not key.startswith((f"({TENANT},", TENANT))]
    if not stale:
        return
    counts = {}
    for name, _ in stale:
        public = name.removesuffix("_local") if o.cluster else name
        counts[name] = int(_rows(client, f"SELECT count() FROM {_qualified(o, public)}")[0][0])
    with_rows = [n for n, c in counts.items() if c]
    if o.cluster and with_rows:
        raise RebuildRefusedError(
            f"{', '.join(with_rows)} hold rows from before tenant partitions (schema version 7): on a cluster they "
            "are rebuilt by hand, shard by shard (docs/operations.md, 'Upgrading a cluster to schema version 7')"
        )
    views = _rows(
        client,
        f"SELECT name, create_table_query FROM system.tables WHERE database = {db} AND engine = 'MaterializedView'",
    )
    for name, _ in views:
        client.command(f"DROP VIEW IF EXISTS {_qualified(o, name)}{_on_cluster(o)} SYNC")
    for name, key in stale:
        [(create,)] = _rows(
            client, f"SELECT create_table_query FROM system.tables WHERE database = {db} AND name = {literal(name)}"
        )
        tenant_first = f"({TENANT}, {key})"
        if f"PARTITION BY {key} " not in create:
            raise RebuildRefusedError(f"cannot rebuild {o.database}.{name}: unexpected definition {create[:200]}")
        rebuilt = create.replace(f"PARTITION BY {key} ", f"PARTITION BY {tenant_first} ", 1)
        if not counts[name]:
            client.command(f"DROP TABLE {_qualified(o, name)}{_on_cluster(o)} SYNC")
            client.command(_with_on_cluster(rebuilt, o.database, name, o))
            continue
        old, new = _qualified(o, name), _qualified(o, name + "__v7")
        client.command(f"DROP TABLE IF EXISTS {new}")
        copy = rebuilt.replace(f"CREATE TABLE {o.database}.{name} ", f"CREATE TABLE {new} ", 1)
        if copy == rebuilt:
            raise RebuildRefusedError(f"cannot rebuild {o.database}.{name}: unexpected definition {create[:200]}")
        client.command(copy)
        client.command(f"INSERT INTO {new} SELECT * FROM {old} SETTINGS insert_deduplicate = 0")
        client.command(f"EXCHANGE TABLES {old} AND {new}")
        client.command(f"DROP TABLE {new}")
    for name, create in views:
        client.command(_with_on_cluster(create, o.database, name, o))
