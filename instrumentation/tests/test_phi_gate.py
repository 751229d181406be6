"""No PHI-like value leaves the process, wherever it was put: attributes, names, events,
exception messages, status messages, links, resources, or spans from other instrumentations."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, ItemsView, Iterator
from types import MappingProxyType

import pytest
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import clinotel.instrumentation as ct
from clinotel.instrumentation._internal.fields import SPAN_VALIDATORS
from clinotel.instrumentation._internal.gate import AttributeGate
from clinotel.instrumentation.testing import TEST_PSEUDONYM_KEY, CapturedSpans, capture, isolated
from clinotel.instrumentation.testing.phi import PHI_CORPUS, leaks
from clinotel.semconv import UUID_PATTERN, AttributeValue, pseudonymize
from clinotel.semconv import attributes as A


def _strings(spans: list[ReadableSpan]) -> Iterator[str]:
    """Every string a span exports, but a whole UUID: the SDK's own `service.instance.id`, drawn
    at random once per process, held a corpus piece such as `1984` about once in a few hundred
    workers (it failed three tests of one worker on 2026-12-05), and a whole UUID is kept as it
    is by the PHI rules anyway."""
    for s in spans:
        yield s.name
        yield s.status.description or ""
        for v in (*s.attributes.values(), *s.resource.attributes.values()):
            if not (isinstance(v, str) and re.fullmatch(UUID_PATTERN, v)):
                yield str(v)
        yield from (*s.attributes.keys(), *s.resource.attributes.keys())
        for e in s.events:
            yield e.name
            yield from (str(v) for v in e.attributes.values())
        for link in s.links:
            yield from (str(v) for v in link.attributes.values())


def _assert_no_leak(spans: list[ReadableSpan]) -> None:
    exported = "\n".join(_strings(spans))
    wire = encode_spans(spans).SerializeToString()
    for kind, value in PHI_CORPUS:
        for piece in leaks(value):
            assert piece not in exported, f"{kind} {piece!r} was exported"
            if len(piece) >= 8:
                assert piece.encode() not in wire, f"{kind} {piece!r} is in the OTLP bytes"


class PatientNotFoundError(Exception):
    pass


def test_phi_everywhere_is_never_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    # PHI smuggled into the resource through the environment, too
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "patient.mrn=MRN 00123456,service.namespace=Dr Smith")
    with capture(mode="production") as spans:
        foreign = spans.telemetry.provider.get_tracer("ehr-client")
        for i, (kind, value) in enumerate(PHI_CORPUS):
            with ct.workflow("triage", identifier=value, site=value) as wf:
                wf.set("patient.name", value)  # unregistered key
                wf.set(A.DECISION_VALUE, value)  # a code that looks like PHI
                with ct.stage("decide") as st:
                    st.record_decision(source="model", value=value, model_name=value)
                    st.record_review(action="override", reason=value, final_value=value)
                    st.span.add_event(f"lookup {value}", {"exception.message": value, "note": value})
                    st.span.set_status(Status(StatusCode.ERROR, f"failed for {value}"))
                with pytest.raises(PatientNotFoundError), ct.stage("ingest"):
                    raise PatientNotFoundError(f"no chart for {value} ({kind})")
                with foreign.start_as_current_span(
                    f"GET /patients/{value}",
                    attributes={"url.full": f"https://ehr.example/p?q={value}", "server.address": value},
                    links=[Link(wf.span.get_span_context(), {"exception.message": value})],
                ):
                    pass
                with ct.stage(f"stage {i} for {value}"):
                    pass
        exported = spans.all
    assert len(exported) > 5 * len(PHI_CORPUS)
    _assert_no_leak(exported)

    health = {k.rsplit(".", 1)[-1]: v for k, v in CapturedSpans.health(spans).items()}
    assert health["unregistered"] >= 2 * len(PHI_CORPUS)
    assert health["redacted"] >= len(PHI_CORPUS)
    assert spans.telemetry.dropped()["phi"] >= len(PHI_CORPUS)


@pytest.mark.parametrize(("kind", "value"), PHI_CORPUS[::5])
def test_strict_mode_refuses_phi_with_a_message_that_does_not_repeat_it(kind: str, value: str) -> None:
    with capture() as spans, ct.workflow("triage"), ct.stage("decide") as st:
        with pytest.raises(ct.TelemetryValidationError) as info:
            st.record_decision(source="model", value=value)
        assert all(piece not in str(info.value) for piece in leaks(value)), str(info.value)
    assert spans.one("decide").attributes.get(A.DECISION_VALUE.key) is None


def test_strict_mode_refuses_a_raw_identifier_as_workflow_id() -> None:
    with (
        capture(),
        pytest.raises(ct.TelemetryValidationError, match="pseudonym"),
        ct.workflow("triage", workflow_id="MRN00123456"),
    ):
        pass


def test_an_identifier_without_a_key_is_never_exported() -> None:
    with capture(mode="production", pseudonym_key=None) as spans, ct.workflow("triage", identifier="MRN00123456"):
        pass
    root = spans.one("workflow triage")
    assert A.WORKFLOW_ID.key not in root.attributes
    assert spans.telemetry.dropped()["invalid"] == 1


def _clean_triage(i: int) -> None:
    with ct.workflow("triage", identifier=f"ENC{i}", site="north") as wf:
        with ct.stage("queue", attributes={A.QUEUE_NAME.key: "triage_nurse", A.QUEUE_DEPTH.key: 4}):
            pass
        with ct.stage("decide") as st:
            st.record_decision(source="model", value="ESI-3", confidence=0.5)
        wf.set(A.ACTION_AUTOMATED, True)


def test_what_the_gate_has_confirmed_vouches_for_nothing_set_later_through_the_raw_api() -> None:
    """The gate confirms repeated spans by what it has already seen (their resource, names and
    code values); a value changed on the span afterwards, on a key or of a type it has seen
    clean, must still be refused or redacted."""
    with capture(mode="production") as spans:
        for i in range(3):  # every name, code and the resource now confirmed clean
            _clean_triage(i)
        clean = len(spans.all)
        assert spans.telemetry.dropped() == dict.fromkeys(spans.telemetry.dropped(), 0)
        with ct.workflow("triage", identifier="ENC9", site="north") as wf:
            with ct.stage("queue", attributes={A.QUEUE_NAME.key: "triage_nurse", A.QUEUE_DEPTH.key: 4}) as st:
                st.span.set_attribute(A.QUEUE_DEPTH.key, True)  # True == 1: not an integer
                st.span.set_attribute(A.SITE.key, "MRN 00123456")  # over a confirmed ("north")
            with ct.stage("decide") as st:
                st.record_decision(source="model", value="ESI-3", confidence=0.5)
                st.span.set_attribute(A.DECISION_CONFIDENCE.key, 1)  # an int where a float is: allowed
                st.span.set_attribute(A.DECISION_VALUE.key, "Jane Doe 1956-03-02")
                st.span.set_attribute("patient.name", "Jane Doe")
            wf.set(A.ACTION_AUTOMATED, True)
            wf.span.set_attribute(A.ACTION_AUTOMATED.key, 1)  # 1 == True: not a boolean
        exported = spans.all[clean:]
    queue = next(s for s in exported if s.name == "queue")
    decide = next(s for s in exported if s.name == "decide")
    root = next(s for s in exported if s.name == "workflow triage")
    assert A.QUEUE_DEPTH.key not in queue.attributes
    assert A.SITE.key not in queue.attributes
    assert decide.attributes[A.DECISION_CONFIDENCE.key] == 1
    assert A.DECISION_VALUE.key not in decide.attributes
    assert "patient.name" not in decide.attributes
    assert A.ACTION_AUTOMATED.key not in root.attributes
    _assert_no_leak(exported)
    dropped = spans.telemetry.dropped()
    assert dropped["invalid"] == 2
    assert dropped["phi"] == 2
    assert dropped["unregistered"] == 1


def test_a_number_the_gate_has_confirmed_vouches_for_no_equal_value_of_another_type() -> None:
    """True == 1 == 1.0 and 4 == 4.0, equally hashed: the gate remembers numbers and booleans
    with their type, so a confirmed 1 lets neither True nor 1.0 through where they are invalid."""
    with capture(mode="production") as spans:
        for _ in range(2):  # the second time, every value is confirmed from memory
            with ct.workflow("triage") as wf, ct.stage("queue", attributes={A.QUEUE_DEPTH.key: 1}) as st:
                st.set(A.DECISION_CONFIDENCE, 1.0)
                wf.set(A.ACTION_AUTOMATED, True)
        clean = len(spans.all)
        with ct.workflow("triage") as wf, ct.stage("queue") as st:
            st.span.set_attribute(A.QUEUE_DEPTH.key, True)  # a boolean where an integer is
            st.span.set_attribute(A.DECISION_CONFIDENCE.key, True)  # a boolean where a number is
            wf.span.set_attribute(A.ACTION_AUTOMATED.key, 1)  # an integer where a boolean is
        with ct.workflow("triage"), ct.stage("queue") as st:
            st.span.set_attribute(A.QUEUE_DEPTH.key, 1.0)  # a float where an integer is
            st.span.set_attribute(A.DECISION_CONFIDENCE.key, 1)  # an integer where a number is: allowed
        exported = spans.all[clean:]
    queues = [s for s in exported if s.name == "queue"]
    roots = [s for s in exported if s.name == "workflow triage"]
    assert [dict(q.attributes).get(A.QUEUE_DEPTH.key) for q in queues] == [None, None]
    assert [dict(q.attributes).get(A.DECISION_CONFIDENCE.key) for q in queues] == [None, 1]
    assert A.ACTION_AUTOMATED.key not in roots[0].attributes
    assert spans.telemetry.dropped()["invalid"] == 4


def test_the_workflows_own_pseudonym_vouches_for_no_other_value_under_its_key() -> None:
    """The gate takes the pseudonym the library made (the tenant's HMAC, in its form by
    construction) without meeting its validator; any other value set on the key through the raw
    API still meets it."""
    with capture(mode="production") as spans:
        with ct.workflow("triage", identifier="ENC-77") as wf:
            mine = wf.workflow_id
        assert mine is not None
        with ct.workflow("triage", identifier="ENC-78") as wf:
            wf.span.set_attribute(A.WORKFLOW_ID.key, "MRN 00123456")
        with ct.workflow("triage", identifier="ENC-79") as wf:
            wf.span.set_attribute(A.WORKFLOW_ID.key, mine.upper())  # hex, but not the pseudonym form
    roots = [s for s in spans.all if s.name == "workflow triage"]
    assert [dict(r.attributes).get(A.WORKFLOW_ID.key) for r in roots] == [mine, None, None]
    _assert_no_leak(spans.all)
    assert spans.telemetry.dropped()["phi"] == 2


def test_vouched_values_skip_the_validator_and_only_the_latest_are_kept() -> None:
    key = A.WORKFLOW_ID.key
    checked: list[object] = []

    def check(value: object) -> AttributeValue:
        checked.append(value)
        return SPAN_VALIDATORS[key](value)

    gate = AttributeGate({key: check}, unique=frozenset({key}), vouched_limit=2)
    made = [pseudonymize(f"ENC-{i}", TEST_PSEUDONYM_KEY.encode()) for i in range(3)]
    for pseudonym in made:
        gate.vouch(key, pseudonym)
    assert all(gate.passes({key: p}) for p in made)
    assert checked == [made[0]]  # the oldest was forgotten: it met the validator, the others did not
    assert gate.passes({key: made[0]})
    assert checked == [made[0], made[0]]  # and it is not remembered: it meets the validator again
    assert not gate.passes({key: made[1].upper()})


def _sdk_spans(run: Callable[[TracerProvider], None]) -> list[ReadableSpan]:
    """The spans `run` makes (clinotel configured in production mode on a provider of one
    resource, given to `run` too) as they leave the SDK, before any gate."""
    raw = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "ed-triage"}))
    provider.add_span_processor(SimpleSpanProcessor(raw))
    with isolated():
        ct.configure(tracer_provider=provider, export=False, pseudonym_key=TEST_PSEUDONYM_KEY, mode="production")
        run(provider)
    return list(raw.get_finished_spans())


def _raw_spans(n: int, dirty_at: int = -1, dirt: Callable[[Span], None] | None = None) -> list[ReadableSpan]:
    """The spans of `n` clean triage workflows (three each) as they leave the SDK, before any
    gate, all of one provider's resource; the workflow at `dirty_at` has `dirt` done to its
    decide span through the raw API."""

    def workflows(_: TracerProvider) -> None:
        for i in range(n):
            with ct.workflow("triage", identifier=f"ENC{i}", site="north") as wf:
                with ct.stage("queue", attributes={A.QUEUE_NAME.key: "triage_nurse", A.QUEUE_DEPTH.key: 4}):
                    pass
                with ct.stage("decide") as st:
                    st.record_decision(source="model", value="ESI-3", confidence=0.5)
                    if i == dirty_at and dirt is not None:
                        dirt(st.span)
                wf.set(A.ACTION_AUTOMATED, True)

    return _sdk_spans(workflows)


def _link(span: Span) -> None:
    span.add_link(span.get_span_context(), {"note": "Jane Doe"})


BATCH_DIRT: dict[str, Callable[[Span], None]] = {
    "an unregistered key": lambda s: s.set_attribute("patient.name", "Jane Doe"),
    "PHI under a registered key": lambda s: s.set_attribute(A.DECISION_VALUE.key, "MRN 00123456"),
    "True where an integer is": lambda s: s.set_attribute(A.QUEUE_DEPTH.key, True),
    "1 where a boolean is": lambda s: s.set_attribute(A.ACTION_AUTOMATED.key, 1),
    "PHI in its name": lambda s: s.update_name("decide for MRN 00123456"),
    "an event": lambda s: s.add_event("lookup MRN 00123456", {"note": "Jane Doe"}),
    "a link": _link,
    "a status message": lambda s: s.set_status(Status(StatusCode.ERROR, "no chart for MRN 00123456")),
    # not PHI, but OTLP's int64 cannot carry them: passed on, the encoder logged an error for each span
    # and dropped the key (10**400 made the gate itself raise, and its batch was lost)
    "an integer past 64 bits": lambda s: s.set_attribute(A.QUEUE_DEPTH.key, 2**63),
    "an event's integer past 64 bits": lambda s: s.add_event("requeued", {A.QUEUE_DEPTH.key: 2**64}),
}


def _exported_as(gate: ct.SanitizingSpanExporter, batches: list[list[ReadableSpan]]) -> list[ReadableSpan]:
    """What `gate` hands on of `batches`, each exported in one call; its health spans left out
    (they follow the export that counted something, so their place depends on the batches)."""
    for batch in batches:
        gate.export(batch)
    spans = gate._inner.get_finished_spans()  # type: ignore[attr-defined]
    return [s for s in spans if s.name != A.HEALTH_SPAN_NAME]


def _view(span: ReadableSpan) -> tuple[object, ...]:
    return (
        span.name,
        dict(span.attributes or {}),
        span.status.description,
        [(e.name, dict(e.attributes or {})) for e in span.events],
        [dict(link.attributes or {}) for link in span.links],
        dict(span.resource.attributes),
    )


@pytest.mark.parametrize("dirt", sorted(BATCH_DIRT))
def test_a_batch_is_gated_as_its_spans_are_one_by_one(dirt: str) -> None:
    """The gate confirms a batch of clean spans in one pass over the whole batch; one span with
    anything the gate must change, anywhere in the batch, sends the batch span by span: each
    span comes out as it does exported alone, clean spans handed on as they are."""
    spans = _raw_spans(62, dirty_at=49, dirt=BATCH_DIRT[dirt])
    warm, clean, dirty = spans[:6], spans[6:96], spans[96:]
    foreign = TracerProvider(resource=Resource.create({"service.name": "ehr", "patient.mrn": "MRN 00123456"}))
    kept = InMemorySpanExporter()
    foreign.add_span_processor(SimpleSpanProcessor(kept))
    with foreign.get_tracer("ehr-client").start_as_current_span("GET /chart"):
        pass

    whole = ct.SanitizingSpanExporter(InMemorySpanExporter())
    alone = ct.SanitizingSpanExporter(InMemorySpanExporter())
    _exported_as(whole, [warm])
    _exported_as(alone, [[s] for s in warm])
    assert whole._all_clean(clean), "the batch path is what this test is about"
    assert not whole._all_clean(dirty)
    assert not whole._all_clean([*clean, *kept.get_finished_spans()])

    batches = [clean, dirty, [*clean[:5], *kept.get_finished_spans(), *clean[5:]]]
    by_batch = _exported_as(whole, batches)
    by_span = _exported_as(alone, [[s] for b in batches for s in b])
    assert [_view(s) for s in by_batch] == [_view(s) for s in by_span]
    given = [*warm, *(s for b in batches for s in b)]
    changed = [i for i, (s, r) in enumerate(zip(by_batch, given, strict=True)) if s is not r]
    assert len(changed) == 2, "only the dirty span and the foreign one are changed"
    _assert_no_leak(by_batch)
    assert whole.counters.totals() == alone.counters.totals()


def test_a_batch_with_a_span_made_by_hand_goes_span_by_span() -> None:
    """A span built as a plain ReadableSpan (a dict of attributes, tuples of events) is not what
    the batch pass reads: the batch goes span by span and its PHI is still removed."""
    spans = _raw_spans(3)
    gate = ct.SanitizingSpanExporter(InMemorySpanExporter())
    _exported_as(gate, [spans])
    made = ReadableSpan(
        name="decide", context=spans[0].context, resource=spans[0].resource,
        attributes={A.DECISION_VALUE.key: "MRN 00123456"}, events=(), links=(),
    )  # fmt: skip
    assert not gate._all_clean([*spans, made])
    out = _exported_as(gate, [[*spans, made]])[-1]
    assert A.DECISION_VALUE.key not in (out.attributes or {})


class _PosingAsBoundedList(type):
    """A type that claims to equal the SDK's BoundedList (and hashes as it does)."""

    def __eq__(cls, other: object) -> bool:
        return other is BoundedList or type.__eq__(cls, other)

    def __hash__(cls) -> int:
        return hash(BoundedList)


