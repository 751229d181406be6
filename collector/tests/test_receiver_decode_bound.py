"""Decoding a protobuf request within a memory bound (`receiver.bounded`).

Decoded whole, a request of empty spans took 88 bytes of memory a byte of wire: the 64 MiB OTLP
allows, sent by any tenant's ordinary token, took 5.6 GB and the collector with it. A request
over `DIRECT_LIMIT` is now screened a group of spans at a time, and must give exactly what
decoding it whole gives, for real exporters' requests and for odd encodings alike.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

from clinotel.collector import leb128
from clinotel.collector.errors import RefusedError
from clinotel.collector.log import record as otlp_proto
from clinotel.collector.receiver import bounded
from clinotel.collector.receiver.export import PROTOBUF, Limits, TraceReceiver, decode
from clinotel.collector.receiver.spans import refuse_spans, span_copies
from collector.tests.fixtures import ListLog

WINDOW_NOW = time.time_ns()
WINDOW = Limits().start_window(WINDOW_NOW)


def _field(number: int, payload: bytes) -> bytes:
    return leb128.encode(number << 3 | 2) + leb128.encode(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return leb128.encode(number << 3) + leb128.encode(value)


def _sdk_spans(n: int, services: int = 3) -> list[bytes]:
    """The official encoder's requests for `n` spans of a few services, with attributes, events,
    links and a few invalid ones among them (ids of zeros, a start years ago)."""
    requests = []
    for s in range(services):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": f"svc-{s}", "k8s.pod": "p" * 40}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer(f"scope-{s}", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0")
        for i in range(n // services):
            with tracer.start_as_current_span(f"stage {i}", attributes={"a": i, "b": "x" * (i % 50)}) as span:
                span.add_event("queued", {"queue": "ed", "depth": i})
                if i % 7 == 0:
                    span.add_link(span.get_span_context(), {"why": "retry"})
        provider.shutdown()
        request = encode_spans(exporter.get_finished_spans())
        for k, sp in enumerate(request.resource_spans[0].scope_spans[0].spans):
            if k % 11 == 3:
                sp.trace_id = b"\0" * 16
            if k % 13 == 5:
                sp.start_time_unix_nano = 10**9
        requests.append(request.SerializeToString())
    return requests


def _direct(body: bytes) -> tuple[bytes, int, Counter[str], int]:
    request = decode(body, PROTOBUF)
    kept, removed = refuse_spans(request, WINDOW)
    request.DiscardUnknownFields()
    return (bytes(request.SerializeToString()) if kept else b""), kept, removed, span_copies(request)


def _outcome(run: Callable[[], tuple[bytes, int, Counter[str], int]]) -> tuple[object, ...]:
    try:
        raw, kept, removed, copies = run()
    except RefusedError as e:
        return ("refused", e.reason)
    return ("kept", raw, kept, +removed, copies)


def _odd_request() -> bytes:
    """Requests of the official encoder joined (repeated fields concatenate), with what it never
    sends: unknown fields at every level, a resource sent in two pieces (merged), a scope after
    its spans, an empty resource, a known field with another wire type, and a group."""
    resource_a = _field(1, _field(1, b"\x0a\x01a\x12\x03\x0a\x01x"))  # resource { attributes { a = "x" } }
    resource_b = _field(1, _field(1, b"\x0a\x01b\x12\x03\x0a\x01y"))
    span = (
        _field(1, bytes(range(1, 17))) + _field(2, bytes(range(1, 9))) + _field(5, b"odd")
        + leb128.encode(7 << 3 | 1) + (WINDOW_NOW - 10**9).to_bytes(8, "little")
        + leb128.encode(8 << 3 | 1) + (WINDOW_NOW - 10**6).to_bytes(8, "little")
        + _varint_field(99, 7)  # unknown
    )  # fmt: skip
    scope = _field(2, span) + _field(1, _field(1, b"late-scope")) + _varint_field(3, 5) + _field(3, b"s-url")
    group = leb128.encode(50 << 3 | 3) + _varint_field(1, 1) + leb128.encode(50 << 3 | 4)
    rs = resource_a + _field(2, scope) + _varint_field(77, 1) + resource_b + group + _field(3, b"r-url")
    return b"".join(_sdk_spans(30)) + _field(1, rs) + _field(1, b"") + _varint_field(12, 3)


@pytest.mark.parametrize("run_bytes", [64, 700, 5_000, bounded.DIRECT_LIMIT])
def test_screened_in_groups_a_request_is_what_decoding_it_whole_gives(run_bytes: int) -> None:
    """The official encoder's requests of three services joined, and the same with odd encodings
    between them: screened a group of spans at a time (a span per group at 64 bytes), the bytes
    logged, the spans kept and those refused by reason are those of the request decoded whole."""
    for body in (b"".join(_sdk_spans(600)), _odd_request()):
        expected = _direct(body)
        assert expected[1] > 20
        assert expected[2]["invalid_id"]
        assert expected[2]["out_of_window"]
        assert bounded.screen(body, WINDOW, run_bytes=run_bytes) == expected


def _mutations(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.5:
            data[at] = rng.randrange(256)
        elif choice < 0.75:
            del data[at : at + rng.randint(1, 4)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    return bytes(data)


def test_damaged_requests_are_refused_or_kept_alike_screened_or_whole() -> None:
    """400 random damages (bytes changed, cut out, put in) of a small request: screened in groups
    of 64 bytes, each is refused for the same reason or kept with the same bytes as decoded whole."""
    rng = random.Random(20261206)
    base = b"".join(_sdk_spans(9)) + _odd_request()[-200:]
    differ = []
    for _ in range(400):
        body = _mutations(base, rng)
        whole = _outcome(partial(_direct, body))
        screened = _outcome(partial(bounded.screen, body, WINDOW, run_bytes=64))
        if whole != screened:
            differ.append((body.hex(), whole[:2], screened[:2]))
    assert not differ, differ[:3]


def _overlong(n: int) -> bytes:
    """`n` (under 128) as a varint of six bytes, one more than the runtime reads."""
    return bytes([n | 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])


def _groups(n: int) -> bytes:
    return leb128.encode(50 << 3 | 3) * n + leb128.encode(50 << 3 | 4) * n


def _groups_around(content: bytes) -> bytes:
    """`content` in an unknown group (field 20): the runtime skips a field number 0 there, and
    refuses it as a message's own field."""
    return leb128.encode(20 << 3 | 3) + content + leb128.encode(20 << 3 | 4)


