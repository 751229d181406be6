"""Telemetry never breaks or stalls the clinical code it observes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import Tracer

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import CapturedSpans, FakeClock
from clinotel.instrumentation.testing.workflows import triage
from clinotel.semconv import attributes as A


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A collector that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    t.join(timeout=2)
    for c in held:
        c.close()
    server.close()


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("collector", ["blackhole", "refused"])
def test_an_unreachable_collector_does_not_block_workflows(
    protocol: str, collector: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = request.getfixturevalue("blackhole") if collector == "blackhole" else _closed_port()
    # A small queue and a short export timeout keep the final flush at shutdown short; the
    # queue overflowing (and dropping) is part of what this test exercises.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "512")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512")
    tel = ct.configure(endpoint=endpoint, protocol=protocol, set_global=False, pseudonym_key="k" * 32)
    clock = FakeClock()
    started = time.perf_counter()
    for i in range(400):  # 400 x 8 spans overflow the queue on purpose
        triage(clock, f"ENC-{i}")
    elapsed = time.perf_counter() - started
    # With a 10 s export timeout, a workflow that waited on the collector would take seconds;
    # these finish in the SDK's own span cost (well under a millisecond each).
    assert elapsed < 5.0, f"workflows took {elapsed:.1f} s with the collector down"
    stopper = threading.Thread(target=tel.shutdown, daemon=True)
    stopper.start()
    stopper.join(timeout=15)


class BoomError(Exception):
    pass


def test_internal_errors_are_contained_in_production(
    production_spans: CapturedSpans, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_start_span(*args: object, **kwargs: object) -> None:
        raise BoomError("tracer exploded")

    monkeypatch.setattr(Tracer, "start_span", broken_start_span)
    calls = []

    @ct.stage("decide")
    def decide() -> str:
        calls.append(1)
        ct.record_decision(source="model", value="ESI-2")
        return "ESI-2"

    with ct.workflow("triage") as wf:
        assert decide() == "ESI-2"
        carrier = wf.enqueue("q")
    with ct.dequeue(carrier):
        pass
    assert calls == [1]
    assert production_spans.telemetry.dropped()["internal_errors"] >= 2


def test_internal_errors_surface_in_strict_mode(spans: CapturedSpans, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_start_span(*args: object, **kwargs: object) -> None:
        raise BoomError("tracer exploded")

    monkeypatch.setattr(Tracer, "start_span", broken_start_span)
    with pytest.raises(BoomError), ct.workflow("triage"):
        pass


def test_production_mode_drops_and_counts_instead_of_raising(production_spans: CapturedSpans) -> None:
    with ct.workflow("Bad Kind", site="north") as wf:
        wf.set("not.registered", "x")
        with ct.stage("decide") as st:
            st.record_decision(source="model", value="ESI-2", confidence=7.0, model_name="gbm")
            st.record_review(action="shrug")
            st.set("clinical.decision.risk", "catastrophic")
        with ct.stage("Review By Dr Smith"):
            pass
    root = production_spans.one("workflow unknown")
    assert root.attributes["clinical.site"] == "north"
    decide = production_spans.one("decide")
    assert decide.attributes["clinical.decision.value"] == "ESI-2", "valid fields survive"
    assert decide.attributes["clinical.decision.model.name"] == "gbm"
    assert "clinical.decision.confidence" not in decide.attributes
    assert "clinical.review.action" not in decide.attributes
    assert production_spans.named("invalid_stage")
    counts = production_spans.telemetry.dropped()
    assert counts["unregistered"] == 1
    assert counts["invalid"] == 5  # kind, confidence, review action, risk, stage name

    # the counts leave the process as a clinotel.telemetry span with the next export
    with ct.workflow("triage"):
        pass
    health = production_spans.health()
    assert health["clinotel.telemetry.dropped.unregistered"] == 1
    assert health["clinotel.telemetry.dropped.invalid"] == 5


def test_strict_mode_names_the_rule(spans: CapturedSpans) -> None:
    with ct.workflow("triage"), ct.stage("decide") as st:
        with pytest.raises(ct.TelemetryValidationError, match=r"confidence: .*outside 0\.\.1"):
            st.record_decision(source="model", confidence=7.0)
        with pytest.raises(ct.TelemetryValidationError, match="not a registered"):
            st.set("patient.name", "x")
    with pytest.raises(ct.TelemetryValidationError, match="outside a workflow"), ct.stage("decide"):
        pass


def test_a_scope_whose_span_failed_to_open_is_a_handle_that_records_nothing(
    production_spans: CapturedSpans, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_start_span(*args: object, **kwargs: object) -> None:
        raise BoomError("tracer exploded")

    monkeypatch.setattr(Tracer, "start_span", broken_start_span)
    with ct.workflow("triage", identifier="ENC-1", site="north") as wf, ct.stage("decide") as st:
        assert not wf.span.is_recording()
        assert (wf.kind, wf.workflow_id, dict(wf.place)) == ("triage", None, {})
        st.record_decision(source="model", value="ESI-2")
        st.record_outcome(status="completed")
        wf.set(A.ACTION_AUTOMATED, True)
    monkeypatch.undo()
    assert production_spans.telemetry.dropped()["internal_errors"] == 2
    with ct.workflow("triage"):  # the next workflow records again
        pass
    assert production_spans.named("workflow triage")