class _Events(metaclass=_PosingAsBoundedList):
    """Events whose `_dq` (what the SDK's list keeps them in) is empty and whose items are not."""

    def __init__(self, items: list[Event]) -> None:
        self._dq: deque[Event] = deque()
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._items)

    def __getitem__(self, i: int) -> Event:
        return self._items[i]


class _Sneaky(dict[str, object]):
    """Attributes whose dict storage is clean and whose every read through its methods is not."""

    def __getitem__(self, key: str) -> object:
        return "MRN 00123456" if key == A.DECISION_VALUE.key else dict.__getitem__(self, key)

    def items(self) -> ItemsView[str, object]:  # type: ignore[override]
        return {k: self[k] for k in self}.items()


def _planted_events(span: ReadableSpan) -> None:
    span._events = _Events([Event("chart of MRN 00123456", {"exception.message": "no chart for MRN 00123456"})])  # type: ignore[assignment]


def _planted_attributes(span: ReadableSpan) -> None:
    span._attributes._dict = _Sneaky(span._attributes._dict)  # type: ignore[union-attr]


@pytest.mark.parametrize("plant", [_planted_events, _planted_attributes], ids=["events", "attributes"])
def test_a_batch_is_not_confirmed_through_objects_that_pose_as_the_sdks(plant: Callable[[ReadableSpan], None]) -> None:
    """Code in the process that plants look-alikes in an ended span (a type claiming to equal
    the SDK's, a dict subclass whose methods show other values than its storage) does not get
    the batch confirmed by the look-alike: it goes span by span, which reads what an exporter
    reads (found by an attacker's review of the batch check)."""
    spans = _raw_spans(4)
    gate = ct.SanitizingSpanExporter(InMemorySpanExporter())
    _exported_as(gate, [spans[:6]])
    batch = spans[6:]
    plant(next(s for s in batch if s.name == "decide"))
    assert not gate._all_clean(batch)
    out = _exported_as(gate, [batch])[6:]
    assert len(out) == len(batch)
    assert "MRN 00123456" not in "\n".join(_strings(out))
    assert b"00123456" not in encode_spans(out).SerializeToString()


