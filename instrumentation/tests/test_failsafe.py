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


HOSTILE_TEXTS = {
    "url-safe base64 token": "Ab3_-9xZ" * 600,
    "hex": "0123456789abcdef" * 300,
    "percent-encoded @": "%40a4" * 1000,
    "one letter": "a" * 5000,
    "dotted words": "a.b-c+d%e_" * 500,
}


@pytest.mark.parametrize("kind", list(HOSTILE_TEXTS))
def test_scrubbing_a_long_token_costs_time_in_proportion_to_its_length(kind: str) -> None:
    """The e-mail pattern's unbounded local part made a backtracking search quadratic: one 4 KB
    token in an exception's message took 130-470 ms a scrub, holding the GIL over every thread of
    the service (a 2026-12-07 review; each exception is scrubbed about four times). A bound with
    room for a slow machine: 0.5 s for the five texts' worst, ten times over (4-14 ms today)."""
    from clinotel.semconv import scrub

    text = HOSTILE_TEXTS[kind]
    started = time.perf_counter()
    for _ in range(10):
        scrub(text)
    assert time.perf_counter() - started < 0.5


def test_a_paragraph_where_a_code_belongs_is_refused_at_once(production_spans: CapturedSpans) -> None:
    """A model that answers a paragraph or a blob instead of a code: the value was searched whole
    for PHI before its code pattern refused it, in the caller's thread (20,000 characters: 2.5 s,
    a 5 MB blob: minutes). Now the bounded code pattern refuses it first."""
    blob = "Ab3_-9xZ" * 125_000  # 1 MB
    with ct.workflow("triage"), ct.stage("decide") as st:
        started = time.perf_counter()
        st.record_decision(source="model", value=blob)
        st.record_review(action="override", final_value=blob)
        elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"refusing a 1 MB code took {elapsed:.2f} s in the caller's thread"
    assert "clinical.decision.value" not in production_spans.one("decide").attributes
    assert production_spans.telemetry.dropped()["invalid"] == 2


class _BrokenMessageError(Exception):
    def __str__(self) -> str:
        return f"EHR error {self.args[0]}"  # raised without arguments: IndexError


def test_a_workflow_that_fails_with_an_exception_whose_message_raises_is_still_exported(
    production_spans: CapturedSpans,
) -> None:
    """Recording the exception reads str(exc); when that raised, the span was never ended, and
    failed workflows vanished from the error and safety figures (a 2026-12-07 review)."""
    with pytest.raises(_BrokenMessageError), ct.workflow("triage"), ct.stage("decide"):
        raise _BrokenMessageError
    for name in ("workflow triage", "decide"):
        span = production_spans.one(name)
        assert span.status.status_code.name == "ERROR"
        assert span.attributes[A.ERROR_TYPE.key] == "_BrokenMessageError"


def test_an_identifier_from_an_integer_column_and_numpy_numbers_are_taken(production_spans: CapturedSpans) -> None:
    """An MRN read from an integer column left the workflow without a root span; a model's
    `proba.max()` (numpy's float64, a float subclass) was refused, so every confidence was dropped."""
    np = pytest.importorskip("numpy")
    key = b"clinotel-test-pseudonym-key-not-for-production"
    with ct.workflow("triage", identifier=12345678), ct.stage("decide") as st:
        st.record_decision(source="model", value="ESI-2", confidence=np.float64(0.82))
        st.set(A.QUEUE_DEPTH, np.int64(3))
    root = production_spans.one("workflow triage")
    assert root.attributes[A.WORKFLOW_ID.key] == ct.pseudonymize("12345678", key) == ct.pseudonymize(12345678, key)
    decide = production_spans.one("decide").attributes
    assert decide[A.DECISION_CONFIDENCE.key] == 0.82
    assert type(decide[A.DECISION_CONFIDENCE.key]) is float
    assert decide[A.QUEUE_DEPTH.key] == 3
    assert type(decide[A.QUEUE_DEPTH.key]) is int
    assert production_spans.telemetry.dropped().get("invalid", 0) == 0
    with ct.workflow("triage", identifier=True):  # type: ignore[arg-type]
        pass
    assert production_spans.telemetry.dropped()["invalid"] == 1, "a bool is not an identifier"


@pytest.mark.parametrize("unit", ["-mrn", "/dob", ".acct", "patients/a-"])
def test_a_text_of_repeated_labels_costs_time_in_proportion_to_its_length(unit: str) -> None:
    """An identifier's label read its value to the end of the text before looking for a digit, from
    every label: `-mrn` repeated over 4.4 KB took 37 ms a scrub against 4 ms for prose of that
    length (a review). Against prose in the same run, so the machine's speed cancels: within 4x
    (1-2x today; 8-10x before)."""
    from clinotel.semconv import scrub

    def fastest(text: str) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            scrub(text)
            times.append(time.perf_counter() - started)
        return min(times)

    prose = ("the patient was seen in the emergency department and triaged " * 80)[:4400]
    assert fastest((unit * 2000)[:4400]) < 4 * fastest(prose)
