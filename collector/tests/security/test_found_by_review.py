"""Attacks found by a review of the read port that got through when they were written: each test
fails on the code it was written against and passes once the hole is closed."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse

import pytest

from collector.tests.fixtures import OTHER_READ_TOKEN, OTHER_TOKEN, READ_TOKEN
from collector.tests.otlp_clients import send_workflows
from collector.tests.security.conftest import STALL_TIMEOUT_S, VICTIM, Arena, assert_refused


@pytest.fixture(scope="module")
def victim_workflows(arena: Arena) -> None:
    """The victim's clinical workflows (stage spans, workflow rows) next to the attacker's."""
    assert arena.collector.http is not None
    assert arena.collector.writer is not None
    send_workflows(f"http://127.0.0.1:{arena.collector.http.port}", "http/protobuf", 2, token=OTHER_TOKEN)
    arena.collector.writer.drain()


_VIEWS = ("clinical_workflows_mv", "clinical_stage_spans_mv", "clinotel_sdk_telemetry_mv")
_CTE_SHAPES = [
    "SELECT {cols} FROM (WITH {t} AS (SELECT 1) SELECT 1) AS a, {t}",
    "WITH {t} AS (SELECT * FROM {t}) SELECT {cols} FROM {t}",
    "SELECT {cols} FROM {t} UNION ALL (WITH {t} AS (SELECT 1 AS TenantId) SELECT TenantId FROM {t})",
    "SELECT {cols} FROM {t} WHERE 1 IN (WITH {t} AS (SELECT 1) SELECT 1)",
]


@pytest.mark.parametrize("shape", _CTE_SHAPES)
@pytest.mark.parametrize("view", _VIEWS)
def test_a_cte_name_does_not_unlock_the_table_of_that_name(
    arena: Arena, victim_workflows: None, shape: str, view: str
) -> None:
    """Every tenant's rows through a materialized view: a CTE name anywhere (a subquery, its own body)
    is taken for the whole statement, and the view reads its target with no tenant filter."""
    answer = arena.ask(shape.format(t=view, cols="TenantId"), database=arena.options.database, default_format="TSV")
    assert VICTIM not in answer.text(), answer.text()[:300]
    assert_refused(answer, 497)


@pytest.mark.parametrize(
    ("database", "table", "cols"),
    [
        ("system", "parts", "partition, rows"),
        ("system", "processes", "query"),
        ("system", "tables", "name, total_rows"),
        ("INFORMATION_SCHEMA", "TABLES", "table_name, table_rows"),
        (None, "otel_traces_trace_id_ts", "TraceId, Start"),
    ],
)
def test_a_cte_name_does_not_unlock_system_tables(arena: Arena, database: str | None, table: str, cols: str) -> None:
    """Other tenants' partitions, row counts, queries and trace ids: the same CTE trick with the
    `database` parameter names any system table (parts, processes, …) without its database."""
    sql = f"SELECT {cols} FROM (WITH {table} AS (SELECT 1) SELECT 1) AS a, {table}"
    answer = arena.ask(sql, database=database or arena.options.database, default_format="TSV")
    assert VICTIM not in answer.text(), answer.text()[:300]
    assert_refused(answer, 497)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT _part FROM otel_traces, (SELECT 1 AS _part) AS z",
        "SELECT _part, _block_number FROM otel_traces AS _part, (SELECT 1 AS _block_number) AS z",
        "SELECT _partition_id FROM otel_traces WHERE 1 IN (SELECT 1 AS _partition_id)",
    ],
)
def test_an_alias_does_not_unlock_virtual_columns(arena: Arena, sql: str) -> None:
    """`_part`/`_block_number` carry the table's global block numbers (every tenant's insert count):
    an alias of that name anywhere in the statement lets the real virtual column through."""
    assert_refused(arena.ask(sql, database=arena.options.database), 497)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT arrayReduce('aggThrow', [1])",
        "SELECT initializeAggregation('aggThrow', 1)",
        "SELECT arrayReduceInRanges('aggThrow', [(1, 1)], [1])",
        "SELECT arrayReduce('stochasticLinearRegression', [1.], [2.])",
    ],
)
def test_aggregate_functions_named_in_a_string_obey_the_allowlist(arena: Arena, sql: str) -> None:
    """Any aggregate function, reviewed or not (aggThrow, one an upgrade adds), by its name as a string."""
    assert_refused(arena.ask(sql), 497, 46)


def test_a_deeply_nested_query_gets_an_answer(arena: Arena) -> None:
    """A query the engine parses but whose JSON tree is deeper than Python's recursion limit: the
    handler dies with a traceback and the connection closes without an answer."""
    answer = arena.ask(body=("SELECT " + "[" * 900 + "1" + "]" * 900).encode())
    assert_refused(answer)


def test_one_tenants_parses_do_not_stall_another_tenants_reads(arena: Arena) -> None:
    """Every query of every tenant is parsed under one lock, before any per-tenant slot is taken:
    a few large queries from one tenant hold another tenant's `SELECT 1` for tens of seconds."""
    heavy = ("SELECT " + ",".join(["x"] * 300_000)).encode()
    threads = [threading.Thread(target=arena.ask, kwargs={"body": heavy}) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    answer = arena.ask("SELECT 1", token=OTHER_READ_TOKEN)
    waited = time.monotonic() - started
    for t in threads:
        t.join(timeout=120)
    assert answer.status == 200
    assert waited < 3, f"general's SELECT 1 waited {waited:.1f} s behind st-marys' parses"


@pytest.mark.timeout(90)
def test_a_stalled_request_is_not_held_forever(arena: Arena) -> None:
    """Without a token: the read port reads a body before the token and never gives up on one that
    stalls, so each such request keeps a thread and a descriptor for good (the process's limits)."""
    assert arena.collector.admin is not None
    assert arena.collector.http is not None
    stalled = []
    for port, path in ((arena.collector.admin.port, "/"), (arena.collector.http.port, "/v1/traces")):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nSEL".encode())
        stalled.append((path, s))
    deadline = time.monotonic() + STALL_TIMEOUT_S + 10  # the product's default is 30 s, as ClickHouse's
    held = []
    for path, s in stalled:
        with s:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                s.recv(4096)
            except TimeoutError:
                held.append(path)
    assert not held, f"requests stalled past the timeout are still held on {held}"


@pytest.mark.parametrize("token", [None, READ_TOKEN], ids=["no-token", "read-token"])
def test_query_id_cannot_inject_response_headers(arena: Arena, token: str | None) -> None:
    """Response splitting, no token needed: `query_id` is echoed in X-ClickHouse-Query-Id with its CR/LF,
    so a crafted link sets cookies, forges X-ClickHouse-* headers or a second response on the connection."""
    assert arena.collector.admin is not None
    injected = urllib.parse.quote("x\r\nSet-Cookie: pwn=1\r\nX-ClickHouse-Exception-Code: 0")
    head = f"GET /?query=SELECT%201&query_id={injected} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if token is not None:
        head += f"X-ClickHouse-Key: {token}\r\n"
    with socket.create_connection(("127.0.0.1", arena.collector.admin.port), timeout=10) as s:
        s.sendall((head + "\r\n").encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    headers = reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert not any(h.lower().startswith(b"set-cookie") for h in headers), headers
    assert sum(h.lower().startswith(b"x-clickhouse-exception-code") for h in headers) <= 1, headers


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT inIgnoreSet(1, otel_traces)",
        "SELECT globalNotNullInIgnoreSet(1, clinical_workflows)",
        "SELECT 1 FROM otel_traces WHERE notInIgnoreSet(TenantId, otel_traces)",
        "SELECT nullInIgnoreSet(1, otel_traces)",
    ],
)
def test_the_ignore_set_forms_of_in_are_refused_over_a_table_name_too(arena: Arena, sql: str) -> None:
    """`inIgnoreSet(x, table)` has the engine resolve the table as `x IN table` does: refused alike
    (it answered a constant, so nothing leaked; 2026-12-07 review)."""
    assert_refused(arena.ask(sql, database=arena.options.database), 497)
