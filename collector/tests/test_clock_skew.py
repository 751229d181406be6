"""Spans with skewed clocks (a device whose clock is years off, a backfill after an outage, a
hostile sender): what the collector acknowledges is stored, spans starting outside its window
(`--max-span-age-days` before arrival to a day after) are refused individually, and one sender's
timestamps never stop the writer for anyone else."""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinotel.collector.service import Collector
from collector.tests.fixtures import OTHER_TOKEN
from collector.tests.otlp_clients import plain_request, post

DAY_NS = 86_400 * 10**9


def _request(starts_ns: list[int]) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "skewed"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("skew")
    for i, start in enumerate(starts_ns):
        tracer.start_span(f"skewed {i}", start_time=start).end(end_time=start + 1_000_000)
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _count(collector: Collector, tenant: str, service: str) -> int:
    db = collector.options.database
    return int(
        collector.client.command(
            f"SELECT count() FROM {db}.otel_traces WHERE TenantId = '{tenant}' AND ServiceName = '{service}'"
        )
    )


def _drained(collector: Collector) -> None:
    assert collector.writer is not None
    collector.writer.drain()


@pytest.mark.parametrize(
    ("what", "starts", "refused"),
    [
        ("one span a day for 150 days (a backfill)", [time.time_ns() - d * DAY_NS for d in range(150)], 0),
        ("the epoch and the far future", [1, 4_000_000_000 * 10**9, (1 << 63) - 2_000_000], 3),
    ],
)
def test_skewed_timestamps_are_stored_or_refused_and_stop_no_one(
    collector: Collector, what: str, starts: list[int], refused: int
) -> None:
    assert collector.http is not None
    url = f"http://127.0.0.1:{collector.http.port}/v1/traces"
    status, _, body = post(url, _request(starts))
    assert status == 200, body
    assert ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans == refused, what
    _drained(collector)
    assert _count(collector, "st-marys", "skewed") == len(starts) - refused, what
    assert post(url, plain_request(3), token=OTHER_TOKEN)[0] == 200
    _drained(collector)
    assert _count(collector, "general", "ehr-bridge") == 3
    assert collector.failure is None