def _nested_kvlist(depth: int) -> bytes:
    value = b""
    for _ in range(depth):
        value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    return value


def _nested_arrays(depth: int) -> bytes:
    """An AnyValue of `depth` nested arrays around a string beside an unknown field (field 99): the
    runtime discards unknown fields to 64 levels below the message it is asked to, no further."""
    value = _field(1, b"x") + _varint_field(99, 7)
    for _ in range(depth):
        value = _field(5, _field(1, value))
    return value


def _span() -> bytes:
    return (
        _field(1, bytes(range(1, 17))) + _field(2, bytes(range(1, 9))) + _field(5, b"ok")
        + leb128.encode(7 << 3 | 1) + (WINDOW_NOW - 10**9).to_bytes(8, "little")
        + leb128.encode(8 << 3 | 1) + (WINDOW_NOW - 10**6).to_bytes(8, "little")
    )  # fmt: skip


def _one(top: bytes = b"", rs: bytes = b"", ss: bytes = b"", span: bytes = b"") -> bytes:
    return _field(1, _field(2, _field(2, _span() + span) + ss) + rs) + top


_EDGES = {
    "a tag past 2^32 at the top": _one(top=leb128.encode(1 << 32) + b"\x00"),
    "a field number of 2^29 in a resource": _one(rs=leb128.encode((1 << 29) << 3) + b"\x00"),
    "a tag of six bytes": b"\x8a\x80\x80\x80\x80\x00" + leb128.encode(len(_one()) - 2) + _one()[2:],
    "a length of six bytes": b"\x0a" + _overlong(len(_one()) - 2) + _one()[2:],
    **{f"{n} nested groups at the top": _one(top=_groups(n)) for n in (100, 101)},
    **{f"{n} nested groups in a resource": _one(rs=_groups(n)) for n in (99, 100)},
    **{f"{n} nested groups in a scope": _one(ss=_groups(n)) for n in (98, 99)},
    **{f"{n} nested groups in a span": _one(span=_groups(n)) for n in (97, 98)},
    **{
        f"an attribute nested {d} deep": _one(span=_field(9, _field(1, b"a") + _field(2, _nested_kvlist(d))))
        for d in (31, 32)
    },
    **{
        f"field number 0 in an unknown group in {where}": _one(**{where: _groups_around(_varint_field(0, 1))})
        for where in ("top", "rs", "ss", "span")
    },
    "an unknown field 64 levels down": _one(span=_field(9, _field(1, b"k") + _field(2, _nested_arrays(29)))),
}


