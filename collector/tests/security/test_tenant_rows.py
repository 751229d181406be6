"""Classes 3 and 4: another tenant's rows are never read at all. The tenant filter prunes the
other tenants' parts (the tenant leads every partition key) before any reader expression is
evaluated, so no error, timing, counter or statistic depends on their rows."""

from __future__ import annotations

import json
import socket
import time

import pytest

from clinotel.collector.store import schema
from clinotel.model import clinical
from collector.tests.security.conftest import ATTACKER, MARKER, Arena, assert_refused, assert_reveals_nothing

TABLES = schema.tenant_tables()


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    "predicate",
    [
        "throwIf(TenantId != '{me}')",
        "throwIf(position(toString(tuple(*)), '{marker}') > 0)",
        "toUInt64(concat(TenantId, 'x')) = 1 OR 1",
        "toUInt64OrZero(TenantId) = 0 AND throwIf(TenantId = 'general')",
        "throwIf(TenantId = 'general') OR 1",
    ],
)
def test_reader_predicates_never_see_other_tenants_rows(arena: Arena, table: str, predicate: str) -> None:
    predicate = predicate.format(me=ATTACKER, marker=MARKER)
    for clause in ("WHERE", "PREWHERE"):
        answer = arena.ask(f"SELECT count() FROM {table} {clause} {predicate}", database=arena.options.database)
        assert_reveals_nothing(answer)
        if answer.status != 200:
            # an error may only come from the reader's own rows (its own tenant id)
            assert "general" not in answer.text(), answer.text()[:300]
            assert "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" not in answer.text() or "throwIf(TenantId != " in predicate


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT groupUniqArray(TenantId) FROM {table}",
        "SELECT groupUniqArray(TenantId) FROM {table} FINAL",
        "SELECT groupUniqArray(TenantId) FROM (SELECT TenantId, * FROM {table})",
        "WITH t AS (SELECT TenantId FROM {table}) SELECT groupUniqArray(TenantId) FROM t",
        "SELECT groupUniqArray(TenantId) FROM view(SELECT TenantId FROM {table})",
        "SELECT groupUniqArray(a.TenantId) FROM {table} AS a LEFT JOIN {table} AS b ON a.TenantId = b.TenantId",
        "SELECT groupUniqArray(TenantId) FROM {table} WHERE TenantId IN (SELECT TenantId FROM {table})",
        "SELECT (SELECT groupUniqArray(TenantId) FROM {table})",
        "SELECT groupUniqArray(TenantId) FROM (SELECT TenantId FROM {table} UNION ALL SELECT TenantId FROM {table})",
        "SELECT groupUniqArray(TenantId) FROM {table} WHERE TenantId = 'general' OR 1 = 1",
        "SELECT groupUniqArray(TenantId) FROM {table} ARRAY JOIN [1, 2] AS x",
    ],
)
def test_every_way_to_name_a_table_is_filtered(arena: Arena, sql: str) -> None:
    tables = (clinical.WORKFLOWS,) if "FINAL" in sql else (schema.TRACES, clinical.WORKFLOWS, schema.ALERT_EVENTS)
    for table in tables:
        answer = arena.ask(sql.format(table=table), database=arena.options.database, default_format="JSONCompact")
        assert answer.status == 200, answer.text()[:300]
        assert_reveals_nothing(answer)
        tenants = json.loads(answer.body)["data"][0][0]
        assert set(tenants) <= {ATTACKER}, (table, tenants)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT max(rowNumberInAllBlocks()) FROM otel_traces",
        "SELECT max(rowNumberInBlock()) FROM otel_traces",
        "SELECT blockNumber() FROM otel_traces",
        "SELECT blockSize() FROM otel_traces",
        "SELECT sleepEachRow(0.001) FROM otel_traces",
        "SELECT sleep(1)",
        "SELECT throwIf(1)",
        "SELECT _part FROM otel_traces",
        "SELECT _part_offset FROM otel_traces",
        "SELECT _partition_id FROM otel_traces",
        "SELECT _block_number FROM otel_traces",
        "SELECT _part_index FROM otel_traces",
        "SELECT `_part_uuid` FROM otel_traces",
        "SELECT _row_exists FROM otel_traces",
        "SELECT count() FROM otel_traces WHERE indexHint(TenantId = 'general')",
        "SELECT * APPLY(toString) FROM otel_traces",
        "SELECT lowCardinalityKeys(TenantId) FROM otel_traces",
        "SELECT hostName()",
        "SELECT getClientHTTPHeader('Authorization')",
        "SELECT currentUser()",
        "SELECT queryID()",
        "SELECT getServerSetting('path')",
        "SELECT getMacro('x')",
        "SELECT uptime()",
        "SELECT aggThrow(1)(number) FROM numbers(3)",
        "SELECT generateSerialID('x')",
        "SELECT globalVariable('x')",
    ],
)
def test_functions_and_columns_that_count_or_time_hidden_rows_are_refused(arena: Arena, sql: str) -> None:
    assert_refused(arena.ask(sql, database=arena.options.database), 497, 46, 48)


