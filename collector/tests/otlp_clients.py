"""OTLP clients for the collector tests: raw requests, a plain OpenTelemetry SDK's spans, and
clinotel workflows through the official exporters."""

from __future__ import annotations

import itertools
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import FakeClock, isolated
from clinotel.instrumentation.testing.workflows import triage
from collector.tests.fixtures import WRITE_TOKEN


def post(
    url: str,
    body: bytes,
    *,
    token: str | None = WRITE_TOKEN,
    content_type: str = "application/x-protobuf",
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", content_type)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for k, v in headers.items():
        request.add_header(k.replace("_", "-"), v)
    return exchange(request)


def exchange(request: urllib.request.Request, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a request, error statuses included."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def sdk_spans(n: int = 3, tenant_claimed: str = "general") -> Sequence[ReadableSpan]:
    """`n` finished spans of a plain OpenTelemetry SDK (service `ehr-bridge`)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "ehr-bridge", "clinical.tenant.id": tenant_claimed})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for i in range(n):
        with provider.get_tracer("t").start_as_current_span(f"span {i}"):
            pass
    return exporter.get_finished_spans()


def plain_request(n: int = 3, tenant_claimed: str = "general") -> bytes:
    return encode_spans(sdk_spans(n, tenant_claimed)).SerializeToString()


def variants(body: bytes) -> Iterator[bytes]:
    """`body` again and again, each a request of its own (its first span's trace id changed): what
    fills a log, where the same bytes again would be taken for an exporter's retry and answered
    without being logged."""
    request = ExportTraceServiceRequest.FromString(body)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for k in itertools.count(1):
        span.trace_id = span.trace_id[:8] + k.to_bytes(8, "big")
        yield request.SerializeToString()


def send_workflows(endpoint: str, protocol: str, n: int, token: str = WRITE_TOKEN) -> None:
    """`n` triage workflows, encounters ENC-0…, through clinotel and the official OTLP exporter for `protocol`."""
    with isolated():
        telemetry = ct.configure(
            service_name="ed-triage",
            tenant="someone-else",
            endpoint=endpoint,
            protocol=protocol,
            headers={"authorization": f"Bearer {token}"},
            pseudonym_key="k" * 32,
            set_global=False,
        )
        try:
            clock = FakeClock(time.time_ns() - 3600 * 10**9)  # an hour ago: within the accepted window
            for i in range(n):
                triage(clock, f"ENC-{i}")
            assert telemetry.force_flush()
        finally:
            telemetry.shutdown()
