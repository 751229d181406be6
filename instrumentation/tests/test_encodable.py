"""One caller's malformed span or time never costs the other spans of its batch: whatever leaves
the PHI gate is what the official OTLP encoder takes, and the clinical code never sees an error.

Each case was found by an attacker's review (2026-12-06) with the official encoder behind the
gate: before, the encoder refused the whole batch (every other workflow's spans and the health
counts with it) or the gate itself raised."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, Status

import clinotel.instrumentation as ct
from clinotel.instrumentation.changes import ChangeSpec, send_changes
from clinotel.instrumentation.testing import TEST_PSEUDONYM_KEY, isolated
from clinotel.semconv import MAX_TEXT, REDACTED
from clinotel.semconv import attributes as A


class Encoding(SpanExporter):
    """What the OTLP exporters do first: the batch encoded to protobuf, all of it or nothing."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.wire = b""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.wire += encode_spans(spans).SerializeToString()
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


@contextmanager
def _configured(mode: str = "production") -> Iterator[tuple[Encoding, ct.Telemetry]]:
    """clinotel in `mode`, batching into an encoding exporter."""
    exporter = Encoding()
    with isolated():
        telemetry = ct.configure(
            service_name="ed-triage", tenant="t", pseudonym_key=TEST_PSEUDONYM_KEY, exporter=exporter,
            set_global=False, mode=mode,
        )  # fmt: skip
        yield exporter, telemetry
        telemetry.shutdown()


@pytest.fixture
def encoded() -> Iterator[tuple[Encoding, ct.Telemetry]]:
    """clinotel in production mode, batching into the encoding exporter."""
    with _configured() as pair:
        yield pair


def _clean_workflow(i: int) -> None:
    with ct.workflow("triage", identifier=f"ENC{i}", site="north"), ct.stage("decide") as st:
        st.record_decision(source="model", value="ESI-2", confidence=0.8)


def _exported(exporter: Encoding) -> tuple[list[str], dict[str, int]]:
    """The names of the spans exported (health spans apart) and the health counts they carried."""
    counts: dict[str, int] = {}
    for s in exporter.spans:
        if s.name == A.HEALTH_SPAN_NAME:
            for key, n in (s.attributes or {}).items():
                counts[key] = counts.get(key, 0) + int(n)  # type: ignore[call-overload]
    return [s.name for s in exporter.spans if s.name != A.HEALTH_SPAN_NAME], counts


def _raw(telemetry: ct.Telemetry, make: Callable[[trace.Tracer], None]) -> None:
    """`make` run inside a workflow with a tracer of clinotel's provider (raw API calls)."""
    tracer = telemetry.provider.get_tracer("ehr-client")
    with ct.workflow("triage", identifier="ENC-RAW"):
        make(tracer)


def _ended(**end: object) -> Callable[[trace.Tracer], None]:
    return lambda tracer: tracer.start_span("fetch chart").end(**end)  # type: ignore[arg-type]


REFUSED_BY_THE_ENCODER: dict[str, Callable[[trace.Tracer], None]] = {
    "an end time in float seconds": _ended(end_time=time.time()),
    "a negative end time": _ended(end_time=-1),
    "an event time in float seconds": lambda t: _end(
        t.start_span("s"), lambda s: s.add_event("e", timestamp=time.time())
    ),  # type: ignore[arg-type]
    "a kind given as a string": lambda t: t.start_span("s", kind="server").end(),  # type: ignore[arg-type]
    "a status code given as an int": lambda t: _end(t.start_span("s"), lambda s: s.set_status(Status(2))),  # type: ignore[arg-type]
    "a link's trace id past 128 bits": lambda t: t.start_span(
        "s", links=[Link(SpanContext(2**128, 1, True), {"r": "x"})]
    ).end(),
}


def _end(span: trace.Span, do: Callable[[trace.Span], None]) -> None:
    do(span)
    span.end()


@pytest.mark.parametrize("case", sorted(REFUSED_BY_THE_ENCODER))
def test_a_span_the_encoder_refuses_is_dropped_alone_and_counted(
    case: str, encoded: tuple[Encoding, ct.Telemetry]
) -> None:
    exporter, telemetry = encoded
    logging.getLogger("opentelemetry").disabled = True  # the SDK logs what it refuses at creation
    try:
        _clean_workflow(1)
        _raw(telemetry, REFUSED_BY_THE_ENCODER[case])
        _clean_workflow(2)
        assert telemetry.force_flush()
    finally:
        logging.getLogger("opentelemetry").disabled = False
    names, counts = _exported(exporter)
    assert names.count("decide") == 2, "the clean workflows' spans were lost with the bad one"
    assert names.count("workflow triage") == 3
    assert "s" not in names
    assert "fetch chart" not in names
    assert counts[A.TELEMETRY_DROPPED_INVALID.key] == 1


