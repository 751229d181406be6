"""A segment the engine refuses is split until the request it refuses is alone, on the real
engine: a log segment holds every tenant's requests of its half second, and one request the
engine cannot read cost every other tenant's spans in it when the segment was set aside whole."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from clinotel.collector import writer as writer_module
from clinotel.collector.log import record as otlp_proto
from clinotel.collector.log.record import frame
from clinotel.collector.log.wal import WriteAheadLog, read_records
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.collector.store.segments import EmbeddedSegments
from clinotel.collector.writer import SegmentWriter


def _request(tenant: str, n: int) -> bytes:
    now = time.time_ns()
    span = Span(trace_id=bytes([n]) * 16, span_id=bytes([n]) * 8, name=f"{tenant} span", start_time_unix_nano=now,
                end_time_unix_nano=now + 1000)  # fmt: skip
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    return otlp_proto.frame(request.SerializeToString() + otlp_proto.envelope(tenant, f"b{n}", now))


def test_only_the_request_the_engine_refuses_is_set_aside(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(writer_module, "BACKOFF_S", (0.0,))
    wal = WriteAheadLog(tmp_path / "wal", segment_bytes=8 << 20, max_age_s=60)
    tenants = ["north", "south", "east", "west", "central"]
    unreadable = otlp_proto.frame(b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 8)  # a field longer than the message
    for n, tenant in enumerate(tenants, 1):
        wal.append(_request(tenant, n))
        if tenant == "east":
            wal.append(unreadable)
    wal.flush()
    store = EmbeddedSegments(client, pipeline, str(pipeline.write_proto(tmp_path)))
    writer = SegmentWriter(wal, store)
    writer.drain(give_up_after_s=60)
    traces = options.name(schema.TRACES)
    stored = client.query(f"SELECT TenantId, count() FROM {traces} GROUP BY 1 ORDER BY 1").result_rows
    assert stored == [(t, 1) for t in sorted(tenants)], "every readable request stored, once"
    assert writer.stats.quarantined == 1
    assert writer.stats.splits >= 2
    [kept] = [p for p in (wal.directory / "quarantine").iterdir() if p.suffix == ".wal"]
    assert len(kept.read_bytes()) == len(unreadable), "the refused request alone, as the log wrote it"
    assert [frame(record) for record in read_records(kept)] == [unreadable]
    assert wal.pending_bytes == 0
    names = [row[0] for row in client.query(f"SELECT SpanName FROM {traces} ORDER BY SpanName").result_rows]
    assert names == sorted(f"{t} span" for t in tenants)
