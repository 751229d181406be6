"""Bounds of the read port found by an attacker review: what one request may cost the collector's
own Python process, and what a request without credentials may cost anyone.

- A LowCardinality column written in full for an old protocol revision (before 54405) costs
  bytes per row of the answer, not a Python object per row, and at most a cap in all.
- A POST is authorised from its request line and headers before a byte of its body is read: a
  request without credentials is answered 401 at once, however slowly its body comes, and a
  multipart body is never parsed for it. The whole body has a deadline, not only each read.
- A multipart/form-data body is parsed within bounds (depth, parts, header bytes, parameters).
- A query parameter meets the checks a literal in its place would: its value cannot name an
  aggregate function readers may not run once it becomes a type.

Each test but the ones that check what still works failed on the code before these bounds."""

from __future__ import annotations

import base64
import socket
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from clinotel.collector.readport import native
from clinotel.collector.readport.http import ClickHouseHttpServer, Credentials, ReaderAccess
from clinotel.collector.readport.reader import ClickHouseError
from collector.tests.fixtures import READ_TOKEN
from collector.tests.security.conftest import STALL_TIMEOUT_S, Arena, assert_refused

# -- LowCardinality in full for an old client ----------------------------------------------------

LC_ROWS = 1_000_000
OLD_REVISION = 54300
"""Older than LowCardinality in Native (54405): its columns are sent in full."""


def _engine(client: Any, sql: str) -> bytes:
    return bytes(
        client.raw_query(
            sql, fmt="Native", settings={native.BINARY_TYPES_SETTING: 1, "allow_suspicious_low_cardinality_types": 1}
        )
    )


@pytest.mark.parametrize(
    ("expression", "row_bytes"),
    [
        ("toLowCardinality(toString(number % 2))", 2),  # the review's query: 1-byte strings
        ("CAST(if(number % 3 = 0, NULL, toString(number % 7)) AS LowCardinality(Nullable(String)))", 3),
        ("CAST(number % 300 AS LowCardinality(UInt64))", 8),
    ],
)
def test_low_cardinality_in_full_costs_bytes_per_row_not_objects(client: Any, expression: str, row_bytes: int) -> None:
    """Was ~90 bytes of Python objects per row (two list slots and a memoryview each): 30 M rows
    grew the collector by 2.7 GB. Now the peak of Python allocations is the answer, about twice
    (the granules' values and the joined answer), whatever the row count."""
    body = _engine(client, f"SELECT {expression} AS x FROM numbers({LC_ROWS})")
    tracemalloc.start()
    try:
        out = native.for_client(body, OLD_REVISION)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 2 * LC_ROWS <= len(out) <= LC_ROWS * row_bytes + 4096
    assert peak <= 2 * len(out) + (4 << 20), f"{peak / LC_ROWS:.1f} bytes a row for {len(out) / LC_ROWS:.1f} sent"


