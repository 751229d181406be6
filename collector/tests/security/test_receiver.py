"""Attacks on the OTLP receiver by a tenant's write token: what one small request may cost the
store that every tenant shares."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from clinotel.collector.receiver.export import DAY_NS, DEFAULT_MAX_SPAN_AGE_DAYS
from clinotel.collector.service import Collector
from clinotel.model.sql import literal
from collector.tests.fixtures import OTHER_TOKEN, READ_TOKEN, WRITE_TOKEN
from collector.tests.otlp_clients import post
from collector.tests.security.conftest import ATTACKER, VICTIM, VICTIM_SPANS_PER_BATCH, Arena, victim_request

_UINT64_MAX = (1 << 64) - 1


def _spread_request(service: str, starts: list[int]) -> bytes:
    """One span per start time (ns since the epoch), under `service`."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service
    spans = resource_spans.scope_spans.add().spans
    for start in starts:
        span = spans.add()
        span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "spread"
        span.start_time_unix_nano = start
        span.end_time_unix_nano = min(start + 1_000, _UINT64_MAX)
    return request.SerializeToString()


def _stored_days(arena: Arena, service: str) -> list[str]:
    rows = arena.client.query(
        f"SELECT DISTINCT toString(toDate(Timestamp)) FROM {arena.options.name('otel_traces')} "
        f"WHERE TenantId = {literal(ATTACKER)} AND ServiceName = {literal(service)} ORDER BY 1"
    ).result_rows
    return [row[0] for row in rows]


def _stored_rows(arena: Arena, request: ExportTraceServiceRequest, columns: str, service: str) -> list[Any]:
    """`request` sent with the attacker's write token and stored; `columns` of its service's rows."""
    status, _, _ = post(arena.otlp, request.SerializeToString(), token=WRITE_TOKEN)
    assert status == 200
    assert arena.collector.writer is not None
    arena.collector.writer.drain()
    return arena.client.query(
        f"SELECT {columns} FROM {arena.options.name('otel_traces')} "
        f"WHERE TenantId = {literal(ATTACKER)} AND ServiceName = {literal(service)}"
    ).result_rows


def test_spans_spread_over_years_are_refused(arena: Arena) -> None:
    """Every tenant table is partitioned by tenant and day, so each distinct day in an insert is a
    new part in every table: one 1 MB request of 20,000 spans on 20,000 days (1970 to 2262 are all
    valid OTLP times) held the shared writer at the engine's memory cap, retried without end, and no
    tenant's acknowledged spans were stored after it. Spans starting long before they arrive, or
    ahead of them, are refused individually; the request's other spans are stored."""
    now = time.time_ns()
    outside = [
        1,  # 1970
        now - (DEFAULT_MAX_SPAN_AGE_DAYS + 2) * DAY_NS,
        now + 2 * DAY_NS,
        (1 << 63) + 5,  # a negative Int64 once cast: before 1970
        _UINT64_MAX,
        *(day * DAY_NS for day in range(400, 800)),  # 400 distinct days of 1971 and 1972
    ]
    status, _, reply = post(arena.otlp, _spread_request("spread-svc", [now - DAY_NS, *outside]), token=WRITE_TOKEN)
    assert status == 200
    response = ExportTraceServiceResponse.FromString(reply)
    assert response.partial_success.rejected_spans == len(outside)
    assert "window" in response.partial_success.error_message
    assert arena.collector.writer is not None
    arena.collector.writer.drain()
    assert len(_stored_days(arena, "spread-svc")) == 1


_PHI = "Mrs. Jane Doe 123-45-6789 MRN 88812345 jane.doe@example.com 555-867-5309"
_PHI_PIECES = ("Jane Doe", "123-45-6789", "88812345", "jane.doe@example.com", "555-867-5309")


