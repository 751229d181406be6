"""Chunked request bodies on both HTTP ports, byte for byte over a socket: accepted when well
formed (extensions, trailers, gzip), refused with 400 and a closed connection when not, 413 from
the size line of a chunk that would pass the limit (never buffered), and nothing of a refused
request written."""

from __future__ import annotations

import gzip
import socket

import pytest

from clinotel.collector.service import Collector
from collector.tests.fixtures import READ_TOKEN, WRITE_TOKEN
from collector.tests.otlp_clients import plain_request

LIMIT = 1 << 20  # the collector fixture's max_request_bytes
READ_HEAD = f"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-User: r\r\nX-ClickHouse-Key: {READ_TOKEN}\r\n"


def chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def exchange(port: int, head: str, body: bytes, *, read_all: bool = True) -> tuple[int, bytes, bool]:
    """Status, response bytes, and whether the server closed the connection after answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        s.shutdown(socket.SHUT_WR) if read_all else None
        data = b""
        while b"\r\n\r\n" not in data:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head_bytes.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        while len(rest) < length:
            piece = s.recv(65536)
            if not piece:
                break
            rest += piece
        s.settimeout(5)
        try:
            closed = s.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
    return int(head_bytes.split(b" ")[1]), rest, closed


def otlp_head(port: int, extra: str = "Transfer-Encoding: chunked\r\n", version: str = "HTTP/1.1") -> str:
    return (
        f"POST /v1/traces {version}\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-protobuf\r\n"
        f"Authorization: Bearer {WRITE_TOKEN}\r\n{extra}"
    )


def _ports(c: Collector) -> tuple[int, int]:
    assert c.http is not None
    assert c.admin is not None
    return c.http.port, c.admin.port


def test_chunked_otlp_with_extensions_trailers_and_gzip_is_accepted(collector: Collector) -> None:
    otlp, _ = _ports(collector)
    body = plain_request(3)
    with_extension = chunked(body, 7).replace(b"\r\n", b";name=value\r\n", 1)
    status, _, _ = exchange(otlp, otlp_head(otlp), with_extension[:-2] + b"X-Checksum: 1\r\n\r\n")
    assert status == 200
    status, _, _ = exchange(otlp, otlp_head(otlp, "Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n"),
                            chunked(gzip.compress(plain_request(2))))  # fmt: skip
    assert status == 200
    assert collector.receiver is not None
    assert collector.receiver.stats.spans_accepted == 5


MALFORMED = {
    "size not hex": b"zz\r\n",
    "size with 0x": b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "size with sign": b"+10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "size with underscore": b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "size line too long": b"10;" + b"x" * 5000 + b"\r\n",
    "size line with bare LF": b"10\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "data not followed by CRLF": b"4\r\nabcdXY0\r\n\r\n",
    "truncated chunk": b"100\r\nabc",
    "no last chunk": b"4\r\nabcd\r\n",
    "trailer section too large": b"0\r\n"
    + b"X-A: "
    + b"b" * 4000
    + b"\r\n" * 1
    + (b"X-B: " + b"c" * 4000 + b"\r\n") * 5,
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("port_name", ["otlp", "read"])
def test_malformed_chunking_is_refused_and_the_connection_closed(
    module_collector: Collector, name: str, port_name: str
) -> None:
    collector = module_collector  # one for the refusals: none gives it a span, each checks its log did not grow
    otlp, read = _ports(collector)
    assert collector.wal is not None
    pending = collector.wal.pending_bytes
    head = otlp_head(otlp) if port_name == "otlp" else READ_HEAD + "Transfer-Encoding: chunked\r\n"
    status, reply, closed = exchange(otlp if port_name == "otlp" else read, head, MALFORMED[name])
    assert status == 400, reply[:200]
    assert closed, "framing that cannot be trusted ends the connection"
    if port_name == "read":
        assert b"CANNOT_PARSE_INPUT_ASSERTION_FAILED" in reply
    assert collector.wal.pending_bytes == pending


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),  # request smuggling shape
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
        ("Transfer-Encoding: identity\r\n", 400),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 501),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        ("Content-Length: -5\r\n", 400),
        ("Content-Length: 1e3\r\n", 400),
        ("", 411),
    ],
)
def test_framing_headers_that_cannot_be_trusted(module_collector: Collector, headers: str, status: int) -> None:
    otlp, _ = _ports(module_collector)
    assert module_collector.wal is not None
    got, _, closed = exchange(otlp, otlp_head(otlp, headers), chunked(plain_request(1)))
    assert got == status
    assert closed
    assert module_collector.wal.pending_bytes == 0


def test_chunked_in_http_1_0_is_refused(module_collector: Collector) -> None:
    otlp, _ = _ports(module_collector)
    assert exchange(otlp, otlp_head(otlp, version="HTTP/1.0"), chunked(plain_request(1)))[0] == 400
    assert module_collector.wal is not None
    assert module_collector.wal.pending_bytes == 0


def test_over_the_limit_is_413_from_the_size_line_without_the_data(collector: Collector) -> None:
    otlp, read = _ports(collector)
    assert collector.wal is not None
    # A chunk announced far over the limit: answered at once, before any data was sent.
    status, _, closed = exchange(otlp, otlp_head(otlp), b"FFFFFFFF\r\n", read_all=False)
    assert (status, closed) == (413, True)
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {READ_TOKEN}\r\nTransfer-Encoding: chunked\r\n"
    status, reply, closed = exchange(read, head, b"FFFFFFFF\r\n", read_all=False)
    assert (status, closed) == (413, True)
    assert b"QUERY_IS_TOO_LARGE" in reply
    # Many small chunks adding up past the limit, within the drain allowance: read, then 413.
    status, _, _ = exchange(otlp, otlp_head(otlp), chunked(b"\0" * (LIMIT + 10), 1 << 16))
    assert status == 413
    assert collector.wal.pending_bytes == 0
    assert exchange(otlp, otlp_head(otlp), chunked(plain_request(1)))[0] == 200, "the server keeps serving"


def test_chunked_sql_on_the_read_port(collector: Collector) -> None:
    _, read = _ports(collector)
    head = READ_HEAD.replace("POST /", "POST /?default_format=TSV") + "Transfer-Encoding: chunked\r\n"
    status, reply, _ = exchange(read, head, chunked(b"SELECT 1 + 1", 3))
    assert (status, reply) == (200, b"2\n")
    gz = head + "Content-Encoding: gzip\r\n"
    status, reply, _ = exchange(read, gz, chunked(gzip.compress(b"SELECT 40 + 2"), 5))
    assert (status, reply) == (200, b"42\n")
    no_length = f"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {READ_TOKEN}\r\n"
    status, reply, _ = exchange(read, no_length, b"SELECT 1")
    assert status == 411
    assert b"HTTP_LENGTH_REQUIRED" in reply