def test_low_cardinality_in_full_is_capped(client: Any) -> None:
    """A column of long strings with one-byte indexes grows by the strings' length a row, outside
    every engine cap: past `max_bytes` the answer is TOO_MANY_ROWS_OR_BYTES, before it is built."""
    body = _engine(client, "SELECT toLowCardinality(repeat(toString(number % 2), 1000)) AS x FROM numbers(100000)")
    assert len(body) < 200_000  # the engine's answer is small; in full it would be 100 MB
    tracemalloc.start()
    try:
        with pytest.raises(ClickHouseError) as refused:
            native.for_client(body, OLD_REVISION, max_bytes=10 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (refused.value.code, refused.value.name) == (396, "TOO_MANY_ROWS_OR_BYTES")
    assert peak < 16 << 20
    assert native.for_client(body, native.REVISION_LOW_CARDINALITY) != b""  # kept as LowCardinality: no growth


def test_an_old_client_reads_low_cardinality_through_the_port(arena: Arena) -> None:
    answer = arena.ask(
        "SELECT toLowCardinality(toString(number % 2)) AS x FROM numbers(200000) FORMAT Native",
        client_protocol_version=str(OLD_REVISION),
    )
    assert answer.status == 200, answer.text()[:300]
    # block info (4 bytes), columns and rows, name, type name, then 2 bytes a row
    assert answer.body.count(b"\x06String") >= 1
    assert len(answer.body) >= 200000 * 2


def _needed(body: bytes, revision: int) -> int:
    """The least budget `for_client` writes `body` within (found by halving)."""
    low, high = 0, native.MAX_WALKED_VALUES * 4
    while low < high:
        mid = (low + high) // 2
        try:
            native.for_client(body, revision, max_values=mid)
        except ClickHouseError as e:
            if e.code != 396:
                raise
            low = mid + 1
        else:
            high = mid
    return low


_TUPLE_300 = "tuple(" + ", ".join(["toUInt8(1)"] * 300) + ")"


@pytest.mark.parametrize(
    ("sql", "revision", "least", "most"),
    [
        # a String value each, a block and its column
        ("SELECT '' AS s FROM numbers(30000)", 54460, 30000, 30000 + 300),
        # inside composites too, and the composite type's nodes and bytes once
        ("SELECT ('', [''], toNullable('')) AS t FROM numbers(10000)", 54460, 30000 + 500, 30000 + 1500),
        # a key each (the default one too, each weighs more) and each row written out in full
        ("SELECT toLowCardinality(toString(number)) AS x FROM numbers(2000)", OLD_REVISION, 2001 * 17 + 2000, 40000),
        # one-row blocks of twenty columns: no String, but each block's columns
        (
            "SELECT " + ", ".join(f"toUInt8(1) AS c{i}" for i in range(20)) + " FROM numbers(50) "
            "SETTINGS max_block_size = 1",
            54460,
            50 * 21 * native._COLUMN_WEIGHT,
            50 * 21 * native._COLUMN_WEIGHT + 20 * 100,
        ),
        # one-row blocks of a tuple of 300: its type read, named and counted once, not in each block
        (f"SELECT {_TUPLE_300} AS t FROM numbers(20) SETTINGS max_block_size = 1", 54460, 300 * 100, 45000),
    ],
)
def test_values_walked_one_by_one_are_counted_against_a_budget(
    client: Any, sql: str, revision: int, least: int, most: int
) -> None:
    """The rewrite reads every String value, and every block's columns (and writes out every
    dictionary key and row for a client before LowCardinality), in Python, holding the
    interpreter the receivers share: 50 M empty strings took 4.2 s of it, 100,000 one-row blocks
    of 20 columns 12 s, a 1,000-tuple in one-row blocks 14 s (2026-12-07 reviews). Past
    `max_values` the answer is refused; below it, written."""
    body = _engine(client, sql)
    needed = _needed(body, revision)
    assert least <= needed <= most, needed
    assert native.for_client(body, revision, max_values=needed) != b""
    assert native.for_client(body, 0, max_values=0) == body  # revision 0: passed on, nothing walked


def test_a_large_type_repeated_in_every_block_is_read_once(client: Any) -> None:
    """An Enum16 of 15,000 labels in one-row blocks took 41 ms a block, the budget counting its
    two nodes (fourth review): a new type's bytes count, and a type the previous block had is
    taken as it was (were it counted again in each of the 200 blocks, the answer would be refused)."""
    labels = ", ".join(f"'l{i}' = {i}" for i in range(15000))
    body = _engine(client, f"SELECT CAST(0 AS Enum16({labels})) AS c FROM numbers(200) SETTINGS max_block_size = 1")
    needed = _needed(body, 54460)
    assert 15000 * 6 * native._TYPE_BYTE_WEIGHT <= needed < native.MAX_WALKED_VALUES // 4, needed
    shown = native.for_client(body, 54460)
    assert shown.count(b"Enum16(") == 200, "every block names its column's type"
    # and what the names add to the engine's answer counts against its bytes: 2,000 such blocks
    # grew to 472 MiB (the engine's answer within its 128 MiB)
    with pytest.raises(ClickHouseError) as refused:
        native.for_client(body * 10, 54460, max_bytes=64 << 20)
    assert refused.value.code == 396


def test_an_answer_past_the_values_budget_is_refused_through_the_port(arena: Arena) -> None:
    """Grafana's client (54460) asking for more string values than the budget: a clear refusal
    that names the ways out, and the port answers the next query."""
    answer = arena.ask(
        f"SELECT '' AS s FROM numbers({native.MAX_WALKED_VALUES + 1})",
        client_protocol_version="54460",
        default_format="Native",
    )
    assert_refused(answer, 396)
    assert "client_protocol_version=0" in answer.text()
    assert arena.ask("SELECT 1", client_protocol_version="54460", default_format="Native").status == 200


# -- a body is read only for a request that may be answered -------------------------------------


def _raw(port: int, head: str, body: bytes = b"", *, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head.encode("latin-1") + b"\r\n" + body)
    return s


def _answer(s: socket.socket) -> bytes:
    """What the server sent before it closed (or until the socket's timeout), never an exception."""
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except OSError:
        pass
    return got


def _port(arena: Arena) -> int:
    assert arena.collector.admin is not None
    return arena.collector.admin.port


def _post_head(extra: str = "", length: int = 1000, path: str = "/", ctype: str = "text/plain") -> str:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n{extra}"


def test_a_post_without_credentials_is_answered_before_its_body(arena: Arena) -> None:
    """Was: the body was read first (a byte every 20 s held the connection for good, 1,030 such
    connections answered every tenant and /ping 503)."""
    s = _raw(_port(arena), _post_head(), b"S")  # 999 bytes still due, never sent
    started = time.monotonic()
    s.settimeout(STALL_TIMEOUT_S - 1)
    got = _answer(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 401 "), got[:200]
    assert b"X-ClickHouse-Exception-Code: 194" in got
    assert time.monotonic() - started < STALL_TIMEOUT_S - 1


@pytest.mark.parametrize(
    ("extra", "query"),
    [
        ("X-ClickHouse-Key: not-a-token-at-all-000000\r\n", ""),
        ("Authorization: Basic " + base64.b64encode(b"reader:not-a-token-at-all-000000").decode() + "\r\n", ""),
        ("Authorization: Bearer not-a-token-at-all-000000\r\n", ""),
        ("", "?user=reader&password=not-a-token-at-all-000000"),
    ],
)
def test_a_post_with_a_wrong_token_is_refused_before_its_body(arena: Arena, extra: str, query: str) -> None:
    s = _raw(_port(arena), _post_head(extra, path=f"/{query}"), b"S")
    s.settimeout(STALL_TIMEOUT_S - 1)
    got = _answer(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 403 "), got[:200]
    assert b"X-ClickHouse-Exception-Code: 516" in got


@pytest.mark.parametrize(
    ("extra", "query"),
    [
        (f"X-ClickHouse-Key: {READ_TOKEN}\r\n", ""),
        (f"X-ClickHouse-User: reader\r\nX-ClickHouse-Key: {READ_TOKEN}\r\n", ""),
        ("Authorization: Basic " + base64.b64encode(f"reader:{READ_TOKEN}".encode()).decode() + "\r\n", ""),
        (f"Authorization: Bearer {READ_TOKEN}\r\n", ""),
        ("", f"?user=reader&password={READ_TOKEN}"),
        ("", f"?password={READ_TOKEN}"),
    ],
)
def test_every_way_of_presenting_a_token_still_reads(arena: Arena, extra: str, query: str) -> None:
    """Header token, Basic, Bearer and URL credentials are all read before the body, as before."""
    body = b"SELECT 40 + 2"
    s = _raw(_port(arena), _post_head(extra + "Connection: close\r\n", len(body), path=f"/{query}"), body)
    got = _answer(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    assert got.endswith(b"\r\n\r\n42\n")


@pytest.fixture
def short_body_deadline(arena: Arena) -> Iterator[float]:
    assert arena.collector.admin is not None
    server: Any = arena.collector.admin.server
    server.body_timeout_s = 1.5
    try:
        yield 1.5
    finally:
        del server.body_timeout_s


def test_a_body_that_trickles_in_is_cut_off_as_a_whole(arena: Arena, short_body_deadline: float) -> None:
    """A reader's body, a byte every 0.3 s: each read is well within the socket's timeout, the
    whole is not: 408 at the deadline (was: read for as long as the bytes kept coming)."""
    s = _raw(_port(arena), _post_head(f"X-ClickHouse-Key: {READ_TOKEN}\r\n", length=100), b"S")
    started = time.monotonic()
    s.settimeout(0.3)
    got = b""
    while time.monotonic() - started < 3 * short_body_deadline + 1:
        try:
            s.sendall(b"E")
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    s.close()
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    assert b"did not arrive within" in got
    assert time.monotonic() - started < 2 * short_body_deadline + 1


def _refuse_without_token(credentials: Credentials) -> ReaderAccess:
    if credentials.secret is None:
        raise ClickHouseError(194, "REQUIRED_PASSWORD", "no token")
    raise ClickHouseError(516, "AUTHENTICATION_FAILED", "unknown token")


def _refuse_metrics(credentials: Credentials) -> None:
    raise ClickHouseError(194, "REQUIRED_PASSWORD", "no token")


def test_slow_bodies_without_credentials_cannot_fill_the_port() -> None:
    """The review's lock-out at a small cap: every connection that may hold a slot sends headers
    and one byte of a 1,000-byte body. Each is answered 401 and closed, so /ping still answers."""
    cap = 8
    server = ClickHouseHttpServer(
        "127.0.0.1", 0, lambda: "", None, _refuse_without_token, _refuse_metrics, max_connections=cap
    )  # fmt: skip
    server.start()
    held: list[socket.socket] = []
    try:
        for _ in range(cap + 2):
            held.append(_raw(server.port, _post_head(), b"S"))
        for s in held:
            s.settimeout(5)
            assert _answer(s).startswith(b"HTTP/1.1 401 ")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ping", timeout=5) as r:
            assert r.status == 200
        assert server.server.refused_connections == 0
    finally:
        for s in held:
            s.close()
        server.stop()


# -- multipart bodies ------------------------------------------------------------------------------


def _multipart(arena: Arena, body: bytes, token: str | None = READ_TOKEN, boundary: str = "b") -> tuple[bytes, float]:
    extra = f"X-ClickHouse-Key: {token}\r\n" if token else ""
    s = _raw(
        _port(arena),
        _post_head(extra + "Connection: close\r\n", len(body), ctype=f"multipart/form-data; boundary={boundary}"),
        body,
        timeout=30,
    )
    started = time.monotonic()
    got = _answer(s)
    s.close()
    return got, time.monotonic() - started


def _nested(depth: int, close: bool) -> bytes:
    """Multipart parts nested `depth` deep; the outer boundary is `b`, the others `n1`, `n2`, …"""
    names = ["b", *(f"n{i}" for i in range(1, depth + 1))]
    head = "--{}\r\nContent-Type: multipart/mixed; boundary={}\r\n\r\n"
    body = b"".join(head.format(names[i], names[i + 1]).encode() for i in range(depth))
    if close:
        body += b"".join(f"\r\n--{names[i]}--".encode() for i in reversed(range(depth))) + b"\r\n"
    return body


def _params(n: int) -> bytes:
    return (
        b"--b\r\nContent-Disposition: form-data; "
        + b"; ".join(b'a%d="x"' % i for i in range(n))
        + b'; name="query"\r\n\r\nSELECT 1\r\n--b--\r\n'
    )


@pytest.mark.parametrize("body", [_nested(3000, close=True), _params(20000)], ids=["nested", "parameters"])
def test_a_multipart_body_without_credentials_is_not_parsed(arena: Arena, body: bytes) -> None:
    """Was: parsed before the token was looked at (3,000-deep nesting raised RecursionError and the
    connection closed without an answer; 85,000 parameters took 21 s of CPU)."""
    got, elapsed = _multipart(arena, body, token=None)
    assert got.startswith(b"HTTP/1.1 401 "), got[:200]
    assert elapsed < 2


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (_nested(3000, close=True), b"nested multipart"),
        (_nested(2, close=True), b"nested multipart"),
        (_params(40), b"over 32 parameters"),
        (_params(20000), b"headers are over 8,192 bytes"),
        (b"".join(b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n' for _ in range(1001)) + b"--b--\r\n",
         b"over 1000 parts"),
        (b'--b\r\nContent-Disposition: form-data; name="query"\r\n\r\nSELECT 1', b"no closing boundary"),
    ],
    ids=["deep", "nested", "parameters", "header-bytes", "parts", "unclosed"],
)  # fmt: skip
def test_a_multipart_body_is_parsed_within_bounds(arena: Arena, body: bytes, why: bytes) -> None:
    got, elapsed = _multipart(arena, body)
    assert got.startswith(b"HTTP/1.1 400 "), got[:300]
    assert b"Code: 27. DB::Exception: Cannot read form data: " in got
    assert why in got, got[-300:]
    assert elapsed < 2


def test_a_multipart_query_with_parameters_still_reads(arena: Arena) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="query"\r\n\r\nSELECT {who:String} AS who\r\n'
        b"--b\r\nContent-Disposition: form-data; name=param_who\r\nContent-Type: text/plain\r\n\r\nnurse\r\n"
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.tsv"\r\n\r\nignored\r\n'
        b"--b--\r\n"
    )
    got, _ = _multipart(arena, body)
    assert got.startswith(b"HTTP/1.1 200 "), got[:300]
    assert got.endswith(b"\r\n\r\nnurse\n")


# -- query parameters where a type goes ------------------------------------------------------------

_THROW = "AggregateFunction(aggThrow(1.), UInt8)"


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        # the review's bypass: a String parameter becomes a type after the literal check
        ("SELECT finalizeAggregation(defaultValueOfTypeName({t:String}))", {"param_t": _THROW}),
        ("SELECT finalizeAggregation(CAST(defaultValueOfTypeName('UInt8'), {t:String}))", {"param_t": _THROW}),
        ("SELECT {t:String}", {"param_t": "AggregateFunction(agg\\x54hrow(1.), UInt8)"}),  # an escape in the value
        ("SELECT {t:Array(String)}", {"param_t": "['AggregateFunction(aggThrow(1.), UInt8)']"}),
        # the same names in literals, spelled the ways the engine's type parser accepts
        ("SELECT finalizeAggregation(defaultValueOfTypeName('AggregateFunction(1, aggThrow(1.), UInt8)'))", {}),
        ("SELECT finalizeAggregation(defaultValueOfTypeName('AggregateFunction(`aggThrow`(1.), UInt8)'))", {}),
        ("SELECT finalizeAggregation(defaultValueOfTypeName('AggregateFunction(/**/aggThrow(1.), UInt8)'))", {}),
        ("SELECT toTypeName(defaultValueOfTypeName('AggregateFunction(`agg\\\\x54hrow`(1.), UInt8)'))", {}),
        # functions that take a type, with a parameter there: refused whatever its value
        ("SELECT defaultValueOfTypeName({t:String})", {"param_t": "UInt8"}),
        ("SELECT JSONExtract('{\"a\": 1}', 'a', {t:String})", {"param_t": "Int64"}),
        ("SELECT JSONExtractKeysAndValues('{\"a\": 1}', {t:String})", {"param_t": "Int64"}),
        ("SELECT accurateCastOrDefault(1, {t:String}, 2)", {"param_t": "UInt8"}),
        # the type a parameter is declared with (the second review: aggThrow ran from it)
        ("SELECT finalizeAggregation({x:AggregateFunction(aggThrow(1.), UInt8)})", {"param_x": ""}),
        ("SELECT {x:Array(AggregateFunction(aggThrow(1.), UInt8))}", {"param_x": "[]"}),
        ("SELECT 1 WHERE {x:Tuple(a AggregateFunction(aggThrow(1.), UInt8))} IS NOT NULL", {"param_x": ""}),
    ],
)
def test_a_query_parameter_is_checked_as_a_literal_in_its_place(arena: Arena, sql: str, params: dict[str, str]) -> None:
    url_params: dict[str, Any] = {"database": arena.options.database, **params}
    answer = arena.ask(sql, **url_params)
    assert_refused(answer, 497)
    assert "aggThrow has thrown" not in answer.text()