@pytest.mark.parametrize("name", sorted(_EDGES))
def test_what_the_runtime_refuses_the_walk_refuses(name: str) -> None:
    """Tags and lengths longer than the runtime reads, field numbers past its range, nesting to its
    limit and one past it, at every level the walk reads itself or decodes a piece of (found by
    review: the walk kept them, and a value nested one level too deep was logged in bytes the
    runtime then refused to read back), an unknown field as deep as the runtime stops discarding
    them (the walk discarded it from the scope, two levels further). Screened, each is refused or
    kept as decoded whole."""
    body = _EDGES[name]
    whole = _outcome(partial(_direct, body))
    assert _outcome(partial(bounded.screen, body, WINDOW, run_bytes=64)) == whole
    assert _outcome(partial(bounded.screen, body, WINDOW)) == whole


CHILD = r"""
import json, sys, time
from clinotel.collector import leb128
from clinotel.collector.errors import RefusedError
from clinotel.collector.receiver.export import Limits, TraceReceiver

class Log:
    records = 0
    segment_bytes = 8 << 20
    def append(self, record, copies=0):
        self.records += 1

def field(number, payload):
    return leb128.encode(number << 3 | 2) + leb128.encode(len(payload)) + payload

size = 64 << 20
shape = sys.argv[1]
if shape == "empty spans":
    body = field(1, field(2, b"\x12\x00" * (size // 2 - 8)))
elif shape == "a span of empty attributes":
    span = field(1, b"\x01" * 16) + field(2, b"\x02" * 8) + b"\x4a\x00" * (size // 2 - 32)
    body = field(1, field(2, field(2, span)))
elif shape == "a resource's schema url a million times":
    span = field(1, b"\x01" * 16) + field(2, b"\x02" * 8)
    body = field(1, field(2, field(2, span)) + b"\x1a\x00" * 995_000)
elif shape == "empty scopes":
    span = field(1, b"\x01" * 16) + field(2, b"\x02" * 8)
    body = field(1, field(2, field(2, span)) + b"\x12\x00" * 222_000) + field(5, b"x" * 300_000)
elif shape == "a resource of empty attributes":
    body = field(1, field(1, b"\x0a\x00" * (size // 2 - 8)))
else:  # one span, and nested empty groups after it (unknown fields the walk reads)
    span = field(1, b"\x01" * 16) + field(2, b"\x02" * 8)
    body = field(1, field(2, field(2, span))) + (b"\x13" * 100 + b"\x14" * 100) * (size // 200 - 1)
before = int(open("/proc/self/statm").read().split()[1]) * 4096
receiver = TraceReceiver(Log(), Limits())
started = time.process_time()
try:
    result = receiver.export(body, content_type="application/x-protobuf", tenant="st-marys")
    outcome = {"accepted": result.accepted, "rejected": result.rejected}
except RefusedError as e:
    outcome = {"refused": e.reason, "message": str(e)}
# this process's own peak (VmHWM): ru_maxrss keeps the peak of the process it was forked from
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024
print(json.dumps({**outcome, "logged": receiver.wal.records, "growth_mb": (peak - before) >> 20,
                  "cpu_s": round(time.process_time() - started, 2)}))
"""


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("empty spans", {"refused": "too_large"}),
        ("a span of empty attributes", {"accepted": 0, "rejected": 1}),
        ("a resource of empty attributes", {"refused": "too_large"}),
        ("nested empty groups", {"refused": "too_large"}),
        ("a resource's schema url a million times", {"accepted": 0, "rejected": 1}),
        ("empty scopes", {"accepted": 0, "rejected": 1}),
    ],
)
def test_64_mib_of_tiny_messages_is_refused_within_the_memory_bound(shape: str, expected: dict[str, object]) -> None:
    """64 MiB of empty spans (5.6 GB decoded whole), one span or one resource of 32 million empty
    attributes (1.7 GB): refused (the request, or the one span as too large to decode) after a
    bounded walk, the memory beside the body a fraction of it, nothing logged. Nested empty groups
    (260 KB gzipped) took 31 s of CPU when the walk counted only resources, scopes and spans.
    Small requests of many tiny fields (1.9 MiB of a resource's schema url, 0.7 MiB of empty
    scopes) held 276 and 179 MB when the walk kept an object per field."""
    command = [sys.executable, "-c", CHILD, shape]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: out[k] for k in expected} == expected, out
    assert out["logged"] == 0
    assert out["growth_mb"] < 100, out
    assert out["cpu_s"] < 10, out