def test_a_batch_given_as_an_iterator_is_exported_whole() -> None:
    spans = _raw_spans(3)
    gate = ct.SanitizingSpanExporter(InMemorySpanExporter())
    _exported_as(gate, [spans[:3]])
    gate.export(iter(spans[3:]))  # type: ignore[arg-type]
    assert _exported_as(gate, []) == spans


def _with_tracers(*tracers: tuple[str, str | None], **attributes: str) -> list[ReadableSpan]:
    """Three clean triage workflows, then a span of each of `tracers` (name, version; scope
    `attributes`) of the service's other code, as they leave the SDK."""

    def run(provider: TracerProvider) -> None:
        for i in range(3):
            with ct.workflow("triage", identifier=f"ENC{i}", site="north"), ct.stage("decide"):
                pass
        for name, version in tracers:
            with provider.get_tracer(name, version, attributes=attributes or None).start_as_current_span("GET /chart"):
                pass

    return _sdk_spans(run)


def test_a_tracers_name_version_and_attributes_leave_without_phi() -> None:
    """A tracer's scope is set by code in the process and rides on every span of that tracer:
    its name, version and schema URL are scrubbed, its attributes dropped (none is registered;
    the collector keeps none either), each counted once per scope; batch = one by one."""
    spans = _with_tracers(("ward jane.doe@example.org", "DOB 1985-03-12"), note="patient MRN 1234567")
    whole = ct.SanitizingSpanExporter(InMemorySpanExporter())
    alone = ct.SanitizingSpanExporter(InMemorySpanExporter())
    by_batch = _exported_as(whole, [spans])
    by_span = _exported_as(alone, [[s] for s in spans])
    scope = by_batch[-1].instrumentation_scope
    assert scope is not None
    assert (scope.name, scope.version, dict(scope.attributes or {})) == ("ward [REDACTED]", "[REDACTED]", {})
    assert [s.instrumentation_scope for s in by_batch] == [s.instrumentation_scope for s in by_span]
    assert by_batch[:-1] == spans[:-1], "clinotel's own spans are handed on as they came"
    wire = encode_spans(by_batch).SerializeToString()
    for piece in (b"jane.doe", b"1985-03-12", b"1234567"):
        assert piece not in wire
    totals = whole.counters.totals()
    assert (totals["redacted"], totals["unregistered"]) == (2, 1)
    assert totals == alone.counters.totals()