def test_phi_in_trace_state_and_scope_is_scrubbed(arena: Arena) -> None:
    """The free text of a span outside its name, status and attributes: a tracestate propagated from
    another system (`mrn=…`), a link's tracestate, the instrumentation scope's name and version
    were stored as sent, PHI and all."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "phi-carrier"
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = f"scope {_PHI}", _PHI
    span = scope_spans.spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "carrier"
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    span.trace_state = f"mrn=88812345,vendor={_PHI}"
    link = span.links.add()
    link.trace_id, link.span_id, link.trace_state = os.urandom(16), os.urandom(8), f"mrn=88812345,vendor={_PHI}"
    rows = _stored_rows(arena, request, "TraceState, ScopeName, ScopeVersion, Links.TraceState", "phi-carrier")
    assert len(rows) == 1
    stored = repr(rows[0])
    assert "[REDACTED]" in stored
    for piece in _PHI_PIECES:
        assert piece not in stored, stored


def test_phi_in_bytes_values_is_not_stored(arena: Arena) -> None:
    """A registered key's value sent as bytes was stored as its base64 (the contrib exporter's
    form), which no PHI pattern matches: a stack trace or a free-text reason carried a patient's
    name and SSN, one decode away. No registered attribute is bytes: such values are dropped."""
    import base64

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "bytes-carrier"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "carrier"
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    for holder in (span, span.events.add(name="exception", time_unix_nano=span.start_time_unix_nano)):
        for key in ("exception.message", "exception.stacktrace", "clinical.site"):
            attribute = holder.attributes.add()
            attribute.key, attribute.value.bytes_value = key, _PHI.encode()
    rows = _stored_rows(arena, request, "SpanAttributes, Events.Attributes", "bytes-carrier")
    assert len(rows) == 1
    stored = repr(rows[0])
    assert base64.b64encode(_PHI.encode()).decode()[:16] not in stored, stored
    assert rows[0] == ({}, [{}])


@pytest.mark.parametrize(
    ("kind", "value"), [("int_value", 123456789), ("int_value", 5558675309), ("double_value", 5558675309.0)]
)
def test_phi_digits_sent_as_a_number_for_a_coded_key_are_not_stored(arena: Arena, kind: str, value: float) -> None:
    """An SSN's or a phone number's digits sent as a number for a coded key (`clinical.site`) were
    stored as that text, past the PHI patterns a string meets (2026-12-07 review); a number of a
    numeric key is still held to its range, and kept."""
    service = f"digits-{kind}-{len(str(int(value)))}"  # no run of digits: a service name is scrubbed too
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "digits"
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    for key in ("clinical.site", "clinical.decision.value", "clinical.queue.name"):
        attribute = span.attributes.add()
        attribute.key = key
        setattr(attribute.value, kind, value)
    attribute = span.attributes.add()
    attribute.key, attribute.value.int_value = "clinical.queue.depth", 7
    assert _stored_rows(arena, request, "SpanAttributes", service) == [({"clinical.queue.depth": "7"},)]


def test_grpc_refuses_a_call_without_a_write_token_before_its_message(collector: Collector) -> None:
    """gRPC read a unary call's whole message (up to --max-request-mb) before the handler looked at
    the token: anyone who reached the port made the collector hold 64 MB per call (eight calls:
    +550 MB resident). A call whose message never comes is refused from its metadata alone; before,
    the server waited for the message until the client's deadline."""
    import threading

    import grpc

    assert collector.grpc is not None
    never_sent = threading.Event()

    def no_message() -> Iterator[bytes]:
        never_sent.wait(60)
        yield b""

    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc.port}") as channel:
        export = channel.stream_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        for metadata in ((), (("authorization", f"Bearer {READ_TOKEN}"),)):
            with pytest.raises(grpc.RpcError) as refused:
                export(no_message(), metadata=metadata, timeout=20)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, refused.value
    never_sent.set()


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    from google.protobuf.internal.encoder import _VarintBytes

    return bytes(_VarintBytes((number << 3) | 2) + _VarintBytes(len(payload)) + payload)


