"""The writer side of the client matrix: every OTLP client a hospital service may use, at a pinned
version, exports into a running collector; each export must be stored and queryable under the
token's tenant (the payload claims another one). docs/compatibility.md lists the same matrix."""

from __future__ import annotations

import gzip
import random
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from collector.tests.clients.conftest import missing, run_node
from collector.tests.fixtures import WRITE_TOKEN
from collector.tests.otlp_clients import plain_request

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
    collector: Collector, name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    service = "matrix-" + "".join(random.choices(string.ascii_lowercase, k=10))  # digits could look like PHI
    WRITERS[name](collector, service, request, tmp_path)
    assert _stored(collector, service, {"st-marys": SPANS}) == {"st-marys": SPANS}
