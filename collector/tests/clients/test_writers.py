"""The writer side of the client matrix: every OTLP client a hospital service may use, at a pinned
version, exports into a running collector; each export must be stored and queryable under the
token's tenant (the payload claims another one). docs/compatibility.md lists the same matrix."""

from __future__ import annotations

import gzip
import hashlib
import random
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from collector.tests.clients.conftest import missing, run_node
from collector.tests.fixtures import READ_TOKEN, WRITE_TOKEN
from collector.tests.otlp_clients import plain_request
from collector.tests.test_crash import _close, wait_serving
from tests.net import free_port

PYTHON_EXPORT = Path(__file__).parent / "python_export.py"
SPANS = 4


def _stored(c: Collector, service: str, expected: dict[str, int]) -> dict[str, int]:
    """Rows per tenant for `service`, waiting (bounded) until they match `expected`: `Writer.drain`
    can return while the writer's own thread is still inserting the last segment."""
    assert c.writer is not None
    deadline = time.monotonic() + 15
    while True:
        c.writer.drain()
        rows = c.client.query(
            f"SELECT TenantId, count() FROM {c.options.name(schema.TRACES)} WHERE ServiceName = %(s)s "
            "GROUP BY TenantId",
            parameters={"s": service},
        ).result_rows
        got = {str(t): int(n) for t, n in rows}
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def _endpoints(c: Collector) -> tuple[str, str]:
    assert c.http is not None
    assert c.grpc is not None
    return f"http://127.0.0.1:{c.http.port}/v1/traces", f"http://127.0.0.1:{c.grpc.port}"