def _summary(arena: Arena, sql: str) -> dict[str, str]:
    answer = arena.ask(sql, database=arena.options.database)
    assert answer.status == 200, answer.text()[:300]
    return dict(json.loads(answer.headers["X-ClickHouse-Summary"]))


def test_statistics_do_not_move_when_another_tenant_writes(arena: Arena) -> None:
    """read_rows in X-ClickHouse-Summary counts the reader's rows only: the victim exports all
    through this test, and the attacker's figures stay put."""
    assert arena.collector.writer is not None
    sql = f"SELECT count(), sum(length(SpanName)) FROM {schema.TRACES}"
    first = _summary(arena, sql)
    arena.collector.writer.drain()
    time.sleep(0.3)
    arena.collector.writer.drain()
    second = _summary(arena, sql)
    assert first["read_rows"] == second["read_rows"]
    assert first["read_bytes"] == second["read_bytes"]
    assert int(first["read_rows"]) == arena.count(schema.TRACES, ATTACKER)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT total_rows FROM system.tables WHERE name = 'otel_traces'",
        "SELECT total_bytes FROM system.tables",
        "SELECT parts, active_parts FROM system.tables",
        "SELECT * FROM system.tables",
        "SELECT data_paths FROM system.tables",
        "SELECT metadata_path FROM system.tables",
        "SELECT t.total_rows FROM system.tables AS t",
        "SELECT name AS total_rows, total_rows FROM system.tables",
        "SELECT x FROM (SELECT total_rows AS x FROM system.tables)",
        "SELECT COLUMNS('total.*') FROM system.tables",
        "SELECT tables.* FROM system.tables",
        "SELECT data_compressed_bytes FROM system.columns",
        "SELECT * FROM system.columns",
        "SELECT data_path FROM system.databases",
        "SELECT engine_full FROM system.databases",
        "SELECT * FROM system.parts",
        "SELECT rows FROM system.parts",
        "SELECT * FROM system.parts_columns",
        "SELECT * FROM system.merges",
        "SELECT * FROM system.mutations",
        "SELECT * FROM system.query_log",
        "SELECT * FROM system.processes",
        "SELECT * FROM system.user_processes",
        "SELECT * FROM system.session_query_ids",
        "SELECT * FROM system.events",
        "SELECT * FROM system.metrics",
        "SELECT * FROM system.server_settings",
        "SELECT * FROM system.disks",
        "SELECT * FROM system.storage_policies",
        "SELECT * FROM system.detached_parts",
        "SELECT * FROM system.projection_parts",
        "SELECT * FROM system.data_skipping_indices",
        "SELECT * FROM system.query_cache",
        "SELECT * FROM system.schema_inference_cache",
        "SELECT * FROM system.stack_trace",
        "SELECT * FROM system.errors",
        "SELECT * FROM system.warnings",
        f"SELECT count() FROM {clinical.WORKFLOWS} SETTINGS max_rows_to_read = 1",
    ],
)
def test_statistics_over_every_tenant_are_refused(arena: Arena, sql: str) -> None:
    assert_refused(arena.ask(sql, database=arena.options.database), 497, 164)


def test_schema_description_is_readable(arena: Arena) -> None:
    db = arena.options.database
    answer = arena.ask(
        f"SELECT name, engine FROM system.tables WHERE database = '{db}' AND name = 'otel_traces'", default_format="TSV"
    )
    assert (answer.status, answer.body) == (200, b"otel_traces\tMergeTree\n")
    answer = arena.ask(f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'otel_traces'")
    assert answer.status == 200
    assert b"TenantId\tLowCardinality(String)" in answer.body
    for sql in ("SHOW TABLES", "SHOW DATABASES", "DESCRIBE TABLE otel_traces", "EXISTS TABLE clinical_workflows"):
        answer = arena.ask(sql, database=db)
        assert answer.status == 200, (sql, answer.text()[:200])
        assert_reveals_nothing(answer)


def test_the_display_name_clients_ask_for_is_not_the_hosts(arena: Arena) -> None:
    """clickhouse-go asks for displayName() when it connects: the reader gets a constant under the
    column name it asked for, never the machine's host name."""
    answer = arena.ask(
        "SELECT displayName(), upper(displayName()) AS d FORMAT TSVWithNames", database=arena.options.database
    )
    assert answer.status == 200, answer.text()[:300]
    header, values = answer.text().strip().split("\n")
    assert header.split("\t") == ["displayName()", "d"]
    assert values.split("\t") == ["clinotel", "CLINOTEL"]
    assert socket.gethostname() not in answer.text()
