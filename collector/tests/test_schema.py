"""The schema: contrib tables, migrations in order, cluster and TTL rendering, the command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clinotel.cli import cli
from clinotel.collector.store import schema


def test_apply_is_idempotent_and_records_versions(client: Any, options: schema.SchemaOptions) -> None:
    assert schema.apply(client, options) == [], "the fixture applied everything already"
    versions = client.query(f"SELECT Version FROM {options.name(schema.VERSIONS)} FINAL ORDER BY Version").result_rows
    assert [v[0] for v in versions] == [m.version for m in schema.migrations(options)]


def test_tenant_leads_the_sort_key(client: Any, options: schema.SchemaOptions) -> None:
    key = client.query(
        f"SELECT sorting_key FROM system.tables WHERE database = '{options.database}' AND name = '{schema.TRACES}'"
    ).result_rows[0][0]
    assert key == "TenantId, ServiceName, toStartOfHour(Timestamp), TraceId"


def test_no_skip_index_over_the_attribute_maps(client: Any, options: schema.SchemaOptions) -> None:
    """Any index over a map made an insert hold 120-140 MB more (migration 14); the trace id's bloom
    filter, which trace lookups use, and the duration's minmax stay."""
    indexes = dict(
        client.query(
            "SELECT name, expr FROM system.data_skipping_indices "
            f"WHERE database = '{options.database}' AND table = '{schema.TRACES}'"
        ).result_rows
    )
    assert indexes == {"idx_trace_id": "TraceId", "idx_duration": "Duration"}


def test_contrib_types_with_tighter_codecs(client: Any, options: schema.SchemaOptions) -> None:
    columns = {
        name: (typ, codec)
        for name, typ, codec in client.query(
            f"SELECT name, type, compression_codec FROM system.columns "
            f"WHERE database = '{options.database}' AND table = '{schema.TRACES}'"
        ).result_rows
    }
    assert columns["SpanAttributes"] == ("Map(LowCardinality(String), String)", "CODEC(ZSTD(6))")
    assert columns["ResourceAttributes"] == ("Map(LowCardinality(String), String)", "CODEC(ZSTD(9))")
    assert columns["Duration"] == ("UInt64", "CODEC(T64, ZSTD(1))")
    assert columns["SpanName"] == ("LowCardinality(String)", "CODEC(ZSTD(1))")
    assert columns["Timestamp"] == ("DateTime64(9)", "CODEC(ZSTD(6))")
    assert columns["ScopeName"] == ("String", "CODEC(ZSTD(3))")
    assert columns["ScopeVersion"] == ("String", "CODEC(ZSTD(3))")


def test_cluster_mode_renders_on_cluster_replicated_and_distributed() -> None:
    ddl = schema.render(schema.SchemaOptions(database="obs", cluster="hospital", ttl_days=30))
    creates = [s for s in ddl.split(";") if "CREATE" in s]
    assert creates
    assert all("ON CLUSTER `hospital`" in s for s in creates)
    assert "`obs`.`otel_traces_local`" in ddl
    assert re.search(r"ReplicatedMergeTree\('/clickhouse/tables/\{shard\}/obs/otel_traces', '\{replica\}'\)", ddl)
    assert "ENGINE = Distributed('hospital', 'obs', 'otel_traces_local', cityHash64(TraceId))" in ddl
    assert "TTL toDateTime(Timestamp) + toIntervalDay(30)" in ddl
    assert "TTL toDateTime(Start) + toIntervalDay(30)" in ddl
    assert "FROM `obs`.`otel_traces_local`" in ddl, "materialized views read the local table"


def test_single_node_has_no_cluster_clauses() -> None:
    ddl = schema.render(schema.SchemaOptions())
    assert "ON CLUSTER" not in ddl
    assert "Distributed" not in ddl
    assert "Replicated" not in ddl
    assert "TTL" not in ddl


def test_schema_command_shows_and_applies(tmp_path: Path) -> None:
    shown = CliRunner().invoke(cli, ["schema", "show", "--cluster", "c1", "--ttl-days", "7"])
    assert shown.exit_code == 0, shown.output
    assert "ON CLUSTER `c1`" in shown.output
    bad = CliRunner().invoke(cli, ["schema", "show", "--ttl-days", "0"])
    assert bad.exit_code != 0
    assert "positive" in bad.output
    both = CliRunner().invoke(cli, ["schema", "apply", "--data-dir", str(tmp_path), "--clickhouse-url", "http://x"])
    assert both.exit_code != 0
    assert "not both" in both.output


def test_schema_proto_for_a_servers_format_schemas(tmp_path: Path) -> None:
    from clinotel.collector.store.pipeline import Pipeline

    pipeline = Pipeline.for_options(schema.SchemaOptions())
    written = CliRunner().invoke(cli, ["schema", "proto", "--out", str(tmp_path)])
    assert written.exit_code == 0, written.output
    path = tmp_path / pipeline.proto_name
    assert path.read_text() == pipeline.proto
    assert "message WalRecord" in pipeline.proto
    printed = CliRunner().invoke(cli, ["schema", "proto"])
    assert printed.stdout == pipeline.proto


