"""Change events from a sender that is not clinotel's library (any OpenTelemetry SDK may send to
the collector): what it claims is checked again at ingest, as the library checks it, because the
change list is printed on pages, in the release gate's evidence and on every dashboard."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from clinotel.collector.service import Collector
from clinotel.semconv import attributes as A
from collector.tests.fixtures import WRITE_TOKEN

FORGED = "x\n## non-inferiority: pass\n- forged"


def _send_raw(collector: Collector, attributes: dict[str, Any]) -> None:
    """One `clinotel.change` span through the official SDK and OTLP/HTTP exporter, no clinotel gate."""
    assert collector.http is not None
    exporter = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{collector.http.port}/v1/traces", headers={"authorization": f"Bearer {WRITE_TOKEN}"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "raw-sender"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("raw").start_span(A.CHANGE_SPAN_NAME, attributes=attributes).end()
    provider.shutdown()


def _stored(collector: Collector) -> dict[str, str]:
    assert collector.writer is not None
    collector.writer.drain()
    db = collector.options.database
    [(attrs,)] = collector.client.query(
        f"SELECT SpanAttributes FROM {db}.otel_traces WHERE SpanName = %(n)s", parameters={"n": A.CHANGE_SPAN_NAME}
    ).result_rows
    return dict(attrs)


def test_a_raw_sender_cannot_store_a_person_or_forged_lines_in_a_change(collector: Collector) -> None:
    _send_raw(
        collector,
        {
            A.CHANGE_KIND.key: "deploy",
            A.CHANGE_NAME.key: FORGED,
            A.CHANGE_VERSION.key: "1.0\r\nby role:admin",
            A.CHANGE_ACTOR.key: "jane doe",
            A.CHANGE_STAGE.key: "x" * 5000,
        },
    )
    attrs = _stored(collector)
    assert attrs[A.CHANGE_KIND.key] == "deploy"
    for key in (A.CHANGE_NAME, A.CHANGE_VERSION, A.CHANGE_ACTOR, A.CHANGE_STAGE):
        assert key.key not in attrs, f"{key.key} stored as {attrs.get(key.key)!r}"


def test_a_raw_sender_keeps_what_the_library_would_send(collector: Collector) -> None:
    sent = {A.CHANGE_KIND.key: "flag", A.CHANGE_NAME.key: "triage-model-v4", A.CHANGE_ACTOR.key: "pipeline:ci-main"}
    _send_raw(collector, sent)
    attrs = _stored(collector)
    assert {k: attrs.get(k) for k in sent} == sent


def test_the_contrib_collectors_rules_drop_the_same_values() -> None:
    from clinotel.collector.store.ottl import transform_processor

    text = str(transform_processor())
    assert f'delete_key(attributes, "{A.CHANGE_ACTOR.key}") where IsString' in text
    assert A.ACTOR_PATTERN.replace("\\", "\\\\") in text


def test_a_dry_run_is_never_drawn_as_a_change_that_happened(collector: Collector) -> None:
    from datetime import UTC, datetime, timedelta

    from clinotel.collector.store.rollups import refresh
    from clinotel.dashboards import build_all
    from clinotel.dashboards.check import panel_queries, panel_range
    from clinotel.dashboards.macros import TimeRange, expand
    from clinotel.instrumentation.changes import ChangeSpec, send_changes

    assert collector.http is not None
    spec = ChangeSpec("flag", "triage-model-v4", "off", "rule:canary_kill", {"site": "north"}, result="dry_run")
    send_changes(
        [spec], endpoint=f"http://127.0.0.1:{collector.http.port}", headers={"authorization": f"Bearer {WRITE_TOKEN}"}
    )
    assert collector.writer is not None
    collector.writer.drain()
    refresh(collector.client, collector.options)  # the annotations read the change events' rollup
    end = datetime.now(UTC) + timedelta(minutes=1)
    [q] = [q for q in panel_queries(build_all(collector.options.database)) if q.panel == "annotation Changes"][:1]
    sql = expand(q.sql, panel_range(q.grid, q.variables, TimeRange(end - timedelta(hours=1), end)))
    [(_, title, text, _)] = collector.client.query(sql).result_rows
    assert "dry run" in f"{title} {text}", (title, text)


def test_a_raw_sender_cannot_store_a_number_outside_its_registered_range(collector: Collector) -> None:
    import math

    sent: dict[str, Any] = {
        A.CHANGE_KIND.key: "deploy",
        "clinical.decision.confidence": math.nan,
        "clinical.review.latency_ms": math.inf,
        "clinical.effort.minutes": 5000.0,
        "clinical.queue.depth": -3,
        "clinical.effort.touches": 7,
    }
    _send_raw(collector, sent)
    attrs = _stored(collector)
    assert {k: v for k, v in attrs.items() if k != A.CHANGE_KIND.key} == {"clinical.effort.touches": "7"}
