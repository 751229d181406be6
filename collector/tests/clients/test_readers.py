"""The reader side of the client matrix: clickhouse-connect, @clickhouse/client, curl and a Native
client of protocol revision 54460 (clickhouse-go's, so Grafana's plugin's) read the read port, each
seeing only its token's tenant; and the URL parameters the real clients send are the ones
docs/compatibility.md lists (the read guard must keep accepting them)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import pytest

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from clinotel.model.tables import WORKFLOWS
from collector.tests.clients.conftest import missing, run_node
from collector.tests.clients.native_decoder import decode, rows
from collector.tests.fixtures import OPERATOR_TOKEN, OTHER_TOKEN, READ_TOKEN, WRITE_TOKEN
from collector.tests.otlp_clients import send_workflows

SPANS_PER_WORKFLOW = 8
# What each client sends (docs/compatibility.md): URL parameters beyond settings of its user's own.
CLICKHOUSE_CONNECT_PARAMS = {"query", "database", "default_format", "query_id", "client_protocol_version",
                             "date_time_input_format", "cast_string_to_dynamic_use_inference",
                             "enable_http_compression", "wait_end_of_query", "session_id"}  # fmt: skip
CLICKHOUSE_JS_PARAMS = {"query_id", "database", "enable_http_compression"}


@pytest.fixture(scope="module")
def loaded(module_collector: Collector) -> Collector:
    """Three triage workflows for st-marys and two for general, once for the module: its tests only read."""
    collector = module_collector
    assert collector.http is not None
    assert collector.writer is not None
    endpoint = f"http://127.0.0.1:{collector.http.port}"
    send_workflows(endpoint, "http/protobuf", 3, token=WRITE_TOKEN)
    send_workflows(endpoint, "http/protobuf", 2, token=OTHER_TOKEN)
    collector.writer.drain()
    return collector


@pytest.fixture
def requests_seen() -> Iterator[list[str]]:
    """The request lines the read port logs, as they arrive."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("http "):
                lines.append(text)

    logger = logging.getLogger("clinotel.collector")
    handler, level = Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _params(lines: list[str]) -> set[str]:
    names: set[str] = set()
    for line in lines:
        parts = line.split('"')
        if len(parts) > 1 and " " in parts[1]:
            target = parts[1].split(" ")[1]
            names |= {k for k, _ in urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query, keep_blank_values=True)}
    return names


def _port(c: Collector) -> int:
    assert c.admin is not None
    return c.admin.port


def test_clickhouse_connect_reads_native_at_its_protocol_revision(loaded: Collector, requests_seen: list[str]) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=_port(loaded), username="reader", password=READ_TOKEN, database=loaded.options.database
    )
    try:
        assert client.protocol_version == 54405, "the probe saw a server that honours client_protocol_version"
        traces = loaded.options.name(schema.TRACES)
        result = client.query(f"SELECT TenantId, StatusCode, SpanAttributes, Events.Name FROM {traces}")
        assert {r[0] for r in result.result_rows} == {"st-marys"}
        assert len(result.result_rows) == 3 * SPANS_PER_WORKFLOW
        assert any(r[2].get("clinical.workflow.kind") == "triage" for r in result.result_rows)
    finally:
        client.close()
    sent = _params(requests_seen)
    assert "client_protocol_version" in sent
    assert sent <= CLICKHOUSE_CONNECT_PARAMS, sent - CLICKHOUSE_CONNECT_PARAMS


def test_clickhouse_js_reads_with_a_chunked_query(
    loaded: Collector, node_clients: Any, requests_seen: list[str]
) -> None:
    traces = loaded.options.name(schema.TRACES)
    sql = f"SELECT TenantId, count() AS n FROM {traces} GROUP BY TenantId"
    out = run_node(
        node_clients,
        "query.mjs",
        f"http://127.0.0.1:{_port(loaded)}",
        loaded.options.database,
        sql,
        env={"CLICKHOUSE_PASSWORD": READ_TOKEN},
    )
    assert [(r["TenantId"], int(r["n"])) for r in json.loads(out)] == [("st-marys", 3 * SPANS_PER_WORKFLOW)]
    sent = _params(requests_seen)
    assert sent <= CLICKHOUSE_JS_PARAMS, sent - CLICKHOUSE_JS_PARAMS


