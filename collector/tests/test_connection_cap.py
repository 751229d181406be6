"""`--max-connections`: a flood of idle connections to an HTTP port is answered 503 past the cap,
without a thread each, and the port serves again once connections close."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

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


def _served(server: ClickHouseHttpServer | OtlpHttpServer, n: int) -> None:
    """Wait until the port has accepted `n` connections into threads of their own."""
    deadline = time.monotonic() + 10
    while server.server.open_connections < n:
        assert time.monotonic() < deadline, "the port did not take the connections"
        time.sleep(0.01)


def test_past_the_cap_a_connection_is_answered_503_and_the_port_serves_once_one_closes(
    admin: ClickHouseHttpServer,
) -> None:
    assert _ping(admin.port)[0] == 200
    held = _idle(admin.port, CAP)
    _served(admin, CAP)
    status, headers, body = _ping(admin.port)
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert b"too many connections" in body
    held.pop().close()
    deadline = time.monotonic() + 10
    while _ping(admin.port)[0] != 200:
        assert time.monotonic() < deadline, "the freed slot was not given back"
        time.sleep(0.05)
    for s in held:
        s.close()


def test_a_flood_of_connections_takes_no_thread_past_the_cap(admin: ClickHouseHttpServer) -> None:
    held = _idle(admin.port, CAP)
    _served(admin, CAP)
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
    deadline = time.monotonic() + 10
    while _ping(admin.port)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_otlp_port_has_the_same_cap() -> None:
    server = OtlpHttpServer("127.0.0.1", 0, TraceReceiver(None, Limits()), lambda _: None, max_connections=2)
    server.start()
    try:
        held = _idle(server.port, 2)
        _served(server, 2)
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