def test_a_batch_of_two_clean_tracers_is_confirmed_whole() -> None:
    """A service's other instrumentations have tracers of their own: a clean scope, once seen,
    is confirmed by identity, so a mixed batch stays on the batch path."""
    *spans, foreign = _with_tracers(("opentelemetry.instrumentation.requests", "0.50b0"), ("ehr", "MRN 00123456"))
    gate = ct.SanitizingSpanExporter(InMemorySpanExporter())
    _exported_as(gate, [spans])
    assert gate._all_clean(spans)
    assert not gate._all_clean([*spans, foreign])
    assert b"00123456" not in encode_spans(_exported_as(gate, [[*spans, foreign]])).SerializeToString()


def _workflows_under(
    parents: list[context.Context], then: Callable[[TracerProvider], None] | None = None
) -> list[ReadableSpan]:
    """The spans, as they leave the SDK, of a triage workflow run under each of `parents` (what a
    caller's headers gave), and of `then` run with the same provider afterwards."""

    def workflows(provider: TracerProvider) -> None:
        for parent in parents:
            token = context.attach(parent)
            try:
                with ct.workflow("triage", site="north"), ct.stage("decide"):
                    pass
            finally:
                context.detach(token)
        if then is not None:
            then(provider)

    return _sdk_spans(workflows)