def test_schema_apply_on_a_data_directory(tmp_path: Path) -> None:
    """In a subprocess: chDB opens one data directory per process, and the tests hold theirs."""
    import subprocess
    import sys

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "clinotel.cli", "schema", "apply", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "applied migrations 1" in run()
    assert "up to date" in run()


def _layout(client: Any, database: str) -> list[tuple[Any, ...]]:
    """Every table of `database` as ClickHouse describes it, with the database name taken out."""
    return [
        tuple(row)
        for row in client.query(
            f"SELECT name, engine, partition_key, sorting_key, replaceAll(create_table_query, '{database}.', '') "
            f"FROM system.tables WHERE database = '{database}' ORDER BY name"
        ).result_rows
    ]


def test_every_tenant_table_is_partitioned_by_tenant_first(client: Any, options: schema.SchemaOptions) -> None:
    keys = dict(
        client.query(f"SELECT name, partition_key FROM system.tables WHERE database = '{options.database}'").result_rows
    )
    for table in schema.tenant_tables():
        assert keys[table].startswith("(TenantId, "), (table, keys[table])


@pytest.mark.parametrize("version", range(schema.SCHEMA_VERSION))
def test_a_store_of_every_earlier_version_upgrades_to_the_same_store_as_a_fresh_one(
    client: Any, options: schema.SchemaOptions, version: int
) -> None:
    """A store left at `version` (with rows in what it has) upgrades to the same tables, keys,
    columns and views as a fresh store, keeping every row; its views keep feeding the tables."""
    import uuid

    old = schema.SchemaOptions(database=f"v{version}_{uuid.uuid4().hex[:10]}")
    assert schema.apply(client, old, until=version) == list(range(1, version + 1))
    try:
        traces = old.name(schema.TRACES)
        insert = (
            f"INSERT INTO {traces} (Timestamp, TraceId, SpanName, ResourceAttributes, SpanAttributes) "
            "SELECT now64(9) - number, hex(number), 'workflow triage', "
            "map('clinical.tenant.id', if(number % 3 = 0, 'a', 'b')), "
            "map('clinical.workflow.kind', 'triage', 'clinical.workflow.stage', 'ingest') FROM numbers({n})"
        )
        existing = {
            t for (t,) in client.query(f"SHOW TABLES FROM {old.database}").result_rows if t in schema.tenant_tables()
        }
        if version:
            client.command(insert.format(n=600))
        before = {t: client.command(f"SELECT count() FROM {old.name(t)}") for t in existing}
        assert schema.apply(client, old) == list(range(version + 1, schema.SCHEMA_VERSION + 1))
        assert {t: client.command(f"SELECT count() FROM {old.name(t)}") for t in existing} == before
        assert _layout(client, old.database) == _layout(client, options.database)
        client.command(insert.format(n=1))
        assert (
            client.command(f"SELECT count() FROM {old.name('clinical_stage_spans')}")
            == before.get("clinical_stage_spans", 0) + 1
        )
        assert schema.apply(client, old) == []
    finally:
        client.command(f"DROP DATABASE IF EXISTS {old.database}")


def test_tenant_readers_for_a_server_parse_and_isolate(tmp_path: Path, client: Any) -> None:
    """`schema show --tenant-readers`: every statement is one ClickHouse parses; each tenant's
    user logs in with its read token's digest, reads under readonly = 1 and a restrictive row
    policy on TenantId; tenants without a read token are refused."""
    tokens = tmp_path / "tokens.toml"
    runner = CliRunner()
    for tenant in ("st-marys", "general"):
        added = runner.invoke(cli, ["tokens", "add", "--file", str(tokens), "--tenant", tenant, "--role", "read"])
        assert added.exit_code == 0, added.output
    assert tokens.stat().st_mode & 0o777 == 0o600
    token = added.stdout.strip().splitlines()[-1]
    assert token not in tokens.read_text()
    result = runner.invoke(cli, ["schema", "show", "--tenant-readers", "st-marys,general", "--tokens", str(tokens)])
    assert result.exit_code == 0, result.output
    statements = [s.strip() for s in result.stdout.split(";\n") if s.strip() and not s.strip().startswith("--")]
    body = [s for s in result.stdout.split(";\n") if "CREATE" in s or "GRANT" in s]
    for statement in body:
        text = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip().rstrip(";")
        client.query(f"SELECT formatQuery(unhex('{text.encode().hex()}'))")  # raises on a syntax error
    assert statements
    import hashlib

    assert hashlib.sha256(token.encode()).hexdigest() in result.stdout
    assert "readonly = 1 CONST" in result.stdout
    assert "compile_expressions = 0" in result.stdout
    assert "compile_aggregate_expressions = 0" in result.stdout
    assert "optimize_and_compare_chain = 0" in result.stdout
    assert "USING `TenantId` = 'general' AS RESTRICTIVE TO `clinotel_read_general`" in result.stdout
    assert "GRANT SELECT ON system.processes" not in result.stdout
    missing = runner.invoke(cli, ["schema", "show", "--tenant-readers", "nobody", "--tokens", str(tokens)])
    assert missing.exit_code == 1
    assert "has no read token" in missing.output


