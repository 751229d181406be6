"""The `--http` port as a read-only ClickHouse: clickhouse-connect's ordinary HTTP client reads it,
answers carry ClickHouse's headers and errors, and a tenant's reader sees only its own rows and
can change nothing."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from clinotel.model import clinical
from collector.tests.fixtures import OPERATOR_TOKEN, OTHER_READ_TOKEN, OTHER_TOKEN, READ_TOKEN, WRITE_TOKEN
from collector.tests.otlp_clients import exchange, send_workflows


@pytest.fixture(scope="module")
def loaded(module_collector: Collector) -> Collector:
    """Ten triage workflows for st-marys and four for general, written and queryable, once for the
    module: its tests only read."""
    collector = module_collector
    assert collector.http is not None
    assert collector.writer is not None
    endpoint = f"http://127.0.0.1:{collector.http.port}"
    send_workflows(endpoint, "http/protobuf", 10, token=WRITE_TOKEN)
    send_workflows(endpoint, "http/protobuf", 4, token=OTHER_TOKEN)
    collector.writer.drain()
    return collector


def _get(
    c: Collector, sql: str | None = None, *, token: str | None = READ_TOKEN, body: bytes | None = None, **params: str
) -> tuple[int, dict[str, str], bytes]:
    assert c.admin is not None
    if sql is not None:
        params["query"] = sql
    url = f"http://127.0.0.1:{c.admin.port}/?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if token is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"reader:{token}".encode()).decode())
    return exchange(request)


@pytest.fixture
def reader(loaded: Collector) -> Iterator[object]:
    assert loaded.admin is not None
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=loaded.admin.port, username="reader", password=READ_TOKEN,
        database=loaded.options.database,
    )  # fmt: skip
    yield client
    client.close()


def test_clickhouse_connect_reads_through_the_http_port(reader: object, loaded: Collector) -> None:
    client = reader
    traces = loaded.options.name(schema.TRACES)
    result = client.query(  # type: ignore[attr-defined]
        f"SELECT SpanName, Timestamp, SpanAttributes, Events.Name FROM {traces} "
        "WHERE SpanName = {name:String} ORDER BY Timestamp LIMIT 3",
        parameters={"name": "workflow triage"},
    )
    assert len(result.result_rows) == 3
    name, ts, attrs, _events = result.result_rows[0]
    assert name == "workflow triage"
    assert ts.year >= 2024
    assert attrs["clinical.workflow.kind"] == "triage"
    assert client.command("SELECT count() FROM clinical_workflows") == 10  # type: ignore[attr-defined]


def test_a_tenant_reads_only_its_own_rows(loaded: Collector) -> None:
    db = loaded.options.database
    counts = {}
    for token in (READ_TOKEN, OTHER_READ_TOKEN, OPERATOR_TOKEN):
        status, _, body = _get(
            loaded,
            f"SELECT (SELECT groupUniqArray(TenantId) FROM otel_traces), (SELECT count() FROM {clinical.WORKFLOWS}), "
            f"(SELECT count() FROM {db}.{clinical.STAGE_SPANS} WHERE WorkflowKind = 'triage')",
            token=token,
            database=db,
            default_format="JSONCompact",
        )
        assert status == 200, body
        counts[token] = json.loads(body)["data"][0]
    assert counts[READ_TOKEN][:2] == [["st-marys"], 10]
    assert counts[OTHER_READ_TOKEN][:2] == [["general"], 4]
    assert sorted(counts[OPERATOR_TOKEN][0]) == ["general", "st-marys"]
    assert counts[OPERATOR_TOKEN][1] == 14


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT count() FROM otel_traces SETTINGS additional_table_filters = {}", 164),
        ("SELECT count() FROM merge(currentDatabase(), '^otel_traces$')", 497),
        ("SELECT count() FROM view(SELECT * FROM merge(currentDatabase(), 'otel'))", 497),
        ("SELECT count() FROM otel_traces_trace_id_ts", 497),
        ("SELECT 1 WHERE 'x' IN otel_traces_trace_id_ts", 497),
        ("SELECT * FROM system.processes", 497),
        ("SELECT dictGet('d', 'a', 1)", 497),
        ("SELECT joinGet('j', 'x', 1)", 497),
        ("SELECT file('/etc/hostname')", 497),
        ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", 497),
        ("SELECT count() FROM otel_traces; SELECT count() FROM otel_traces", 62),
        ("SELECT 1 INTO OUTFILE 'leak.txt'", 164),
        ("INSERT INTO otel_traces (SpanName) VALUES ('x')", 164),
        ("DROP TABLE otel_traces", 164),
        ("ALTER TABLE otel_traces DELETE WHERE 1", 164),
        ("CREATE TABLE x (a UInt8) ENGINE = Memory", 164),
        ("SET readonly = 0", 164),
        ("USE system", 164),
    ],
)
def test_a_reader_cannot_escape_its_tenant_or_write(loaded: Collector, sql: str, code: int, tmp_path: Path) -> None:
    before = loaded.client.command(f"SELECT count() FROM {loaded.options.name(schema.TRACES)}")
    status, headers, body = _get(loaded, sql, database=loaded.options.database)
    assert status in (400, 403), body
    assert headers["X-ClickHouse-Exception-Code"] == str(code), body
    assert body.startswith(f"Code: {code}. DB::Exception: ".encode())
    assert loaded.client.command(f"SELECT count() FROM {loaded.options.name(schema.TRACES)}") == before
    assert not Path("leak.txt").exists()


@pytest.mark.parametrize(
    ("params", "code"),
    [({"additional_table_filters": "{}"}, 164), ({"readonly": "0"}, 164), ({"max_threads; DROP": "1"}, 115)],
)
def test_settings_a_reader_may_not_change(loaded: Collector, params: dict[str, str], code: int) -> None:
    status, headers, _ = _get(loaded, "SELECT count() FROM otel_traces", database=loaded.options.database, **params)
    assert status in (400, 403)
    assert headers["X-ClickHouse-Exception-Code"] == str(code)


def test_answers_look_like_clickhouse(loaded: Collector) -> None:
    db = loaded.options.database
    status, headers, body = _get(loaded, "SELECT 1, 'a'")
    assert (status, body) == (200, b"1\ta\n")
    assert headers["Content-Type"] == "text/tab-separated-values; charset=UTF-8"
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Timezone"]
    assert json.loads(headers["X-ClickHouse-Summary"])["result_rows"] == "1"
    assert headers["X-ClickHouse-Query-Id"]

    # POST body, query parameters, the query's own FORMAT over default_format, query_id echoed
    status, headers, body = _get(
        loaded, body=b"SELECT {n:UInt8} + 1 AS two FORMAT JSONEachRow", param_n="1", default_format="CSV", query_id="q1"
    )
    assert (status, body) == (200, b'{"two":2}\n')
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Query-Id"] == "q1"

    # Grafana's driver sets max_execution_time on every query: allowed, capped by the server
    status, _, body = _get(loaded, "SELECT getSetting('max_execution_time')", max_execution_time="100000")
    assert (status, body) == (200, b"60\n")

    # no JIT: a compile in the query that triggers it costs a panel 100 ms; a reader cannot turn it on
    status, _, body = _get(
        loaded, "SELECT getSetting('compile_expressions'), getSetting('compile_aggregate_expressions'), "
        "getSetting('compile_sort_description')"
    )  # fmt: skip
    assert (status, body) == (200, b"false\tfalse\tfalse\n")
    status, headers, _ = _get(loaded, "SELECT 1", compile_expressions="1")
    assert status != 200
    assert headers["X-ClickHouse-Exception-Code"] != ""
    # the planner's settings (embedded.PLANNER_SETTINGS), and a reader cannot turn them back
    status, _, body = _get(loaded, "SELECT getSetting('optimize_and_compare_chain')")
    assert (status, body) == (200, b"false\n")
    status, headers, _ = _get(loaded, "SELECT 1", optimize_and_compare_chain="1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164")

    status, headers, body = _get(loaded, "SELECT count() FROM no_such_table", database=db)
    assert status == 404
    assert headers["X-ClickHouse-Exception-Code"] == "60"
    assert b"(UNKNOWN_TABLE) (version " in body
    status, headers, _ = _get(loaded, "SELEC 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")


def test_the_readers_planner_settings_keep_a_drill_downs_prewhere(loaded: Collector) -> None:
    """A filter on the span name reads that column first and the attributes only of the spans it
    keeps (PREWHERE), under the readers' settings (the read port refuses EXPLAIN: the engine's client
    with the same settings). `query_plan_merge_expressions = 0`, tried for the panels' planning, lost
    it: every attribute of every span in range read, 25 times as long at 10M spans."""
    from clinotel.collector.readport.reader import NO_JIT
    from clinotel.collector.store.embedded import PLANNER_SETTINGS

    sql = (
        f"EXPLAIN actions = 1 SELECT Timestamp, SpanAttributes['clinical.change.kind'] FROM "
        f"{loaded.options.name(schema.TRACES)} WHERE SpanName = 'clinotel.change' ORDER BY Timestamp"
    )
    plan = [row[0] for row in loaded.client.query(sql, settings={**NO_JIT, **PLANNER_SETTINGS}).result_rows]
    assert any("Prewhere filter column" in line and "SpanName" in line for line in plan), plan


def test_answers_are_compressed_when_the_client_asks_as_clickhouse_requires(loaded: Collector) -> None:
    assert loaded.admin is not None
    sql = "SELECT number, toString(number) FROM numbers(2000)"
    plain = _get(loaded, sql)[2]

    def fetch(accept: str, **params: str) -> tuple[dict[str, str], bytes]:
        url = f"http://127.0.0.1:{loaded.admin.port}/?{urllib.parse.urlencode({'query': sql, **params})}"
        request = urllib.request.Request(url, headers={"Accept-Encoding": accept, "X-ClickHouse-Key": READ_TOKEN})
        status, headers, body = exchange(request)
        assert status == 200
        return headers, body

    headers, body = fetch("gzip", enable_http_compression="1")
    assert headers["Content-Encoding"] == "gzip"
    assert len(body) < len(plain) / 2
    assert gzip.decompress(body) == plain
    headers, body = fetch("deflate, gzip;q=0", enable_http_compression="1", http_zlib_compression_level="9")
    assert headers["Content-Encoding"] == "deflate"
    assert zlib.decompress(body) == plain
    headers, body = fetch("gzip")  # the header alone is not enough: ClickHouse wants the setting too
    assert "Content-Encoding" not in headers
    assert body == plain
    headers, body = fetch("br", enable_http_compression="1")  # nothing we speak: plain
    assert "Content-Encoding" not in headers


def test_clickhouse_connect_with_compression_reads_through_the_http_port(loaded: Collector) -> None:
    assert loaded.admin is not None
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=loaded.admin.port, username="reader", password=READ_TOKEN, compress="gzip",
        database=loaded.options.database,
    )  # fmt: skip
    try:
        assert client.command("SELECT count() FROM clinical_workflows") == 10
        assert len(client.query("SELECT number FROM numbers(5000)").result_rows) == 5000
    finally:
        client.close()


def test_multipart_form_queries(loaded: Collector) -> None:
    boundary = "clinotel-boundary"
    parts = [("query", "SELECT {who:String} AS who"), ("param_who", "nurse")]
    body = (
        "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in parts)
        + f"--{boundary}--\r\n"
    )
    assert loaded.admin is not None
    request = urllib.request.Request(f"http://127.0.0.1:{loaded.admin.port}/", data=body.encode(), method="POST")
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    request.add_header("X-ClickHouse-User", "reader")
    request.add_header("X-ClickHouse-Key", READ_TOKEN)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.read() == b"nurse\n"


def test_reader_authentication(loaded: Collector) -> None:
    status, headers, body = _get(loaded, "SELECT 1", token=None)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (401, "194")
    assert headers["WWW-Authenticate"].startswith("Basic")
    status, headers, _ = _get(loaded, "SELECT 1", token="not-a-token-at-all-000000")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    status, headers, body = _get(loaded, "SELECT 1", token=WRITE_TOKEN)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "497")
    assert b"write token cannot read" in body
    # /ping needs no token, as on a ClickHouse server
    status, _, body = _get(loaded, None, token=None)
    assert (status, body) == (200, b"Ok.\n")
    assert loaded.admin is not None
    assert loaded.admin is not None
    with pytest.raises(DatabaseError):
        clickhouse_connect.get_client(host="127.0.0.1", port=loaded.admin.port, username="x", password="wrong")


def test_clinotel_query_reads_through_a_running_collector(loaded: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from clinotel.collector.cli import query

    assert loaded.admin is not None
    server = f"http://127.0.0.1:{loaded.admin.port}"
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", OTHER_READ_TOKEN)
    args = ["SELECT TenantId, count() AS n FROM otel_traces GROUP BY TenantId", "--server", server]
    result = CliRunner().invoke(query, [*args, "--database", loaded.options.database, "--format", "TSV"])
    assert result.exit_code == 0, result.output
    assert result.output == "general\t32\n"
    result = CliRunner().invoke(
        query, ["DROP TABLE otel_traces", "--server", server, "--database", loaded.options.database]
    )
    assert result.exit_code == 1
    assert "READONLY" in result.output or "readonly" in result.output


@pytest.mark.parametrize(
    ("sql", "answer"),
    [
        ("SELECT ';'", b";\n"),
        ("SELECT 1 -- ; DROP TABLE x", b"1\n"),
        ("SELECT 1 /* ; */", b"1\n"),
        ("SELECT `a;b` FROM (SELECT 1 AS `a;b`)", b"1\n"),
        ("SELECT 1;", b"1\n"),
        ("SELECT $$;$$", b";\n"),
    ],
)
def test_semicolons_in_strings_comments_and_at_the_end_are_one_statement(
    loaded: Collector, sql: str, answer: bytes
) -> None:
    status, _, body = _get(loaded, sql)
    assert (status, body) == (200, answer)


def test_concurrent_readers_each_see_their_own_tenant(loaded: Collector) -> None:
    from concurrent.futures import ThreadPoolExecutor

    db = loaded.options.database
    jobs = [READ_TOKEN, OTHER_READ_TOKEN] * 12

    def count(token: str) -> tuple[str, bytes]:
        status, _, body = _get(loaded, f"SELECT count() FROM {clinical.WORKFLOWS}", token=token, database=db)
        assert status == 200
        return token, body

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(count, jobs))
    assert {(t, b) for t, b in results} == {(READ_TOKEN, b"10\n"), (OTHER_READ_TOKEN, b"4\n")}