def test_a_callers_trace_state_leaves_without_what_the_phi_rules_redact() -> None:
    """A W3C `tracestate` comes with the caller's request and every span of the workflow carries
    it (and a link to another trace carries that trace's): an entry holding PHI is dropped and
    counted, the rest kept; a clean state passes as it came, and a batch of such spans comes out as
    its spans do one by one."""
    incoming = TraceContextTextMapPropagator().extract(
        {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "ehr=MRN 00123456,congo=t61rcWkgMzE",
        }
    )
    clean = TraceContextTextMapPropagator().extract(
        {"traceparent": "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61rcWkgMzE"}
    )
    linked = trace.get_current_span(incoming).get_span_context()

    def chart_request(provider: TracerProvider) -> None:
        with provider.get_tracer("ehr-client").start_as_current_span("GET /chart", links=[Link(linked)]):
            pass

    spans = _workflows_under([clean, incoming, clean], then=chart_request)
    whole = ct.SanitizingSpanExporter(InMemorySpanExporter())
    alone = ct.SanitizingSpanExporter(InMemorySpanExporter())
    by_batch = _exported_as(whole, [spans[:2], spans[2:]])
    by_span = _exported_as(alone, [[s] for s in spans])
    states = [str(s.context.trace_state.to_header()) for s in by_batch if s.context is not None]
    assert states == ["congo=t61rcWkgMzE"] * 6 + [""]
    assert [dict(link.context.trace_state) for link in by_batch[-1].links] == [{"congo": "t61rcWkgMzE"}]
    assert [_view(s) for s in by_batch] == [_view(s) for s in by_span]
    assert [s.context for s in by_batch] == [s.context for s in by_span]
    assert b"00123456" not in encode_spans(by_batch).SerializeToString()
    assert by_batch[:2] == spans[:2], "clean states are handed on as they came"
    assert by_batch[4:6] == spans[4:6]
    assert whole.counters.totals()["redacted"] == 3 == alone.counters.totals()["redacted"]