def _curl(c: Collector, sql: str, *args: str, **params: str) -> bytes:
    curl = shutil.which("curl")
    if curl is None:
        missing("curl")
    url = f"http://127.0.0.1:{_port(c)}/?{urllib.parse.urlencode({'database': c.options.database, **params})}"
    command = [str(curl), "-sS", "--fail-with-body", "-u", f"reader:{READ_TOKEN}", "--data-binary", "@-", *args, url]
    done = subprocess.run(command, input=sql.encode(), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, (done.stdout[-500:], done.stderr[-500:])
    return done.stdout


@pytest.mark.parametrize("chunked", [False, True])
def test_curl_reads_with_and_without_chunking(loaded: Collector, chunked: bool) -> None:
    headers = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    traces = loaded.options.name(schema.TRACES)
    out = _curl(loaded, f"SELECT TenantId, count() FROM {traces} GROUP BY TenantId FORMAT TSV", *headers)
    assert out == f"st-marys\t{3 * SPANS_PER_WORKFLOW}\n".encode()


def test_a_native_client_of_revision_54460_reads_what_grafanas_plugin_reads(loaded: Collector) -> None:
    """clickhouse-go v2.47 over HTTP, as Grafana's ClickHouse plugin 4.20 drives it: its hello query,
    its ping, then a panel query; decoded as that client decodes (block info, serialization byte)."""
    params = {"default_format": "Native", "client_protocol_version": "54460"}
    hello = decode(_curl(loaded, "SELECT displayName(), version(), revision(), timezone()", **params), 54460)
    assert len(rows(hello)) == 1
    ping = decode(_curl(loaded, "SELECT 1", **params), 54460)
    assert [c.name for c in ping[0].columns] == ["1"]
    traces = loaded.options.name(schema.TRACES)
    sql = (
        f"SELECT Timestamp, TenantId, ServiceName, SpanAttributes, Duration, Events.Timestamp FROM {traces} "
        "ORDER BY Timestamp, SpanId"
    )
    blocks = decode(_curl(loaded, sql, **params), 54460)
    types = {c.name: c.type for c in blocks[0].columns}
    assert types["Timestamp"] == "DateTime64(9)"
    assert types["TenantId"] == "LowCardinality(String)"
    assert types["SpanAttributes"] == "Map(LowCardinality(String), String)"
    got = rows(blocks)
    assert {r[1] for r in got} == {b"st-marys"}
    reference = json.loads(_curl(loaded, sql + " FORMAT JSONCompact"))["data"]
    assert len(got) == len(reference) == 3 * SPANS_PER_WORKFLOW
    for native_row, json_row in zip(got, reference, strict=True):
        assert native_row[2].decode() == json_row[2]
        assert {k.decode(): v.decode() for k, v in native_row[3]} == json_row[3]
        assert native_row[4] == int(json_row[4])


_REVIEW_SQL = (
    "SELECT TraceId, ReviewAction, ReviewActorRole, ReviewFinalValue, OutcomeLabel, AdverseEvent "
    "FROM {workflows} FINAL ORDER BY TraceId"
)
"""The review and truth as every reader reads them: ALIAS columns over the latest-recorded tuples
(migration 18), which a client meets only by name (never in `SELECT *`)."""


def test_clickhouse_js_and_grafanas_native_client_read_the_latest_truth_columns(
    loaded: Collector, node_clients: Any
) -> None:
    """@clickhouse/client and a Native client of revision 54460 read the workflows view's review
    and truth (ALIAS columns) as declared: the types, the values, one tenant's rows."""
    sql = _REVIEW_SQL.format(workflows=loaded.options.name(WORKFLOWS))
    out = run_node(
        node_clients, "query.mjs", f"http://127.0.0.1:{_port(loaded)}", loaded.options.database, sql,
        env={"CLICKHOUSE_PASSWORD": READ_TOKEN},
    )  # fmt: skip
    js = [tuple(r.values()) for r in json.loads(out)]
    assert len(js) == 3
    assert {r[1:] for r in js} == {("override", "nurse", "ESI-2", "", None)}, "the test workflows' review"
    blocks = decode(_curl(loaded, sql, default_format="Native", client_protocol_version="54460"), 54460)
    types = {c.name: c.type for c in blocks[0].columns}
    assert types["ReviewAction"] == "LowCardinality(String)"
    assert types["OutcomeLabel"] == "String"
    assert types["AdverseEvent"] == "Nullable(UInt8)"
    native = [(r[0].decode(), r[1].decode(), r[2].decode(), r[3].decode(), r[4].decode(), r[5]) for r in rows(blocks)]
    assert native == js


def test_grafanas_trace_view_finds_no_lookup_table_it_may_not_read(loaded: Collector) -> None:
    """Grafana's plugin (4.19+) lists the database's tables (`SHOW TABLES FROM "db"`), and when
    `otel_traces_trace_id_ts` is there with `TraceId`, `Start` and `End` (its `DESC`), bounds the
    trace-by-ID query with it. The table has no `TenantId`, so readers are refused it, and the
    catalog listed it: the trace view failed. A reader's catalog now lists only what it may read,
    so the plugin queries `otel_traces` directly."""
    db = loaded.options.database
    listed = _curl(loaded, f'SHOW TABLES FROM "{db}" FORMAT TSV').decode().split()
    assert schema.TRACE_ID_TS not in listed
    assert schema.TRACES in listed
    columns = _curl(loaded, f"SELECT DISTINCT table FROM system.columns WHERE database = '{db}' FORMAT TSV")
    assert set(columns.decode().split()) == set(listed)
    # the trace-by-ID query without the lookup (what the plugin sends when the table is absent)
    trace = _curl(loaded, f"SELECT TraceId FROM {db}.{schema.TRACES} LIMIT 1 FORMAT TSV").decode().strip()
    spans = _curl(
        loaded,
        f"SELECT SpanId, ParentSpanId, ServiceName, SpanName, Duration FROM {db}.{schema.TRACES} "
        f"WHERE TraceId = '{trace}' FORMAT TSV",
    )
    assert len(spans.decode().splitlines()) == SPANS_PER_WORKFLOW
    # the operator's reader (a shared Grafana) is refused the lookup table too: its catalog hides it
    operator = clickhouse_connect.get_client(
        host="127.0.0.1", port=_port(loaded), username="reader", password=OPERATOR_TOKEN, database=db
    )
    try:
        shown = {r[0] for r in operator.query(f"SHOW TABLES FROM {db}").result_rows}
        assert schema.TRACE_ID_TS not in shown
        assert schema.TRACES in shown
    finally:
        operator.close()


def test_compress_1_is_refused_rather_than_answered_unframed(loaded: Collector) -> None:
    curl = shutil.which("curl")
    if curl is None:
        missing("curl")
    url = f"http://127.0.0.1:{_port(loaded)}/?compress=1&default_format=Native&client_protocol_version=54460"
    done = subprocess.run(
        [str(curl), "-sS", "-i", "-u", f"reader:{READ_TOKEN}", "--data-binary", "SELECT 1", url],
        capture_output=True,
        timeout=60,
        check=False,
    )
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert b"X-ClickHouse-Exception-Code: 48" in head, head
    assert head.startswith(b"HTTP/1.1 5")
    assert b"compress=1" in body


def test_every_panel_runs_through_the_read_port_with_a_read_token(loaded: Collector) -> None:
    """Grafana's plugin reads through the read port, whose guard allows the functions, combinators
    and settings it knows: every panel and variable of every dashboard, its macros expanded, runs
    there as the tenant's reader (the rollups refreshed first), none refused. The demo checks the
    panels on the engine itself, past the guard: a function the guard does not know (the rollups'
    `quantileOrNullArrayIf`, say) would fail only in Grafana."""
    from datetime import UTC, datetime, timedelta

    from clinotel.collector.store import rollups as refresher
    from clinotel.dashboards import build_all
    from clinotel.dashboards.check import panel_queries, run
    from clinotel.dashboards.macros import TimeRange

    refresher.refresh(loaded.client, loaded.options)
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=_port(loaded), username="reader", password=READ_TOKEN, database=loaded.options.database
    )
    try:
        now = datetime.now(UTC)
        queries = list(panel_queries(build_all(loaded.options.database)))
        results = list(run(client, queries, TimeRange(now - timedelta(days=2), now + timedelta(minutes=1))))
    finally:
        client.close()
    failed = [f"{r.query.dashboard} / {r.query.panel}: {r.error}" for r in results if r.error]
    assert len(results) > 100
    assert not failed, failed[:5]
