"""What the collector drops of a span's attributes is counted (migration 22), as a service's
clinotel gate counts its own: a service without the library (a plain OpenTelemetry SDK) that sent
a confidence of 1.5 and a queue depth of -1 lost both without a count anywhere (an outside
audit). The counts land on the span's row and, per tenant and service, in
`clinotel_sdk_telemetry` under the instance `clinotel-collector`, where the telemetry-health
dashboard, the report and the `sdk_phi_dropped` rule read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinotel.alerts import default_rules_path
from clinotel.alerts.queries import rule_sql
from clinotel.alerts.rules import load
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.instrumentation.testing import FakeClock, capture
from clinotel.instrumentation.testing.workflows import triage
from clinotel.model import tables
from collector.tests.test_outcome_join import _store


def _plain_sdk_spans(service: str) -> list[Any]:
    """Spans a service writes by hand with the OpenTelemetry SDK, as another language's would."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("hand-written")
    with tracer.start_as_current_span("decide") as span:
        span.set_attributes(
            {
                "clinical.workflow.kind": "triage",
                "clinical.workflow.stage": "decide",
                "clinical.decision.source": "model",
                "clinical.decision.confidence": 1.5,  # out of 0..1: invalid
                "clinical.queue.depth": -1,  # out of 0..: invalid
                "clinical.decision.risk": ["high", "low"],  # an array for a registered key: invalid
                "clinical.decision.value": "123-45-6789",  # fits the code's form, reads as an SSN: PHI
                # values failing their own check that look like PHI count as PHI, as the library
                # counts them (they were counted invalid, and sdk_phi_dropped never opened: a review)
                "clinical.workflow.id": "MRN 12345678",  # no pseudonym: PHI
                "clinical.cohort.sex": "jane.doe@example.org",  # not of the closed set, an e-mail: PHI
                "http.request.method": "GET",  # registered (the HTTP conventions): kept
                "db.system": "postgresql",  # not registered
                "peer.service": "ehr",  # not registered
            }
        )
    provider.shutdown()
    return list(exporter.get_finished_spans())


def test_what_the_collector_drops_of_a_plain_sdk_span_is_counted_per_service(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    service = "plain-sdk-scheduler"
    _store(client, pipeline, tmp_path / "plain.wal", _plain_sdk_spans(service))
    drops = ", ".join(tables.TRACES_DROP_COLUMNS)
    row = client.query(
        f"SELECT {drops}, SpanAttributes FROM {options.name(schema.TRACES)} WHERE ServiceName = {{s:String}}",
        parameters={"s": service},
    ).result_rows
    assert [tuple(r[:3]) for r in row] == [(2, 3, 3)]
    assert row[0][3] == {"clinical.workflow.kind": "triage", "clinical.workflow.stage": "decide",
                         "clinical.decision.source": "model", "http.request.method": "GET"}  # fmt: skip
    counted = client.query(
        f"SELECT TenantId, sum(Unregistered), sum(Invalid), sum(Phi) FROM {options.name(tables.SDK_TELEMETRY)} "
        "WHERE ServiceName = {s:String} AND ServiceInstance = {i:String} GROUP BY TenantId",
        parameters={"s": service, "i": tables.COLLECTOR_DROPS_INSTANCE},
    ).result_rows
    assert counted == [("st-marys", 2, 3, 3)]
    # the default rule that tickets a service's PHI drops now sees the collector's too
    rule = next(r for r in load(default_rules_path()).rules if r.name == "sdk_phi_dropped")
    rows = list(
        client.query(rule_sql(rule, options.database, datetime.now(UTC) + timedelta(minutes=1))).named_results()
    )
    assert any(r["grp"] == service and r["value"] >= 1 for r in rows), rows


def test_the_library_s_spans_leave_the_collector_nothing_to_count(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    """A service with the library drops and counts before export: the collector's counts stay
    empty, so nothing is counted twice."""
    clock = FakeClock()
    with capture(clock=clock, tenant="st-marys", service_name="library-triage") as spans:
        triage(clock, "CD-1")
    _store(client, pipeline, tmp_path / "library.wal", list(spans.all))
    drops = " + ".join(tables.TRACES_DROP_COLUMNS)
    assert client.query(
        f"SELECT count(), sum({drops}) FROM {options.name(schema.TRACES)} WHERE ServiceName = 'library-triage'"
    ).result_rows == [(len(spans.all), 0)]
    assert (
        client.command(
            f"SELECT count() FROM {options.name(tables.SDK_TELEMETRY)} WHERE ServiceName = 'library-triage' "
            f"AND ServiceInstance = '{tables.COLLECTOR_DROPS_INSTANCE}'"
        )
        == 0
    )