@pytest.mark.parametrize(
    "entry",
    ["mrn=12345", "patient_id=P77", "dob=1985", "ssn=123.45.6789", "mrn=00123456-0000-4000-8000-000000000000"],
)
def test_a_trace_state_entry_is_judged_as_it_is_exported(entry: str) -> None:
    """`key=value` is what leaves: a label in the key and a number in the value are an
    identifier together though each is clean alone (found by an attacker's review)."""
    incoming = TraceContextTextMapPropagator().extract(
        {"traceparent": "00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": f"{entry},congo=t61"}
    )
    spans = _workflows_under([incoming, incoming])  # the second time from the gate's memory
    gate = ct.SanitizingSpanExporter(InMemorySpanExporter())
    out = _exported_as(gate, [[s] for s in spans])
    assert {s.context.trace_state.to_header() for s in out if s.context is not None} == {"congo=t61"}
    assert entry.encode() not in encode_spans(out).SerializeToString()
    assert gate.counters.totals()["redacted"] == 4


class _Formatted(str):
    """A string that formats as something else (what an exporter writes with an f-string)."""

    def __format__(self, spec: str) -> str:
        return "MRN 00123456"


@pytest.mark.parametrize(
    "state",
    [TraceState([("ok", _Formatted("t61rcWkgMzE"))]), [("ok", "MRN 00123456")], "ok=MRN 00123456"],
    ids=["a str subclass as a value", "a list", "a string"],
)
def test_a_planted_trace_state_is_dropped_and_export_goes_on(state: object) -> None:
    """A trace state that is not the SDK's kind, or holds a string that formats as another, set
    on an ended span by code in the process: the gate drops it (counted) and the batch is still
    exported."""
    spans = _raw_spans(2)
    decide = next(s for s in spans if s.name == "decide")
    c = decide.context
    decide._context = SpanContext(c.trace_id, c.span_id, c.is_remote, c.trace_flags, state)  # type: ignore[arg-type]
    gate = ct.SanitizingSpanExporter(InMemorySpanExporter())
    out = _exported_as(gate, [spans])
    assert len(out) == len(spans)
    assert b"00123456" not in encode_spans(out).SerializeToString()
    assert gate.counters.totals()["redacted"] == 1


