"""What one request may cost the receiver: work linear in its size and memory a small multiple of
its limit, whatever its shape.

- a gzip body of many members: each was handed the rest of the body (quadratic: 7.6 MiB of empty
  members took 37 s of CPU);
- a chunked body in tiny chunks: one object was kept per chunk (32 MiB in 2-byte chunks: 2.5 GB);
- valid and invalid spans in turn: each invalid one was deleted alone, moving the rest (30 MiB: 25 s);
- OTLP/JSON: 62 MiB (3.7 MiB of gzip on the wire) took 930 MB; it has a lower limit of its own.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import os
import secrets
import time
import tracemalloc
import zlib
from email.message import Message
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from clinotel.collector.errors import RefusedError
from clinotel.collector.log.wal import COPIES_PER_REQUEST
from clinotel.collector.net.body import read_body
from clinotel.collector.receiver import bounded, export
from clinotel.collector.receiver.export import Limits, TraceReceiver
from clinotel.collector.receiver.spans import refuse_spans
from collector.tests.fixtures import ListLog

EMPTY_MEMBER = gzip.compress(b"", mtime=0)  # 20 bytes
JSON_LIMIT = 4 << 20


class _CountingInflater:
    """A zlib decompressor that counts the input bytes it is handed."""

    def __init__(self, inner: Any, fed: list[int]) -> None:
        self._inner = inner
        self._fed = fed

    def decompress(self, data: Any, max_length: int = 0) -> bytes:
        self._fed[0] += len(data)
        return bytes(self._inner.decompress(data, max_length))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountingZlib:
    def __init__(self) -> None:
        self.fed = [0]
        self.members = 0
        self.error = zlib.error

    def decompressobj(self, *args: Any, **kwargs: Any) -> _CountingInflater:
        self.members += 1
        return _CountingInflater(zlib.decompressobj(*args, **kwargs), self.fed)


def test_gzip_members_are_inflated_with_work_linear_in_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """zlib is handed each byte of the body a bounded number of times, however many members
    (the quadratic version handed it 2,500 times the body here)."""
    payload = b"spans" * 1000
    body = EMPTY_MEMBER * 5000 + gzip.compress(payload) + EMPTY_MEMBER * 5000
    counting = _CountingZlib()
    monkeypatch.setattr(export, "zlib", counting)
    assert export.decompress(body, "gzip", 1 << 20) == payload
    assert counting.members == 10_001
    assert counting.fed[0] <= 8 * len(body), f"zlib was handed {counting.fed[0] / len(body):.0f} times the body"


def test_many_gzip_members_take_time_linear_in_the_body() -> None:
    """200,000 empty members (4 MiB) take about ten times what 20,000 take (0.16 s of CPU here;
    bounded at 30 times, plus half a second); quadratic, they took 150 times as long (6.6 s)."""
    reference_body = EMPTY_MEMBER * 20_000
    started = time.process_time()
    assert export.decompress(reference_body, "gzip", 1 << 20) == b""
    reference = time.process_time() - started
    body = EMPTY_MEMBER * 200_000
    started = time.process_time()
    assert export.decompress(body, "gzip", 1 << 20) == b""
    took = time.process_time() - started
    assert took <= 30 * reference + 0.5, f"{took:.2f} s for 200,000 members, {reference:.3f} s for 20,000"


def _chunked(payload: bytes, size: int) -> bytes:
    out = bytearray()
    for at in range(0, len(payload), size):
        out += b"%x\r\n" % len(payload[at : at + size]) + payload[at : at + size] + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


def _chunked_headers() -> Message:
    headers = Message()
    headers["Transfer-Encoding"] = "chunked"
    return headers


def test_a_body_of_tiny_chunks_is_gathered_without_an_object_per_chunk() -> None:
    """512 KiB in 2-byte chunks: Python's allocations peak at a small multiple of the body (one
    `bytes` per chunk and the list of them took 25 times the body)."""
    payload = secrets.token_bytes(512 << 10)
    rfile = io.BufferedReader(io.BytesIO(_chunked(payload, 2)))
    tracemalloc.start()
    try:
        body = read_body(rfile, _chunked_headers(), 2 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert body == payload
    assert peak <= 3 * len(payload), f"peak {peak / len(payload):.1f} times the body"


def _alternating(pairs: int, invalid_last: bool) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    now = time.time_ns()
    valid = trace_pb2.Span(
        trace_id=secrets.token_bytes(16), span_id=secrets.token_bytes(8), name="v",
        start_time_unix_nano=now - 10**6, end_time_unix_nano=now,
    )  # fmt: skip
    for i in range(pairs):
        valid.name = f"v{i}"
        spans.append(valid)
        if not invalid_last:
            spans.add(name=f"x{i}")  # no ids: refused
    if invalid_last:
        for i in range(pairs):
            spans.add(name=f"x{i}")
    return request


def _refuse_seconds(request: ExportTraceServiceRequest) -> float:
    started = time.process_time()
    kept, removed = refuse_spans(request, Limits().start_window(time.time_ns()))
    took = time.process_time() - started
    spans = request.resource_spans[0].scope_spans[0].spans
    assert (kept, removed["invalid_id"]) == (len(spans), len(spans))
    assert [s.name for s in spans] == [f"v{i}" for i in range(len(spans))], "the kept spans, in order"
    return took


def test_valid_and_invalid_spans_in_turn_are_refused_in_linear_time() -> None:
    """400,000 spans, every other one invalid, take about as long as the same spans with the
    invalid ones last (0.5 s of CPU here; deleted from the end, cheap either way). Deleting each
    alone, the interleaved ones took ten times as long, and a hundred times at 30 MiB."""
    pairs = 200_000
    reference = _refuse_seconds(_alternating(pairs, invalid_last=True))
    took = _refuse_seconds(_alternating(pairs, invalid_last=False))
    assert took <= 3 * reference + 0.3, f"{took:.2f} s interleaved, {reference:.2f} s invalid last"


def _json_request(size: int) -> bytes:
    """OTLP/JSON of about `size` bytes: valid spans of 1,000 small attributes each (spread over
    spans, as an exporter's batch is)."""
    now = time.time_ns()
    attribute = {"key": "k", "value": {"intValue": "1"}}
    per = len(json.dumps(attribute, separators=(",", ":"))) + 1
    spans = [
        {
            "traceId": secrets.token_hex(16),
            "spanId": secrets.token_hex(8),
            "name": "j",
            "startTimeUnixNano": str(now - 10**6),
            "endTimeUnixNano": str(now),
            "attributes": [attribute] * 1000,
        }
        for _ in range(max(1, size // (per * 1000)))
    ]
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}, separators=(",", ":")).encode()


def _post(port: int, body: bytes, **headers: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST", "/v1/traces", body=body,
            headers={"Authorization": "Bearer w", "Content-Type": "application/json", **headers},
        )  # fmt: skip
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_json_over_its_limit_is_refused_with_a_pointer_to_protobuf(
    receiver_port: tuple[int, ListLog, TraceReceiver], encoding: str
) -> None:
    """OTLP/JSON costs 8 to 84 bytes of memory a byte: past 4 MiB it is a 413 that says to send
    protobuf (whose limit stays 64 MiB), before the JSON is parsed; within it, accepted."""
    port, log, _ = receiver_port
    over = _json_request(JSON_LIMIT + (256 << 10))
    assert len(over) > JSON_LIMIT
    body = gzip.compress(over, 1) if encoding == "gzip" else over
    status, answer = _post(port, body, **({"Content-Encoding": "gzip"} if encoding == "gzip" else {}))
    assert status == 413, answer
    message = json.loads(answer)["message"]
    assert "OTLP/JSON" in message, message
    assert "application/x-protobuf" in message, message
    assert log.records == []
    within = _json_request(1 << 20)
    status, answer = _post(port, gzip.compress(within, 1), **{"Content-Encoding": "gzip"})
    assert status == 200, answer
    assert len(log.records) == 1
    assert export.DEFAULT_MAX_JSON_REQUEST_BYTES == JSON_LIMIT


@pytest.mark.parametrize(
    "pattern",
    ["vxv", "v" * 5 + "x" * 17 + "v" * 3, "x" * 40, "xvx" * 20 + "x" * 10, "vvx" * 20, "x" * 20 + "v"],
)
def test_refused_spans_leave_the_kept_ones_in_order(pattern: str) -> None:
    """However many are refused (one by one, all, most, some), the kept spans stay, in order."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    now = time.time_ns()
    for i, kind in enumerate(pattern):
        if kind == "v":
            spans.add(
                trace_id=secrets.token_bytes(16), span_id=secrets.token_bytes(8), name=f"v{i}",
                start_time_unix_nano=now - 10**6, end_time_unix_nano=now,
            )  # fmt: skip
        else:
            spans.add(name=f"x{i}", trace_id=b"\0" * 16, span_id=secrets.token_bytes(8))
    kept, removed = refuse_spans(request, Limits().start_window(now))
    assert (kept, removed["invalid_id"]) == (pattern.count("v"), pattern.count("x"))
    assert [s.name for s in spans] == [f"v{i}" for i, kind in enumerate(pattern) if kind == "v"]


def test_one_tenant_s_json_requests_leave_a_turn_to_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one conversion turn for the process, one tenant's three worst-case JSON requests timed
    every other tenant's JSON exports out. A tenant converts one at a time, two tenants at once;
    a request whose turn does not come in time is answered 503 (`busy`), which exporters retry."""
    monkeypatch.setattr(export, "JSON_WAIT_S", 0.3)
    with export._json_turn("st-marys"):
        with export._json_turn("general"):  # another tenant is not held up by st-marys' request
            pass
        started = time.monotonic()
        with pytest.raises(RefusedError) as busy, export._json_turn("st-marys"):
            pass
        assert busy.value.reason == "busy"
        assert busy.value.retry_after is not None
        assert time.monotonic() - started < 3
        with export._json_turn("general"), pytest.raises(RefusedError), export._json_turn("third"):
            pass  # two turns in all: the memory of two conversions at most


def _resource_over_spans(resource_bytes: int, spans: int, key: str = "host.name", scope_name: str = "") -> bytes:
    """One resource of `resource_bytes` of `key` over `spans` empty spans of one scope."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="relay")))
    rs.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value="h" * resource_bytes)))
    scope = rs.scope_spans.add()
    scope.scope.name = scope_name
    now = time.time_ns()
    for i in range(1, spans + 1):
        span = scope.spans.add()
        span.trace_id, span.span_id, span.name = i.to_bytes(16, "big"), i.to_bytes(8, "big"), "x"
        span.start_time_unix_nano = span.end_time_unix_nano = now
    return request.SerializeToString()


@pytest.mark.parametrize(("resource_bytes", "spans"), [(400_000, 100), (800_000, 50)], ids=["whole", "screened"])
def test_a_resource_copied_onto_too_many_spans_is_refused_whole(
    receiver_port: tuple[int, ListLog, TraceReceiver], resource_bytes: int, spans: int
) -> None:
    """The store keeps a span's resource on its row: 400 KB of resource over 100 spans is 40 MB to
    insert from a 400 KB request (an attack review's 3 MiB over 400 spans, 17 KB gzipped, went past
    the engine's cap and set aside every other tenant's spans in its segment). Past
    `COPIES_PER_REQUEST` segments it is a 413 that says why, decoded whole or screened in runs
    (over `DIRECT_LIMIT`); an OpenTelemetry Collector's batch of 8,192 spans under 1 KB of
    registered resource attributes is accepted, its copies told to the log."""
    port, log, _ = receiver_port
    body = _resource_over_spans(resource_bytes, spans)
    assert (len(body) > bounded.DIRECT_LIMIT) == (resource_bytes > bounded.DIRECT_LIMIT)
    status, answer = _post(port, body, **{"Content-Type": "application/x-protobuf"})
    assert status == 413, answer
    assert b"copied onto each of their spans" in answer, answer
    assert log.records == []
    usual = _resource_over_spans(1_000, 8_192)
    status, answer = _post(port, usual, **{"Content-Type": "application/x-protobuf"})
    assert status == 200, answer
    assert len(log.records) == 1
    assert 8_192 * 1_000 < log.copies[0] < 8_192 * 1_100
    assert log.copies[0] < COPIES_PER_REQUEST * log.segment_bytes


@pytest.mark.parametrize(("spans", "status"), [(3_000, 413), (20, 200)])
def test_a_scope_name_copied_onto_its_spans_counts_as_a_resource_does(
    receiver_port: tuple[int, ListLog, TraceReceiver], spans: int, status: int
) -> None:
    """The store keeps a span's scope name on its row too: a 300 KB scope name over 3,000 spans
    (17 KB gzipped) went past the engine's cap and set aside another tenant's acknowledged spans
    (a review of the resource bound, which counted resources alone)."""
    port, log, _ = receiver_port
    body = _resource_over_spans(10, spans, scope_name="s" * 300_000)
    answer = _post(port, gzip.compress(body), **{"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert answer[0] == status, answer
    assert len(log.records) == (status == 200)


def test_resource_attributes_the_store_drops_are_not_counted(receiver_port: tuple[int, ListLog, TraceReceiver]) -> None:
    """Unregistered resource attributes (a Kubernetes pod's labels) are dropped before the copies
    are made: an OpenTelemetry Collector's batch of 8,192 spans under 2 KB of them is taken, its
    copies told to the log as its registered attributes' alone (a review: it was refused at a
    small engine, whose segments and so whose bound are smaller)."""
    port, log, _ = receiver_port
    body = _resource_over_spans(2_000, 8_192, key="k8s.pod.labels.app")
    status, answer = _post(port, body, **{"Content-Type": "application/x-protobuf"})
    assert status == 200, answer
    assert log.copies[0] < 8_192 * 30, "service.name's bytes for each span, not the labels'"


def test_text_the_engine_may_read_in_nfkd_counts_as_what_it_may_become(
    receiver_port: tuple[int, ListLog, TraceReceiver],
) -> None:
    """The engine's PHI check reads a text in its NFKD form and keeps that form when it shows PHI:
    U+FDFA (3 bytes) is 33. `may 1` and 50,000 of them as `service.name` over 100 spans, 155 KB,
    counted 15 MB as sent and copied 165 MB, past the engine's cap, setting aside another tenant's
    spans (a review): non-ASCII text counts as its largest NFKD form."""
    port, log, _ = receiver_port
    body = _resource_over_spans(1, 100, key="service.name")
    request = ExportTraceServiceRequest.FromString(body)
    request.resource_spans[0].resource.attributes[1].value.string_value = "may 1 " + "\ufdfa" * 50_000
    status, answer = _post(port, request.SerializeToString(), **{"Content-Type": "application/x-protobuf"})
    assert status == 413, answer
    assert log.records == []
    plain = _resource_over_spans(1, 100, key="service.name")
    assert _post(port, plain, **{"Content-Type": "application/x-protobuf"})[0] == 200
    assert log.copies[0] < 100 * 40


@pytest.mark.parametrize(
    ("text", "grows"),
    [
        ("plain ascii text " * 250, False),
        ("患者の待ち時間" * 600, False),  # kanji and kana: the same in NFKD
        ("환자대기시간" * 700, True),  # Hangul syllables: two or three jamo each
        ("\ufdfa" * 4_352, True),  # 3 bytes, 33 in NFKD
        ("e\u0301" * 2_000, False),  # already decomposed
    ],
)
def test_text_growth_counts_what_folding_adds_and_nothing_for_text_that_does_not_grow(text: str, grows: bool) -> None:
    """Checked in C first (the bytes past ASCII beyond a span's ids and times), folded text by
    text only when that bound is large: a request of Japanese text is not counted as growing."""
    import unicodedata

    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from clinotel.collector.receiver.spans import text_growth

    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(20):
        span = scope.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"s{i}", start_time_unix_nano=1)
        span.events.append(
            Span.Event(name="e", attributes=[KeyValue(key="exception.message", value=AnyValue(string_value=text))])
        )
    raw = request.SerializeToString()
    growth = text_growth(raw, 20, request)
    head = text[:8_704]
    exact = 20 * (len(unicodedata.normalize("NFKD", head).encode()) - len(head.encode()))
    if grows:
        assert growth == exact > len(raw)
    else:
        assert growth < len(raw) // 4


def test_text_hidden_in_the_allowance_of_ids_and_times_made_of_ascii_bytes_is_counted() -> None:
    """A span's ids and times are random bytes, allowed without text; but a sender picks them. Ids
    of printable ASCII and a start time whose bytes are all under 0x80 left 48 bytes past ASCII to
    16 characters of U+FDFA a span, 480 bytes of growth each, counted 40 for 1,000 spans (an attack
    review). The allowance is of first bytes of characters by their length, each at its most."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from clinotel.collector.receiver.spans import text_growth

    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(1_000):
        scope.spans.append(
            Span(trace_id=b"%016d" % i, span_id=b"%08d" % (i + 1), name="\ufdfa" * 16,
                 start_time_unix_nano=0x187F7F7F7F7F7F7F, end_time_unix_nano=0x187F7F7F7F7F7F7F)
        )  # fmt: skip
    raw = request.SerializeToString()
    assert text_growth(raw, 1_000, request) == 1_000 * 16 * 30


def test_the_growth_allowed_for_each_length_of_character_is_the_most_any_adds() -> None:
    import unicodedata

    from clinotel.collector.receiver.spans import _LEADS

    most = {2: 0, 3: 0, 4: 0}
    for cp in range(0x80, 0x110000):
        if not 0xD800 <= cp <= 0xDFFF:
            size = len(chr(cp).encode())
            most[size] = max(most[size], len(unicodedata.normalize("NFKD", chr(cp)).encode()) - size)
    assert [growth for _, growth, _ in _LEADS] == [most[2], most[3], most[4]]
    assert [(leads[0], leads[-1]) for leads, _, _ in _LEADS] == [(0xC2, 0xDF), (0xE0, 0xEF), (0xF0, 0xF4)]