def _python(python: str, protocol: str, endpoint: str, service: str, gzip_body: bool) -> None:
    env = {"PATH": "/usr/bin:/bin"} | ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"} if gzip_body else {})
    done = subprocess.run(
        [python, str(PYTHON_EXPORT), protocol, endpoint, service, str(SPANS), WRITE_TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _curl(endpoint: str, service: str, chunked: bool, gzip_body: bool, tmp: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        missing("curl")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(plain_request(SPANS))
    for attribute in request.resource_spans[0].resource.attributes:
        if attribute.key == "service.name":
            attribute.value.string_value = service
    body = request.SerializeToString()
    path = tmp / "body"
    path.write_bytes(gzip.compress(body) if gzip_body else body)
    command = [
        str(curl),
        "-sS",
        "--fail-with-body",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        f"@{path}",
    ]
    command += ["-H", "Content-Type: application/x-protobuf", "-H", f"Authorization: Bearer {WRITE_TOKEN}"]
    if chunked:
        command += ["-H", "Transfer-Encoding: chunked"]
    if gzip_body:
        command += ["-H", "Content-Encoding: gzip"]
    done = subprocess.run([*command, endpoint], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout == "200", (done.stdout, done.stderr)


Writer = Callable[[Collector, str, pytest.FixtureRequest, Path], None]


def _node(protocol: str, gzip_body: bool) -> Writer:
    def write(c: Collector, service: str, request: pytest.FixtureRequest, tmp: Path) -> None:
        directory = request.getfixturevalue("node_clients")
        http, grpc = _endpoints(c)
        endpoint = grpc if protocol == "grpc" else http
        args = [protocol, endpoint, service, str(SPANS)] + (["gzip"] if gzip_body else [])
        run_node(
            directory, "export.mjs", *args, env={"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {WRITE_TOKEN}"}
        )

    return write


def _py(protocol: str, gzip_body: bool) -> Writer:
    def write(c: Collector, service: str, request: pytest.FixtureRequest, tmp: Path) -> None:
        http, grpc = _endpoints(c)
        python = str(request.getfixturevalue("python_json_exporter")) if protocol == "http/json" else sys.executable
        _python(python, protocol, grpc if protocol == "grpc" else http, service, gzip_body)

    return write


def _curl_writer(chunked: bool, gzip_body: bool) -> Writer:
    def write(c: Collector, service: str, request: pytest.FixtureRequest, tmp: Path) -> None:
        _curl(_endpoints(c)[0], service, chunked, gzip_body, tmp)

    return write


WRITERS: dict[str, Writer] = {}
for _gz in (False, True):
    _suffix = "+gzip" if _gz else ""
    for _protocol in ("http/protobuf", "http/json", "grpc"):
        WRITERS[f"python {_protocol}{_suffix}"] = _py(_protocol, _gz)
        WRITERS[f"node {_protocol}{_suffix}"] = _node(_protocol, _gz)
    WRITERS[f"curl content-length{_suffix}"] = _curl_writer(False, _gz)
    WRITERS[f"curl chunked{_suffix}"] = _curl_writer(True, _gz)


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_writer_stores_its_spans_under_the_tokens_tenant(
    module_collector: Collector, name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # one collector for the writers: each sends under a service name of its own and counts only it
    service = "matrix-" + "".join(random.choices(string.ascii_lowercase, k=10))  # digits could look like PHI
    WRITERS[name](module_collector, service, request, tmp_path)
    assert _stored(module_collector, service, {"st-marys": SPANS}) == {"st-marys": SPANS}


@dataclass(frozen=True)
class Served:
    """`clinotel serve` in a process of its own: its OTLP ports and its read port."""

    otlp_http: int
    otlp_grpc: int
    reads: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The collector as an operator starts it: `clinotel serve --tokens`, st-marys' write and read tokens."""
    directory = tmp_path_factory.mktemp("served")
    tokens = directory / "tokens.toml"
    entries = [(role, hashlib.sha256(token.encode()).hexdigest()) for role, token in (("write", WRITE_TOKEN),
               ("read", READ_TOKEN))]  # fmt: skip
    tokens.write_text(
        "".join(f'[[token]]\ntenant = "st-marys"\nrole = "{role}"\nsha256 = "{digest}"\n' for role, digest in entries),
        encoding="utf-8",
    )
    tokens.chmod(0o600)
    ports = Served(free_port(), free_port(), free_port())
    proc = subprocess.Popen(
        [sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(directory / "data"), "--tokens", str(tokens),
         "--otlp-http", f"127.0.0.1:{ports.otlp_http}", "--otlp-grpc", f"127.0.0.1:{ports.otlp_grpc}",
         "--http", f"127.0.0.1:{ports.reads}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_serving(proc, ports.reads)
        yield ports
    finally:
        proc.terminate()
        proc.wait(timeout=180)
        _close(proc)


def _spans_read_back(reads: int, service: str, expected: int) -> list[tuple[Any, ...]]:
    """`service`'s spans as a reader with st-marys' read token sees them through the read port,
    waiting (bounded) until `expected` have landed."""
    client = clickhouse_connect.get_client(host="127.0.0.1", port=reads, username="reader", password=READ_TOKEN)
    try:
        deadline = time.monotonic() + 30
        while True:
            rows = client.query(
                "SELECT SpanName, TenantId, ResourceAttributes['clinical.tenant.id'], "
                "ResourceAttributes['deployment.environment.name'], SpanAttributes, StatusCode, StatusMessage, "
                "Events.Name, Events.Attributes, ParentSpanId = '' FROM otel_traces WHERE ServiceName = %(s)s "
                "ORDER BY SpanName",
                parameters={"s": service},
            ).result_rows
            if len(rows) >= expected or time.monotonic() > deadline:
                return [tuple(row) for row in rows]
            time.sleep(0.2)
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json", "grpc"])
def test_the_node_sdk_configured_by_the_standard_environment_alone_lands_whole(
    node_clients: Path, served: Served, protocol: str
) -> None:
    """NodeSDK with no code configuration: protocol, endpoint, token header, gzip, service name
    and resource from OTEL_* variables; service name, attributes, status and events arrive."""
    service = "node-sdk-" + "".join(random.choices(string.ascii_lowercase, k=10))
    port = served.otlp_grpc if protocol == "grpc" else served.otlp_http
    run_node(node_clients, "env_export.mjs", env={
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": "clinical.tenant.id=general,deployment.environment.name=test",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {WRITE_TOKEN}",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    })  # fmt: skip
    decide = {"clinical.workflow.stage": "decide", "clinical.decision.source": "fallback",
              "clinical.decision.confidence": "0.5"}  # fmt: skip
    exception = {"exception.type": "TimeoutError", "exception.message": "model timed out"}
    assert _spans_read_back(served.reads, service, 2) == [
        ("decide", "st-marys", "st-marys", "test", decide, "Error", "model timed out", ["exception"], [exception],
         False),
        ("workflow triage", "st-marys", "st-marys", "test", {"clinical.workflow.kind": "triage"}, "Unset", "", [], [],
         True),
    ]  # fmt: skip