def _logged_request(record: bytes) -> ExportTraceServiceRequest:
    prefix = leb128.decode(record)
    assert prefix is not None
    request = ExportTraceServiceRequest()
    request.ParseFromString(otlp_proto.unchecked(record[prefix[1] :]))
    return request


def test_the_official_exporter_s_large_batch_is_logged_whole(
    receiver_port: tuple[int, ListLog, TraceReceiver],
) -> None:
    """A batch of 20,000 spans from the official OTLP/HTTP exporter (about 3 MB, several groups) is
    accepted and logged span for span, in order, with its resource and scope."""
    port, log, receiver = receiver_port
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "ed-triage"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("clinotel.test")
    for i in range(20_000):
        with tracer.start_as_current_span(
            f"stage {i}",
            links=[Link(provider.get_tracer("x").start_span("l").get_span_context())] if i % 500 == 0 else None,
        ) as span:
            span.set_attribute("clinical.workflow.kind", "triage")
            span.set_attribute("n", i)
            span.add_event("queued", {"depth": i % 17})
    spans = [s for s in memory.get_finished_spans() if s.name.startswith("stage")]
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", headers={"authorization": "Bearer w"})
    assert len(encode_spans(spans).SerializeToString()) > 4 * bounded.DIRECT_LIMIT
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(log.records) == 1
    logged = _logged_request(log.records[0])
    got = [s for rs in logged.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [s.name for s in got] == [f"stage {i}" for i in range(20_000)]
    assert [s.span_id for s in got] == [s.context.span_id.to_bytes(8, "big") for s in spans]
    assert logged.resource_spans[0].resource.attributes[0].value.string_value
    assert receiver.stats.spans_accepted == 20_000


def _span_with_attributes(n: int, i: int = 1, events: int = 0) -> bytes:
    """A span (request field encoding) carrying `n` copies of one registered attribute, and
    `events` events of `n` copies each."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    kv = KeyValue(key="clinical.site", value=AnyValue(string_value="north"))
    return Span(
        trace_id=i.to_bytes(16, "big"), span_id=i.to_bytes(8, "big"), name=f"s{i}",
        start_time_unix_nano=WINDOW_NOW, end_time_unix_nano=WINDOW_NOW + 1, attributes=[kv] * n,
        events=[Span.Event(time_unix_nano=WINDOW_NOW, name="e", attributes=[kv] * n) for _ in range(events)],
    ).SerializeToString()  # fmt: skip


def _request_of(spans: list[bytes]) -> bytes:
    scope = b"".join(_field(2, s) for s in spans)
    return _field(1, _field(2, scope))


@pytest.mark.parametrize("screened", [False, True])
def test_a_request_whose_spans_carry_too_many_attributes_in_all_is_refused_whole(
    screened: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """114 spans of 25,000 copies of a registered attribute each (62.7 MB) made a request the
    engine could never insert: acknowledged, it held every tenant's segments back for 24 s at the
    engine's cap, then was set aside (an attack review). Refused whole (413), nothing logged,
    whether decoded whole or screened (the bound lowered here: the same shape, smaller)."""
    from clinotel.collector.receiver import spans as span_rules

    monkeypatch.setattr(span_rules, "MAX_REQUEST_ATTRIBUTES", 5_000)
    body = _request_of([_span_with_attributes(1_000, i) for i in range(1, 7)])
    log = ListLog()
    receiver = TraceReceiver(log, Limits())
    monkeypatch.setattr(bounded, "DIRECT_LIMIT", 1024 if screened else bounded.DIRECT_LIMIT)
    with pytest.raises(RefusedError) as refused:
        receiver.export(body, content_type=PROTOBUF, tenant="st-marys")
    assert refused.value.reason == "too_large"
    assert "carry 6,000 attributes, events and links" in refused.value.message
    assert "more than the 5,000 one request may" in refused.value.message
    assert log.records == []
    fine = _request_of([_span_with_attributes(1_000, i) for i in range(1, 5)])
    assert receiver.export(fine, content_type=PROTOBUF, tenant="st-marys").accepted == 4


def test_a_resource_copied_onto_every_span_counts_once_for_each() -> None:
    """The store copies a resource's attributes onto every span's row: 600 of them over 1,000
    small spans are 600,000 in the insert, from a request of 80 KB."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    kv = KeyValue(key="service.name", value=AnyValue(string_value="x")).SerializeToString()
    resource = _field(1, b"".join(_field(1, kv) for _ in range(600)))
    scope = b"".join(_field(2, _span_with_attributes(0, i)) for i in range(1, 1001))
    body = _field(1, resource + _field(2, scope))
    assert len(body) < bounded.DIRECT_LIMIT
    log = ListLog()
    with pytest.raises(RefusedError) as refused:
        TraceReceiver(log, Limits()).export(body, content_type=PROTOBUF, tenant="st-marys")
    assert refused.value.reason == "too_large"
    assert "600,000 attributes, events and links (their resources' attributes counted" in refused.value.message
    assert log.records == []
    with pytest.raises(RefusedError):
        bounded.screen(body, WINDOW, run_bytes=4096)


@pytest.mark.parametrize("screened", [False, True])
def test_empty_links_and_events_count_as_attributes_do(screened: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty link or event is 2 bytes of a request and 75-140 at the insert's peak: 20 spans of
    105,000 links and 104,500 events (8.4 MB) took an insert to 646 MB, twice its share (a review).
    Each counts as one in the request's bound (lowered here: the same shape, smaller)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from clinotel.collector.receiver import spans as span_rules

    monkeypatch.setattr(span_rules, "MAX_REQUEST_ATTRIBUTES", 5_000)
    monkeypatch.setattr(bounded, "DIRECT_LIMIT", 1024 if screened else bounded.DIRECT_LIMIT)

    def request(spans: int) -> bytes:
        r = ExportTraceServiceRequest()
        scope = r.resource_spans.add().scope_spans.add()
        for i in range(1, spans + 1):
            span = scope.spans.add()
            span.trace_id, span.span_id, span.name = i.to_bytes(16, "big"), i.to_bytes(8, "big"), "x"
            span.start_time_unix_nano = span.end_time_unix_nano = WINDOW[0] + 1
            for _ in range(500):
                span.links.add()
                span.events.add()
        return r.SerializeToString()

    log = ListLog()
    receiver = TraceReceiver(log, Limits(max_span_age_days=None))
    with pytest.raises(RefusedError) as refused:
        receiver.export(request(6), content_type=PROTOBUF, tenant="st-marys")
    assert refused.value.reason == "too_large"
    assert "carry 6,000 attributes, events and links" in refused.value.message
    assert log.records == []
    assert receiver.export(request(4), content_type=PROTOBUF, tenant="st-marys").accepted == 4