class _TwoFaced(ReadableSpan):
    """A span whose public views (what an exporter reads) show PHI over clean private fields."""

    @property
    def name(self) -> str:
        return "chart of MRN 00123456"

    @property
    def attributes(self) -> MappingProxyType[str, object]:
        return MappingProxyType({**(self._attributes or {}), A.DECISION_VALUE.key: "MRN 00123456"})

    @property
    def events(self) -> tuple[Event, ...]:
        return (Event("lookup", {"exception.message": "no chart for MRN 00123456"}),)


def test_a_span_whose_public_views_differ_from_its_fields_is_read_as_an_exporter_reads_it() -> None:
    """Only the SDK's own spans are read behind their public views; a subclass overriding them
    (code in the process) is checked through what the exporter will read (found by an attacker's
    review)."""
    spans = _raw_spans(3)
    gate = ct.SanitizingSpanExporter(InMemorySpanExporter())
    _exported_as(gate, [spans[:3]])
    d = next(s for s in spans[3:] if s.name == "decide")
    two_faced = _TwoFaced(
        name=d.name, context=d.context, parent=d.parent, resource=d.resource, attributes=d.attributes,
        events=d.events, links=d.links, kind=d.kind, status=d.status, start_time=d.start_time,
        end_time=d.end_time, instrumentation_scope=d.instrumentation_scope,
    )  # fmt: skip
    batch = [two_faced if s is d else s for s in spans[3:]]
    assert not gate._all_clean(batch)
    out = _exported_as(gate, [batch])[3:]
    assert len(out) == len(batch)
    assert b"00123456" not in encode_spans(out).SerializeToString()


