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


def _request(starts_ns: list[int], ends_ns: list[int] | None = None) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "skewed"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("skew")
    for i, start in enumerate(starts_ns):
        end = start + 1_000_000 if ends_ns is None else ends_ns[i]
        tracer.start_span(f"skewed {i}", start_time=start).end(end_time=end)
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


def test_a_span_that_ends_after_the_window_is_refused_and_one_that_ends_before_it_starts_lasts_nothing(
    collector: Collector,
) -> None:
    """An end of 2^64 - 1 (or the year 2096) would be a duration of centuries in every latency
    figure: refused, as a start outside the window is. An end before the start is stored with a
    duration of 0."""
    assert collector.http is not None
    url = f"http://127.0.0.1:{collector.http.port}/v1/traces"
    now = time.time_ns()
    ends = [(1 << 64) - 1, 4_000_000_000 * 10**9, now + 2_000_000, now - DAY_NS]
    status, _, body = post(url, _request([now] * len(ends), ends))
    assert status == 200, body
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == "2 span(s) refused: 2 ending more than 24 h after arrival"
    _drained(collector)
    db = collector.options.database
    stored = collector.client.query(
        f"SELECT SpanName, Duration FROM {db}.otel_traces WHERE ServiceName = 'skewed' ORDER BY SpanName"
    ).result_rows
    assert stored == [("skewed 2", 2_000_000), ("skewed 3", 0)]