NOT_TEXT: dict[str, Callable[[trace.Tracer], None]] = {
    "a span named None": lambda t: t.start_span(None).end(),  # type: ignore[arg-type]
    "a span named by a number": lambda t: t.start_span(123).end(),  # type: ignore[arg-type]
    "a span named in bytes": lambda t: t.start_span(b"chart of MRN 00123456").end(),  # type: ignore[arg-type]
    "an event named in bytes": lambda t: _end(t.start_span("s"), lambda s: s.add_event(b"MRN 00123456")),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(NOT_TEXT))
def test_a_name_that_is_not_text_is_redacted_whole(case: str, encoded: tuple[Encoding, ct.Telemetry]) -> None:
    """The scrubber cannot read it and the encoder writes bytes out as text: before, the gate raised
    on it (the batch lost) or handed it on unread."""
    exporter, telemetry = encoded
    _clean_workflow(1)
    _raw(telemetry, NOT_TEXT[case])
    assert telemetry.force_flush()
    names, counts = _exported(exporter)
    assert names.count("decide") == 1
    assert REDACTED in names or any(e.name == REDACTED for s in exporter.spans for e in s.events)
    assert b"00123456" not in exporter.wire
    assert counts[A.TELEMETRY_REDACTED.key] == 1


def test_text_the_encoder_cannot_carry_is_repaired_not_lost(encoded: tuple[Encoding, ct.Telemetry]) -> None:
    """A lone surrogate (a file name decoded with surrogateescape) in a span name, a status message
    set by the SDK from an escaping exception, an event name, a tracer's name: each replaced by
    U+FFFD; an endless
    name is cut to `MAX_TEXT` characters (the PHI patterns take time that grows faster than it)."""
    exporter, telemetry = encoded
    tracer = telemetry.provider.get_tracer("ehr-client")
    with ct.workflow("triage", identifier="ENC1"):
        with pytest.raises(OSError, match="cannot read"), tracer.start_as_current_span("read /data/in/\udcff.hl7"):
            raise OSError("cannot read /data/in/\udcff.hl7 for MRN 00123456")
        _end(tracer.start_span("parse"), lambda s: s.add_event("segment \udcff"))
        tracer.start_span("x" * (40 * MAX_TEXT)).end()
        telemetry.provider.get_tracer("hl7-\udcff").start_span("parse segment").end()
    _clean_workflow(2)
    assert telemetry.force_flush()
    names, _ = _exported(exporter)
    assert "read /data/in/\ufffd.hl7" in names
    assert "x" * MAX_TEXT in names
    assert names.count("decide") == 1
    assert b"00123456" not in exporter.wire
    assert "cannot read /data/in/\ufffd.hl7".encode() in exporter.wire
    assert "segment \ufffd".encode() in exporter.wire
    assert "hl7-\ufffd".encode() in exporter.wire
    assert "parse segment" in names


TIMES: dict[str, Callable[[], None]] = {
    "a stage started in float seconds": lambda: _in_workflow(lambda: ct.stage("ingest", start_time=time.time())),  # type: ignore[arg-type]
    "a stage started before 1970": lambda: _in_workflow(lambda: ct.stage("ingest", start_time=-1)),
    "a workflow started past 2**64 ns": lambda: _enter(ct.workflow("triage", start_time=2**64)),
}


def _enter(scope: ct.StageScope | ct.WorkflowScope) -> None:
    with scope:
        pass


def _in_workflow(make: Callable[[], ct.StageScope]) -> None:
    with ct.workflow("triage"):
        _enter(make())


@pytest.mark.parametrize("case", sorted(TIMES))
def test_a_time_otlp_cannot_carry_is_refused_by_name(case: str) -> None:
    """Strict mode names the argument; production mode counts it and starts the span now."""
    with _configured("strict"), pytest.raises(ct.TelemetryValidationError, match="start_time is nanoseconds"):
        TIMES[case]()
    with _configured() as (exporter, telemetry):
        before = time.time_ns()
        TIMES[case]()
        _clean_workflow(1)
        assert telemetry.force_flush()
    names, counts = _exported(exporter)
    assert names.count("decide") == 1
    assert counts[A.TELEMETRY_DROPPED_INVALID.key] == 1
    started = [s.start_time for s in exporter.spans if s.name in ("ingest", "workflow triage")]
    assert started
    assert all(t is not None and t >= before for t in started)


def test_a_change_at_a_time_otlp_cannot_carry_is_refused_not_recorded_now(
    encoded: tuple[Encoding, ct.Telemetry],
) -> None:
    exporter, telemetry = encoded
    with _configured("strict"), pytest.raises(ct.TelemetryValidationError, match="at_ns"):
        ct.record_change("model", "triage-gbm", version="4.1.0", at_ns=time.time())  # type: ignore[arg-type]
    ct.record_change("model", "triage-gbm", version="4.1.0", at_ns=-5)
    ct.record_change("model", "triage-gbm", version="4.1.0", at_ns=2**64)
    _clean_workflow(1)
    assert telemetry.force_flush()
    names, counts = _exported(exporter)
    assert A.CHANGE_SPAN_NAME not in names, "a change was recorded at a time it did not happen"
    assert names.count("decide") == 1
    assert counts[A.TELEMETRY_DROPPED_INVALID.key] == 2