def test_query_parameters_and_type_literals_still_work(arena: Arena) -> None:
    answer = arena.ask(
        "SELECT {t:String}, JSONExtract({j:String}, {k:String}, 'Int64'), toTypeName(defaultValueOfTypeName('UInt8')), "
        "finalizeAggregation(CAST(defaultValueOfTypeName('AggregateFunction(sum, UInt8)'), "
        "'AggregateFunction(sum, UInt8)'))",
        default_format="TSV",
        param_t="AggregateFunction(sum, UInt8)",
        param_j='{"a": 7}',
        param_k="a",
    )
    assert answer.status == 200, answer.text()[:300]
    assert answer.text() == "AggregateFunction(sum, UInt8)\t7\tUInt8\t0\n"


def test_a_get_is_refused_401_as_before(arena: Arena) -> None:
    assert_refused(arena.ask("SELECT 1", token=None), 194)


def test_a_get_s_body_is_never_taken_for_the_next_request(arena: Arena) -> None:
    """A GET with a body that is itself a whole request: the body was left unread and answered as
    the next request on the connection (a proxy reusing connections would pass it on)."""
    assert arena.collector.admin is not None
    port = arena.collector.admin.port
    smuggled = f"GET /?query=SELECT%20%27SMUGGLED%27 HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {READ_TOKEN}\r\n\r\n"
    first = (f"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n{smuggled}").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(first)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.") == 1, received[:400]
    assert b"SMUGGLED" not in received


def test_an_engine_error_quoting_a_readers_spaces_is_read_in_one_pass() -> None:
    """The engine quotes a reader's text in its errors; the suffixes `(NAME) (version V)` were cut
    by patterns anchored at the end, which read each run of spaces once from every start: 20,000
    spaces in `toInt32('…x')` held the read port's interpreter, and every receiver, 4 s (2026-12-07
    review). Two million are read in one pass now (this test would not end before)."""
    from clinotel.model.store import error_line

    text = (
        "Code: 6. DB::Exception: Cannot parse string '" + " " * 2_000_000 + "x' as Int32: syntax error. "
        "(CANNOT_PARSE_TEXT) (version 26.9.2.1)"
    )
    error = ClickHouseError.from_engine(RuntimeError(text))
    assert (error.code, error.name) == (6, "CANNOT_PARSE_TEXT")
    assert error.message.endswith("x' as Int32: syntax error")
    assert error_line(RuntimeError(text)).startswith("CANNOT_PARSE_TEXT (6): Cannot parse string '")
