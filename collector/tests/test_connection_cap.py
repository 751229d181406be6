"""`--max-connections`: a flood of idle connections to an HTTP port is answered 503 past the cap,
without a thread each, and the port serves again once connections close."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from clinotel.cli import cli
from clinotel.collector.readport.http import ClickHouseHttpServer
from clinotel.collector.receiver.export import Limits, TraceReceiver
from clinotel.collector.receiver.http import OtlpHttpServer

CAP = 4


def _refuse(_: object) -> None:
    raise PermissionError("no reader here")


@pytest.fixture
def admin() -> Iterator[ClickHouseHttpServer]:
    server = ClickHouseHttpServer(
        "127.0.0.1", 0, lambda: "", None, _refuse, _refuse, max_connections=CAP
    )  # fmt: skip
    server.start()
    yield server
    server.stop()


def _ping(port: int) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def _idle(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]


def _mid_headers(port: int, n: int) -> list[socket.socket]:
    """Connections that started a request and have not finished its headers."""
    held = _idle(port, n)
    for s in held:
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
    return held


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _served(server: ClickHouseHttpServer | OtlpHttpServer, n: int) -> None:
    """Wait until the port has accepted `n` connections into threads of their own."""
    _wait(lambda: server.server.open_connections >= n, "the port did not take the connections")


def _all_in_headers(server: ClickHouseHttpServer | OtlpHttpServer) -> None:
    _wait(lambda: server.server.connection_states() == {"headers"}, "the requests did not start")


def _closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


def test_at_the_cap_the_longest_idle_connection_makes_room(admin: ClickHouseHttpServer) -> None:
    held = _idle(admin.port, CAP)
    _served(admin, CAP)
    assert _ping(admin.port)[0] == 200  # a keep-alive connection idle between requests was closed for it
    assert admin.server.closed_idle >= 1
    assert admin.server.refused_connections == 0
    assert _closed_by_server(held[0])
    for s in held:
        s.close()


def test_past_the_cap_with_none_idle_a_connection_is_answered_503_until_one_ends(
    admin: ClickHouseHttpServer,
) -> None:
    held = _mid_headers(admin.port, CAP)
    _served(admin, CAP)
    _all_in_headers(admin)
    status, headers, body = _ping(admin.port)
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert b"too many connections" in body
    held.pop().close()
    _wait(lambda: _ping(admin.port)[0] == 200, "the freed slot was not given back")
    for s in held:
        s.close()


def test_headers_that_trickle_in_are_cut_off(admin: ClickHouseHttpServer) -> None:
    admin.server.header_timeout_s = 1.0
    s = socket.create_connection(("127.0.0.1", admin.port), timeout=10)
    s.sendall(b"GET /ping HTTP/1.1\r\n")
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 8:  # one header line every 0.2 s: each read well within its timeout
        try:
            s.sendall(b"X-Slow: 1\r\n")
        except OSError:
            closed = True
            break
        if admin.server.timed_out_headers:
            break
        time.sleep(0.2)
    closed = closed or _closed_by_server(s)
    s.close()
    assert closed
    assert time.monotonic() - started < 5
    assert admin.server.timed_out_headers == 1


def test_a_flood_of_connections_takes_no_thread_past_the_cap(admin: ClickHouseHttpServer) -> None:
    held = _mid_headers(admin.port, CAP)
    _served(admin, CAP)
    _all_in_headers(admin)
    before = threading.active_count()
    answers = []
    for _ in range(200):  # each past the cap: answered and closed by the accepting thread
        with socket.create_connection(("127.0.0.1", admin.port), timeout=10) as s:
            answers.append(s.recv(64))
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers)
    assert threading.active_count() <= before
    assert admin.server.refused_connections >= 200
    for s in held:
        s.close()
    _wait(lambda: _ping(admin.port)[0] == 200, "the port did not serve again")


def test_the_otlp_port_has_the_same_cap() -> None:
    server = OtlpHttpServer("127.0.0.1", 0, TraceReceiver(None, Limits()), lambda _: None, max_connections=2)
    server.start()
    try:
        held = _idle(server.port, 2)
        for s in held:
            s.sendall(b"POST /v1/traces HTTP/1.1\r\n")
        _served(server, 2)
        _all_in_headers(server)
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/traces", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == 503
        for s in held:
            s.close()
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["0", "-1", "70000", "many"])
def test_max_connections_out_of_range_is_refused_before_anything_starts(value: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--insecure-no-auth", "--max-connections", value])
    assert result.exit_code == 2
    assert "--max-connections" in result.output