def test_a_carrier_enqueued_before_1970_is_refused(encoded: tuple[Encoding, ct.Telemetry]) -> None:
    exporter, telemetry = encoded
    with ct.workflow("triage", identifier="ENC1") as wf:
        carrier = wf.enqueue("triage_nurse")
    carrier["clinotel-enqueued-at"] = "-1"
    with _configured("strict"), pytest.raises(ct.TelemetryValidationError, match="enqueue time"):
        ct.dequeue(carrier).__enter__()
    with ct.dequeue(carrier), ct.stage("decide"):
        pass
    assert telemetry.force_flush()
    names, counts = _exported(exporter)
    assert "queue" not in names
    assert names.count("decide") == 1
    assert counts[A.TELEMETRY_DROPPED_INVALID.key] == 1


@pytest.mark.parametrize("at", [datetime(1969, 12, 31, tzinfo=UTC), datetime(2600, 1, 1, tzinfo=UTC)])
def test_send_changes_refuses_a_change_otlp_cannot_date_and_sends_none(at: datetime) -> None:
    exporter = Encoding()
    changes = [
        ChangeSpec(kind="model", name="triage-gbm", version="4.1.0"),
        ChangeSpec(kind="flag", name="auto-triage", version="off", at=at),
    ]
    with pytest.raises(ct.TelemetryValidationError, match=r"change 2: `at`"):
        send_changes(changes, endpoint="http://127.0.0.1:9", exporter=exporter)
    assert exporter.spans == []


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback OTLP/HTTP endpoint that accepts every request and keeps its body."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def _received(bodies: list[bytes]) -> list[str]:
    names = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        names += [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    return names


def test_with_the_default_otlp_http_exporter_the_rest_of_the_batch_arrives(
    receiver: tuple[str, list[bytes]],
) -> None:
    """The OTLP/HTTP exporter (clinotel's default) does not raise on a batch it cannot encode: it
    logs, and returns FAILURE. The gate looks for the span the encoder refuses then too."""
    endpoint, bodies = receiver
    logging.getLogger("opentelemetry").disabled = True
    try:
        with isolated():
            telemetry = ct.configure(
                service_name="ed-triage", tenant="t", pseudonym_key=TEST_PSEUDONYM_KEY, endpoint=endpoint,
                set_global=False,
            )  # fmt: skip
            _clean_workflow(1)
            _raw(telemetry, _ended(end_time=time.time()))
            _clean_workflow(2)
            assert telemetry.force_flush()
            telemetry.shutdown()
    finally:
        logging.getLogger("opentelemetry").disabled = False
    names = _received(bodies)
    assert names.count("decide") == 2
    assert "fetch chart" not in names
    assert A.HEALTH_SPAN_NAME in names


class _SendsThenRaises(Encoding):
    """A tee: one backend took the batch, the other failed."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        super().export(spans)
        raise ConnectionError("the second backend is down")


def test_a_batch_the_encoder_takes_is_never_sent_twice() -> None:
    exporter = _SendsThenRaises()
    gate = ct.SanitizingSpanExporter(exporter)
    spans = _spans_of(lambda _: _clean_workflow(1))
    with pytest.raises(ConnectionError):
        gate.export(spans)
    assert len(exporter.spans) == len(spans)


def test_a_batch_of_one_refused_span_still_reports_it() -> None:
    """With a span exported alone (SimpleSpanProcessor, or light traffic), dropping it left no
    span to carry its count: the count goes out on a health span of its own."""
    exporter = Encoding()
    gate = ct.SanitizingSpanExporter(exporter)
    logging.getLogger("opentelemetry").disabled = True
    try:
        (bad,) = _spans_of(lambda provider: provider.get_tracer("ehr").start_span("s").end(end_time=-1))
    finally:
        logging.getLogger("opentelemetry").disabled = False
    gate.export([bad])
    names, counts = _exported(exporter)
    assert names == []
    assert counts == {A.TELEMETRY_DROPPED_INVALID.key: 1}


def test_a_resources_schema_url_leaves_scrubbed() -> None:
    resource = Resource.create({"service.name": "ed-triage"}, schema_url="https://x.example/jane.doe@example.org")
    exporter = Encoding()
    gate = ct.SanitizingSpanExporter(exporter)
    gate.export(_spans_of(lambda _: _clean_workflow(1), resource=resource))
    assert b"jane.doe" not in exporter.wire
    assert gate.counters.totals()["redacted"] == 1


def _spans_of(make: Callable[[TracerProvider], None], resource: Resource | None = None) -> list[ReadableSpan]:
    """The spans `make` makes (clinotel configured on the provider it is given), as they leave
    the SDK, before any gate."""
    raw = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource.create({"service.name": "ed-triage"}))
    provider.add_span_processor(SimpleSpanProcessor(raw))
    with isolated():
        ct.configure(tracer_provider=provider, export=False, pseudonym_key=TEST_PSEUDONYM_KEY)
        make(provider)
    return list(raw.get_finished_spans())
