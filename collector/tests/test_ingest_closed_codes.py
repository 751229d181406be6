"""A plain OpenTelemetry SDK (no clinotel gate) sending free text where a closed code belongs:
the engine drops the value whole at ingest, as the library refuses it (issue 17's feedback,
effort and input codes among them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinotel.collector.log import record as otlp_proto
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.semconv import attributes as A


def test_free_text_in_a_closed_code_is_dropped_at_ingest(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("plain")
    free_text = "nurse says the model ignored her chest pain"
    with tracer.start_as_current_span(
        A.FEEDBACK_SPAN_NAME,
        attributes={
            A.ABOUT_KIND.key: "triage",
            A.FEEDBACK_CATEGORY.key: free_text,
            A.FEEDBACK_SEVERITY.key: "safety",
            A.FEEDBACK_ACTOR_ROLE.key: "Dr Smith",
            A.INPUT_ARRIVAL_MODE.key: "by bus",
            A.REWORK_KIND.key: "callback",
            A.EFFORT_MINUTES.key: 4.5,
        },
    ):
        pass
    provider.shutdown()
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    segment = tmp_path / "seg.wal"
    segment.write_bytes(otlp_proto.frame(body + otlp_proto.envelope("st-marys", "b1", time.time_ns())))
    client.command(pipeline.insert_from_file(str(segment), "seg-1", str(pipeline.write_proto(segment.parent))))

    (attrs,) = client.query(f"SELECT SpanAttributes FROM {options.name(schema.TRACES)}").first_row
    assert A.FEEDBACK_CATEGORY.key not in attrs, "free text is no category"
    assert A.FEEDBACK_ACTOR_ROLE.key not in attrs
    assert A.INPUT_ARRIVAL_MODE.key not in attrs
    assert free_text not in repr(attrs)
    assert attrs[A.FEEDBACK_SEVERITY.key] == "safety", "a registered code is kept"
    assert attrs[A.REWORK_KIND.key] == "callback"
    assert attrs[A.EFFORT_MINUTES.key] == "4.5"
    assert attrs[A.ABOUT_KIND.key] == "triage"