def test_a_request_the_engine_would_parse_otherwise_loses_no_one_s_spans(arena: Arena) -> None:
    """A span whose `name` (field 5) comes a second time as a number: Python's parser keeps it as an
    unknown field, the engine's Protobuf reader refuses it. The log kept the request's own bytes, so
    the segment holding it was refused, quarantined after three tries, and every other tenant's
    acknowledged spans in it were lost (60 bytes from one write token, as often as it likes)."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    assert arena.collector.writer is not None
    now = time.time_ns()
    span = Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="odd-wire", start_time_unix_nano=now)
    odd = _field(1, _field(2, _field(2, span.SerializeToString() + b"\x28\x01")))
    victim_before = arena.count("otel_traces", VICTIM)
    quarantined = arena.collector.writer.stats.quarantined
    assert post(arena.otlp, odd, token=WRITE_TOKEN)[0] == 200
    assert post(arena.otlp, victim_request(), token=OTHER_TOKEN)[0] == 200  # most likely the same segment
    arena.acknowledged += VICTIM_SPANS_PER_BATCH  # the arena checks them all at its end
    arena.collector.writer.drain()
    assert arena.collector.writer.stats.quarantined == quarantined
    assert arena.count("otel_traces", VICTIM) >= victim_before + VICTIM_SPANS_PER_BATCH
    stored = arena.client.command(
        f"SELECT count() FROM {arena.options.name('otel_traces')} WHERE SpanName = 'odd-wire' "
        f"AND TenantId = {literal(ATTACKER)}"
    )
    assert stored == 1


def test_a_scope_message_given_twice_is_merged_as_protobuf_says(arena: Arena) -> None:
    """A singular message field given twice is one message, the two merged (protobuf's rule): a
    scope whose name comes in the first copy and its version in the second is stored with both.
    The engine's own Protobuf reader kept the first copy; the receiver re-encodes each request as
    parsed (`_canonical`), so the log never holds the repeated field."""
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    assert arena.collector.writer is not None
    span = Span(
        trace_id=os.urandom(16), span_id=os.urandom(8), name="twice-scoped", start_time_unix_nano=time.time_ns()
    )
    scope_name = _field(1, InstrumentationScope(name="scheduler").SerializeToString())
    scope_version = _field(1, InstrumentationScope(version="2.4.1").SerializeToString())
    scope_spans = scope_name + _field(2, span.SerializeToString()) + scope_version  # ScopeSpans: scope, spans, scope
    request = _field(1, _field(2, scope_spans))  # ExportTraceServiceRequest.resource_spans.scope_spans
    assert post(arena.otlp, request, token=WRITE_TOKEN)[0] == 200
    arena.collector.writer.drain()
    stored = arena.client.query(
        f"SELECT ScopeName, ScopeVersion FROM {arena.options.name('otel_traces')} WHERE SpanName = 'twice-scoped' "
        f"AND TenantId = {literal(ATTACKER)}"
    ).result_rows
    assert stored == [("scheduler", "2.4.1")]


def test_every_gzip_member_is_read(arena: Arena) -> None:
    """A gzip body of two members (RFC 1952 allows any number; `gzip -d` reads them all): only the
    first was inflated, and the second's spans were acknowledged (200, no partial success) and
    dropped."""
    import gzip

    now = time.time_ns()
    members = b"".join(gzip.compress(_spread_request(f"member-{i}", [now])) for i in range(2))
    status, _, reply = post(arena.otlp, members, token=WRITE_TOKEN, Content_Encoding="gzip")
    assert status == 200
    assert ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 0
    assert arena.collector.writer is not None
    arena.collector.writer.drain()
    stored = arena.client.command(
        f"SELECT count() FROM {arena.options.name('otel_traces')} "
        f"WHERE TenantId = {literal(ATTACKER)} AND ServiceName IN ('member-0', 'member-1')"
    )
    assert stored == 2


def _h2_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each whole HTTP/2 frame in `data`."""
    frames = []
    while len(data) >= 9:
        size, kind = int.from_bytes(data[:3], "big"), data[3]
        frames.append((kind, data[9 : 9 + size]))
        data = data[9 + size :]
    return frames


@pytest.mark.parametrize("port", ["otlp", "base"])
def test_http2_with_prior_knowledge_is_told_to_use_http11(arena: Arena, port: str) -> None:
    """An HTTP/2 client without upgrade (h2c: Go's `SetUnencryptedHTTP2`, curl's
    `--http2-prior-knowledge`) gets HTTP/2's own refusal, a GOAWAY of HTTP_1_1_REQUIRED with a
    reason, which Go and curl report: the preface was answered with a bare HTML page and no
    status line, and Go said `http2: frame too large` (a Go team's review). A request line of a
    later version gets 505 with a status line; HTTP/1.1 on the same port still works."""
    import shutil
    import socket
    import subprocess
    from urllib.parse import urlsplit

    address = urlsplit(getattr(arena, port))
    with socket.create_connection((address.hostname, address.port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    frames = _h2_frames(answer)
    assert [kind for kind, _ in frames] == [0x4, 0x7]  # SETTINGS, GOAWAY
    goaway = frames[1][1]
    assert goaway[4:8] == (0x0D).to_bytes(4, "big")  # HTTP_1_1_REQUIRED
    assert b"HTTP/1.1 only" in goaway[8:]
    with socket.create_connection((address.hostname, address.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n")
        line = s.makefile("rb").readline()
    assert line.startswith(b"HTTP/1.1 505 ")
    if shutil.which("curl"):
        done = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", f"{address.scheme}://{address.netloc}/"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode != 0
    assert post(arena.otlp, ExportTraceServiceRequest().SerializeToString())[0] == 200


def test_refused_requests_are_logged_with_their_reason_and_peer_once_a_minute(
    caplog: pytest.LogCaptureFixture, collector: Collector
) -> None:
    """A service sending with a wrong token lost all its telemetry, and the collector said nothing
    of it (an on-call review): the first refusal is logged at once, with the reason and where it
    came from, and the next ones together at most once a minute."""
    import logging

    from clinotel.collector.receiver.export import REFUSALS_LOGGED_EVERY_S

    assert collector.http is not None
    url = f"http://127.0.0.1:{collector.http.port}/v1/traces"
    assert collector.receiver is not None
    stats = collector.receiver.stats
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"):
        for _ in range(3):
            assert post(url, ExportTraceServiceRequest().SerializeToString(), token="not-a-token")[0] == 401
        stats._logged_at -= REFUSALS_LOGGED_EVERY_S  # a minute on
        assert post(url, ExportTraceServiceRequest().SerializeToString(), token="not-a-token")[0] == 401
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        "refused 1 request(s) since the last such line: 1 unauthenticated (the last from 127.0.0.1:"
    )
    assert lines[1].startswith(
        "refused 3 request(s) since the last such line: 3 unauthenticated (the last from 127.0.0.1:"
    )


def _folding_text_request(spans: int, chars: int, char: str = "\ufdfa") -> bytes:
    """`spans` spans of ten events each, whose `exception.message` is `chars` of `char`."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    now = time.time_ns()
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    text = KeyValue(key="exception.message", value=AnyValue(string_value=char * chars))
    for _ in range(spans):
        span = scope.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="folds")
        span.start_time_unix_nano = span.end_time_unix_nano = now
        span.events.extend(Span.Event(time_unix_nano=now, name="e", attributes=[text]) for _ in range(10))
    return request.SerializeToString()


def test_text_that_grows_when_folded_is_counted_before_it_is_acknowledged(arena: Arena) -> None:
    """U+FDFA is one character of 3 bytes, and 18 of 33 in the NFKD form the PHI rules read. A
    tenant's requests of it were acknowledged, took the insert past the engine's cap, and their
    segment was set aside with every other tenant's spans in it (53 % of a victim's in an attack
    review, and no one's stored for 93 s). Its growth now counts as the resources' copies do: a
    request that could not fit is refused (413) before it is acknowledged, and the others, sent
    at once, are stored in segments their inserts fit, while the victim keeps exporting (the
    arena checks at its end that every span it acknowledged is stored)."""
    from concurrent.futures import ThreadPoolExecutor

    from clinotel.semconv import TEXT_WINDOW

    writer = arena.collector.writer
    assert writer is not None
    retries, quarantined = writer.stats.retries, writer.stats.quarantined
    big = _folding_text_request(42, TEXT_WINDOW)  # 5.5 MB on the wire, ~55 MB in NFKD: past two segments
    status, _, body = post(arena.otlp, big, token=WRITE_TOKEN)
    assert status == 413, body
    assert b"NFKD" in body
    smalls = [_folding_text_request(4, TEXT_WINDOW) for _ in range(16)]  # 523 KB each, ~5 MB in NFKD
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda small: post(arena.otlp, small, token=WRITE_TOKEN)[0], smalls))
    assert answers == [200] * 16
    writer.drain()
    assert (writer.stats.retries, writer.stats.quarantined) == (retries, quarantined)
    stored = arena.client.command(
        f"SELECT count() FROM {arena.options.name('otel_traces')} WHERE SpanName = 'folds' "
        f"AND TenantId = {literal(ATTACKER)}"
    )
    assert stored == 16 * 4