def test_tokens_check_counts_each_tenants_tokens_by_role_and_shows_no_digest(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    runner = CliRunner()
    for tenant, role in (("*", "metrics"), ("st-marys", "write"), ("*", "read"), ("st-marys", "read"), ("a", "write")):
        added = runner.invoke(cli, ["tokens", "add", "--file", str(tokens), "--tenant", tenant, "--role", role])
        assert added.exit_code == 0, added.output
    checked = runner.invoke(cli, ["tokens", "check", str(tokens)])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.splitlines() == [
        f"{tokens}: 5 tokens, usable",
        "  a         1 write",
        "  st-marys  1 write, 1 read",
        "  *         1 read, 1 metrics (every tenant)",
    ]
    digests = re.findall(r'sha256 = "([0-9a-f]{64})"', tokens.read_text())
    assert len(digests) == 5
    assert not any(d in checked.output for d in digests)


def test_tokens_check_reports_a_readable_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    runner = CliRunner()
    assert runner.invoke(cli, ["tokens", "add", "--file", str(tokens), "--tenant", "a"]).exit_code == 0
    checked = runner.invoke(cli, ["tokens", "check", str(tokens)])
    assert checked.exit_code == 0
    assert checked.stdout.splitlines() == [f"{tokens}: 1 token, usable", "  a  1 write"]
    tokens.chmod(0o644)
    result = runner.invoke(cli, ["tokens", "check", str(tokens)])
    assert result.exit_code == 1
    assert "chmod 600" in result.output
    bad = runner.invoke(
        cli, ["tokens", "add", "--file", str(tmp_path / "t2.toml"), "--tenant", "x'\"", "--role", "read"]
    )
    assert bad.exit_code == 1
    assert "not a tenant name" in bad.output


@pytest.mark.parametrize(
    ("tenant", "role", "says"), [("a", "metrics", "its tenant is '*'"), ("*", "write", "read and metrics")]
)
def test_tokens_add_refuses_a_grant_before_writing_it(tmp_path: Path, tenant: str, role: str, says: str) -> None:
    """A grant `serve` would refuse is refused by `tokens add` with the file untouched: the entry
    was appended first, and from then on `serve --tokens` refused the whole file (a Go team's
    setup)."""
    tokens = tmp_path / "tokens.toml"
    runner = CliRunner()
    assert runner.invoke(cli, ["tokens", "add", "--file", str(tokens), "--tenant", "a"]).exit_code == 0
    before = tokens.read_bytes()
    refused = runner.invoke(cli, ["tokens", "add", "--file", str(tokens), "--tenant", tenant, "--role", role])
    assert refused.exit_code == 1
    assert says in refused.output
    assert tokens.read_bytes() == before
    assert runner.invoke(cli, ["tokens", "check", str(tokens)]).exit_code == 0


HALF_MIGRATED = r"""
import sys
from pathlib import Path
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import connect
client = connect(Path(sys.argv[1]))
o = schema.SchemaOptions()
schema.apply(client, o, until=20)
# what a kill -9 within migration 21 leaves: started, not recorded
client.command(f"INSERT INTO {o.name(schema.VERSIONS)} (Version, Description) VALUES (21, '{schema.STARTED}x')")
"""


def test_schema_status_says_the_stores_version_and_changes_nothing(tmp_path: Path) -> None:
    """`schema status` names the store's version, a migration left unfinished and what a start
    would apply, without migrating: before it, only `schema apply`, which migrates for good, told
    an operator deciding on a rollback what version a store was at (an upgrade review)."""
    import subprocess
    import sys

    data = str(tmp_path / "data")

    def run(*args: str, ok: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False
        )  # fmt: skip
        assert (done.returncode == 0) is ok, done.stderr
        return done.stdout + done.stderr

    assert "no clinotel store" in run("-m", "clinotel.cli", "schema", "status", "--data-dir", data, ok=False)
    run("-c", HALF_MIGRATED, data)
    said = run("-m", "clinotel.cli", "schema", "status", "--data-dir", data)
    assert said.startswith(f"store clinotel: schema version 21; this clinotel knows {schema.SCHEMA_VERSION}\n")
    assert "migration 21 started and not finished" in said
    assert f"applies migrations {', '.join(map(str, range(22, schema.SCHEMA_VERSION + 1)))};" in said
    assert run("-m", "clinotel.cli", "schema", "status", "--data-dir", data) == said  # nothing changed
    assert "applied migrations 21, 22" in run("-m", "clinotel.cli", "schema", "apply", "--data-dir", data)
    said = run("-m", "clinotel.cli", "schema", "status", "--data-dir", data)
    known = schema.SCHEMA_VERSION
    assert said == f"store clinotel: schema version {known}; this clinotel knows {known}\n"
