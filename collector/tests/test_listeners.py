"""Every listener is exclusive and bound before anything is created: a port in use is refused
with one line, and leaves no store, no log behind."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from clinotel.collector.net.listen import ListenError
from clinotel.collector.service import Collector, CollectorConfig, ConfigError
from clinotel.collector.store import schema
from clinotel.collector.tokens import Tokens
from collector.tests.fixtures import WRITE_TOKEN


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _config(tmp_path: Path, **ports: Any) -> CollectorConfig:
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "otlp_http": ("127.0.0.1", 0),
        "otlp_grpc": ("127.0.0.1", 0),
        "http": ("127.0.0.1", 0),
        "insecure_no_auth": True,
    }
    return CollectorConfig(**{**base, **ports})


@pytest.mark.parametrize(
    ("option", "label"),
    [("otlp_http", "OTLP/HTTP"), ("otlp_grpc", "OTLP/gRPC"), ("http", "the ClickHouse HTTP interface")],
)
def test_a_port_in_use_is_refused_before_anything_is_created(
    tmp_path: Path, taken: int, option: str, label: str
) -> None:
    collector = Collector(_config(tmp_path, **{option: ("127.0.0.1", taken)}))
    with pytest.raises(ListenError) as refused:
        collector.start()
    assert str(refused.value) == (
        f"cannot listen on 127.0.0.1:{taken} for {label}"
        + (" (--http)" if option == "http" else "")
        + ": the address is already in use (another collector or program listens there)"
    )
    assert list(tmp_path.iterdir()) == [], "no store, no log"


def test_a_grpc_server_sharing_its_port_by_so_reuseport_is_not_joined(tmp_path: Path) -> None:
    other = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # gRPC's default: SO_REUSEPORT on
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port} for OTLP/gRPC"):
            Collector(_config(tmp_path, otlp_grpc=("127.0.0.1", port))).start()
    finally:
        other.stop(None)
    assert list(tmp_path.iterdir()) == []


def test_a_collector_s_grpc_port_cannot_be_shared_by_a_second_one(tmp_path: Path) -> None:
    from clinotel.collector.receiver.export import TraceReceiver
    from clinotel.collector.receiver.grpc import OtlpGrpcServer

    receiver = TraceReceiver(None)
    first = OtlpGrpcServer("127.0.0.1", 0, receiver, lambda token: None)
    first.start()
    try:
        with pytest.raises(ListenError):
            OtlpGrpcServer("127.0.0.1", first.port, receiver, lambda token: None)
        reuseport = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # gRPC's default options
        try:
            with pytest.raises(RuntimeError):
                reuseport.add_insecure_port(f"127.0.0.1:{first.port}")
        finally:
            reuseport.stop(None)
    finally:
        first.stop()


@pytest.mark.parametrize("port", [99999, -1])
def test_a_port_out_of_range_is_a_configuration_error(tmp_path: Path, port: int) -> None:
    with pytest.raises(ConfigError, match=f"port {port} is not a port"):
        Collector(_config(tmp_path, otlp_http=("127.0.0.1", port)))


def test_http_listeners_take_an_ipv6_address(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    """`--otlp-http [::1]:PORT` and `--http [::1]:PORT` listen on IPv6, as the gRPC port does (they
    were refused as an unknown host): an official OTLP/HTTP exporter's request is answered there."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    config = CollectorConfig(
        database=options.database, wal_dir=tmp_path / "wal", otlp_http=("::1", 0), otlp_grpc=None,
        http=("::1", 0), data_dir=engine_dir / "data", tokens=tokens, max_request_bytes=1 << 20,
        wal_max_bytes=4 << 20,
    )  # fmt: skip
    c = Collector(config, client=client)
    c.start()
    try:
        assert c.http is not None
        assert c.admin is not None
        conn = http.client.HTTPConnection("::1", c.admin.port, timeout=10)
        conn.request("GET", "/ping")
        assert conn.getresponse().status == 200
        conn.close()
        exporter = OTLPSpanExporter(
            endpoint=f"http://[::1]:{c.http.port}/v1/traces", headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            timeout=10,
        )  # fmt: skip
        provider = TracerProvider(resource=Resource.create({"service.name": "v6"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider.get_tracer("v6").start_span("over-ipv6").end()
        provider.shutdown()
        assert c.writer is not None
        c.writer.drain()
        table = options.name("otel_traces")
        assert client.query(f"SELECT count() FROM {table} WHERE SpanName = 'over-ipv6'").result_rows[0][0] == 1
    finally:
        c.stop()


def test_a_log_bound_below_the_request_limit_is_a_configuration_error(tmp_path: Path) -> None:
    """The log could never take a request of the largest size the receivers accept: every such
    request was answered 503 for ever, with a message about a log holding 0 bytes."""
    with pytest.raises(ConfigError, match=r"--wal-max-mb \(1\) must be more than --max-request-mb \(2\)"):
        Collector(_config(tmp_path, wal_max_bytes=1 << 20, max_request_bytes=2 << 20))


def test_a_receive_buffer_that_cannot_hold_the_largest_request_is_a_configuration_error(tmp_path: Path) -> None:
    """One tenant's share (three quarters) must hold the largest request three times over (gzipped
    body, inflated, canonical), else such requests were answered busy for ever; left unset, the
    buffer grows with --max-request-mb."""
    with pytest.raises(ConfigError, match=r"--receive-buffer-mb \(255\) must be at least 4 times --max-request-mb"):
        Collector(_config(tmp_path, receive_buffer_bytes=255 << 20))
    assert _config(tmp_path, max_request_bytes=100 << 20).receive_buffer == 400 << 20
    assert _config(tmp_path).receive_buffer == 256 << 20


def test_serve_prints_ipv6_addresses_as_urls_that_work(tmp_path: Path) -> None:
    """`serve --http [::1]:PORT` printed `--server http://::1:PORT`, which no client can parse (a
    new user's review): the banner's URLs bracket the address, and its `--server` URL is read."""
    import subprocess
    import sys
    import time

    from tests.net import free_port

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clinotel.cli", "serve", "--insecure-no-auth", "--data-dir", str(tmp_path / "d"),
             "--otlp-http", "[::1]:0", "--otlp-grpc", "[::1]:0", "--http", f"[::1]:{free_port()}"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "OTLP/gRPC on" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        banner = log.read_text()
        assert "OTLP/HTTP on http://[::1]:" in banner, banner
        assert "OTLP/gRPC on [::1]:" in banner, banner
        assert "every span is stored as tenant 'default'" in banner, banner  # not the one a service names
        server = banner.split("--server ", 1)[1].split(")", 1)[0]
        assert server.startswith("http://[::1]:"), banner
        done = subprocess.run(
            [sys.executable, "-m", "clinotel.cli", "query", "--server", server, "SELECT 41 + 1"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "42" in done.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=60)