class _HashRaises(str):
    def __hash__(self) -> int:
        raise ValueError("hash refused")


def test_a_value_whose_hash_raises_costs_its_own_attribute_not_the_batch() -> None:
    """A str subclass whose __hash__ raises ValueError, set through the raw API on one span: the
    gate caught only TypeError, and the whole batch (every other patient's workflow) was lost."""
    exporter = InMemorySpanExporter()
    with isolated():
        tel = ct.configure(exporter=exporter, batch=True, set_global=False, pseudonym_key=TEST_PSEUDONYM_KEY)
        try:
            for i in range(5):
                with ct.workflow("triage", identifier=f"E{i}") as wf:
                    if i == 2:
                        wf.span.set_attribute("clinical.site", _HashRaises("north"))
            tel.force_flush()
        finally:
            tel.shutdown()
    roots = [s for s in exporter.get_finished_spans() if s.name == "workflow triage"]
    assert len(roots) == 5
    assert sum("clinical.site" in s.attributes for s in roots) == 0


def test_phi_the_gate_drops_from_spans_set_through_the_api_is_logged_without_the_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The `sdk_phi_dropped` ticket names a service; the service's log says from which spans (an
    on-call review found no line for values set through the OpenTelemetry API), and at most once a
    minute, never the value."""
    from clinotel.instrumentation._internal import runtime

    monkeypatch.setattr(runtime, "_last_logged", {})
    mrn = "MRN 00123456"
    with caplog.at_level("WARNING", logger="clinotel"), capture(mode="production") as spans:
        tracer = spans.telemetry.provider.get_tracer("ehr-client")
        for _ in range(3):
            with tracer.start_as_current_span("GET /chart", attributes={A.WORKFLOW_ID.key: mrn}):
                pass
            with tracer.start_as_current_span("GET /ok", attributes={"http.request.method": "GET"}):
                pass
    lines = [r.getMessage() for r in caplog.records if "look like PHI" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "'GET /chart'" in lines[0]
    assert "'GET /ok'" not in lines[0]
    assert "sdk_phi_dropped" in lines[0]
    assert "00123456" not in caplog.text
    assert spans.telemetry.dropped()["phi"] == 3
