"""OTLP/HTTP end to end: the official exporter in, rows in the embedded engine out; and the
specification's answers to everything else, with nothing written and the server still serving."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinotel.collector.service import Collector, CollectorConfig, ConfigError
from clinotel.collector.store import schema
from clinotel.collector.tokens import Tokens
from collector.tests.fixtures import METRICS_TOKEN, OTHER_TOKEN, READ_TOKEN, WRITE_TOKEN
from collector.tests.otlp_clients import plain_request, post, send_workflows, variants


def _url(c: Collector) -> str:
    assert c.http is not None
    return f"http://127.0.0.1:{c.http.port}/v1/traces"


def _count(c: Collector, where: str = "1") -> int:
    assert c.writer is not None
    c.writer.drain()
    return int(c.client.query(f"SELECT count() FROM {c.options.name(schema.TRACES)} WHERE {where}").result_rows[0][0])


def test_clinotel_workflows_over_otlp_http_land_in_otel_traces(collector: Collector) -> None:
    assert collector.http is not None
    send_workflows(f"http://127.0.0.1:{collector.http.port}", "http/protobuf", 20)
    n = _count(collector)
    assert n == 20 * 8, collector.client.query(
        f"SELECT SpanName, count(), groupArray(SpanAttributes) FROM {collector.options.name(schema.TRACES)} "
        "GROUP BY 1 HAVING count() != 20"
    ).result_rows
    table = collector.options.name(schema.TRACES)
    tenants = collector.client.query(
        f"SELECT DISTINCT TenantId, ResourceAttributes['clinical.tenant.id'] FROM {table}"
    ).result_rows
    assert tenants == [("st-marys", "st-marys")], "the token's tenant, never the payload's"
    assert collector.receiver is not None
    assert collector.receiver.stats.spans_accepted == 160


def test_json_and_gzip(collector: Collector) -> None:
    start = time.time_ns() - 10**9
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "hand"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "name": "decide",
                                "kind": 1,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": start + 500_000_000,
                                "attributes": [{"key": "clinical.decision.value", "value": {"stringValue": "ESI-3"}}],
                                "futureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    status, headers, reply = post(_url(collector), json.dumps(body).encode(), content_type="application/json")
    assert status == 200, reply
    assert headers["Content-Type"] == "application/json"
    assert json.loads(reply) == {}
    status, _, _ = post(_url(collector), gzip.compress(plain_request(2)), Content_Encoding="gzip")
    assert status == 200
    row = collector.client.query(
        f"SELECT TraceId, SpanId, Duration, SpanAttributes FROM {collector.options.name(schema.TRACES)} "
        "WHERE ServiceName = 'json-svc'"
    ).result_rows
    assert _count(collector) == 3
    row = collector.client.query(
        f"SELECT TraceId, SpanId, Duration, SpanAttributes FROM {collector.options.name(schema.TRACES)} "
        "WHERE ServiceName = 'json-svc'"
    ).result_rows
    assert row == [
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", 500_000_000, {"clinical.decision.value": "ESI-3"})
    ]


def test_spans_with_invalid_ids_are_refused_individually(collector: Collector) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(plain_request(3))
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"short"
    status, _, reply = post(_url(collector), request.SerializeToString())
    assert status == 200
    response = ExportTraceServiceResponse.FromString(reply)
    assert response.partial_success.rejected_spans == 1
    assert "refused" in response.partial_success.error_message
    assert _count(collector) == 2


def _gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"\0" * size, compresslevel=9)


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        ("truncated protobuf", plain_request(3)[:-7], {}, 400),
        ("random bytes", os.urandom(512), {}, 400),
        ("bad json", b'{"resourceSpans": [', {"content_type": "application/json"}, 400),
        ("json not an object", b"[1, 2]", {"content_type": "application/json"}, 400),
        ("json bad hex id", b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}',
         {"content_type": "application/json"}, 400),
        ("json wrong types", b'{"resourceSpans": "nope"}', {"content_type": "application/json"}, 400),
        ("wrong content type", b"hello", {"content_type": "text/plain"}, 415),
        ("unknown encoding", b"xx", {"Content_Encoding": "br"}, 415),
        ("bad gzip", b"\x1f\x8b\x08\x00garbage", {"Content_Encoding": "gzip"}, 400),
        ("gzip bomb", _gzip_bomb(50 << 20), {"Content_Encoding": "gzip"}, 413),
        ("over the size limit", b"\0" * (2 << 20), {}, 413),
        ("huge attribute", None, {}, 413),
    ],
)  # fmt: skip
def test_malformed_input_gets_the_right_answer_and_writes_nothing(
    module_collector: Collector, name: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    collector = module_collector  # one for the cases: each counts what it adds
    if body is None:  # one attribute of 2 MiB, under a 1 MiB limit
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("t").start_as_current_span("s", attributes={"service.name": "x" * (2 << 20)}):
            pass
        body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    assert collector.wal is not None
    before = _count(collector)
    pending = collector.wal.pending_bytes
    got, response_headers, reply = post(_url(collector), body, **headers)
    assert got == status, (name, reply[:200])
    if response_headers.get("Content-Type") == "application/x-protobuf":
        assert status_pb2.Status.FromString(reply).message
    assert collector.wal.pending_bytes == pending, "nothing of a refused request is logged"
    assert post(_url(collector), plain_request(1))[0] == 200, "the server keeps serving"
    assert _count(collector) == before + 1


def _message(reply: bytes) -> str:
    return status_pb2.Status.FromString(reply).message


def test_authentication(collector: Collector) -> None:
    """Each refusal says which of the three it is (they read alike before): no token, a token
    this collector does not know, a token of another role."""
    body = plain_request(1)
    status, _, reply = post(_url(collector), body, token=None)
    assert (status, _message(reply)) == (401, "a write token is required (Authorization: Bearer <token>)")
    status, _, reply = post(_url(collector), body, token="not-a-token-at-all-1234")
    assert (status, _message(reply)) == (401, "the bearer token is not one of this collector's tokens")
    status, headers, reply = post(_url(collector), body, token=READ_TOKEN)
    assert status == 401, "a read token cannot write"
    assert _message(reply) == "the bearer token is a read token: sending spans needs a write token"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert post(_url(collector), plain_request(2, tenant_claimed="st-marys"), token=OTHER_TOKEN)[0] == 200
    assert _count(collector, "TenantId = 'general'") == 2
    assert _count(collector, "TenantId = 'st-marys'") == 0, "a token cannot write as another tenant"


def test_wrong_path_and_method(collector: Collector) -> None:
    assert post(_url(collector).replace("/v1/traces", "/v1/logs"), b"")[0] == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(_url(collector), timeout=5)
    with info.value:
        assert info.value.code == 405
        assert info.value.headers["Allow"] == "POST"


def test_a_full_log_answers_503_with_retry_after_and_loses_nothing(collector: Collector) -> None:
    assert collector.writer is not None
    assert collector.wal is not None
    collector.writer.stop(drain=False)  # ClickHouse "stalls": the log fills up
    accepted = 0
    for body in itertools.islice(variants(plain_request(2000)), 200):
        status, headers, _ = post(_url(collector), body)
        if status == 503:
            assert headers["Retry-After"].isdigit()
            break
        assert status == 200
        accepted += 1
    else:
        pytest.fail("the log never filled")
    assert collector.wal.pending_bytes <= collector.config.wal_max_bytes
    collector.writer.drain()
    assert _count(collector) == accepted * 2000, "every acknowledged span is stored"
    assert post(_url(collector), body)[0] == 200, "the refused request accepted again once the log drained"
    collector.writer.drain()
    assert _count(collector) == (accepted + 1) * 2000, "and stored: a refused request is no retry of one accepted"


def test_a_full_log_answers_grpc_unavailable_with_retry_info(collector: Collector) -> None:
    import grpc
    from google.rpc import error_details_pb2

    assert collector.writer is not None
    assert collector.grpc is not None
    collector.writer.stop(drain=False)
    auth = (("authorization", f"Bearer {WRITE_TOKEN}"),)
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc.port}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        for body in itertools.islice(variants(plain_request(2000)), 200):
            try:
                export(body, metadata=auth, timeout=10)
            except grpc.RpcError as e:
                refused = e
                break
        else:
            pytest.fail("the log never filled")
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    details = dict(refused.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.seconds >= 1
    collector.writer.drain()


def test_insecure_mode_is_refused_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="non-loopback"):
        CollectorConfig(otlp_http=("0.0.0.0", 4318), insecure_no_auth=True).validate()
    with pytest.raises(ConfigError, match="--tokens"):
        CollectorConfig().validate()
    CollectorConfig(otlp_http=("::1", 4318), insecure_no_auth=True).validate()
    with pytest.raises(ConfigError, match="not both"):  # accepted before, the tokens winning silently
        CollectorConfig(insecure_no_auth=True, tokens=Tokens({})).validate()


# -- OTLP/gRPC: the same export behind the other transport ----------------------------------


def test_clinotel_workflows_over_otlp_grpc(collector: Collector) -> None:
    assert collector.grpc is not None
    send_workflows(f"http://127.0.0.1:{collector.grpc.port}", "grpc", 5)
    assert _count(collector, "TenantId = 'st-marys' AND ServiceName = 'ed-triage'") == 5 * 8


def test_grpc_answers_with_the_specified_codes(collector: Collector) -> None:
    import grpc

    assert collector.grpc is not None
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc.port}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        auth = (("authorization", f"Bearer {WRITE_TOKEN}"),)
        with pytest.raises(grpc.RpcError) as info:
            export(plain_request(1), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\xff\xff garbage", metadata=auth, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reply = export(plain_request(2), metadata=auth, timeout=5)
        assert ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 0
    assert _count(collector) == 2


def test_metrics_and_ping(collector: Collector) -> None:
    assert collector.admin is not None
    base = f"http://127.0.0.1:{collector.admin.port}"
    with urllib.request.urlopen(f"{base}/ping", timeout=5) as r:
        assert r.read() == b"Ok.\n"
    post(_url(collector), plain_request(3))
    post(_url(collector), b"garbage")
    post(_url(collector), plain_request(1), token=None)
    _count(collector)
    scrape = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(scrape, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert lines["clinotel_receiver_spans_accepted_total"] == "3"
    assert lines['clinotel_receiver_requests_refused_total{reason="malformed"}'] == "1"
    assert lines['clinotel_receiver_requests_refused_total{reason="unauthenticated"}'] == "1"
    assert lines["clinotel_writer_records_total"] == "1"
    assert lines["clinotel_wal_pending_bytes"] == "0"
    assert float(lines['clinotel_ingest_freshness_seconds{quantile="0.99"}']) >= 0


def test_ping_and_up_say_when_the_store_or_the_log_cannot_take_spans_for_as_long_as_it_lasts(
    collector: Collector,
) -> None:
    """On a full disk the collector refused every export (`log_error`) and its store took nothing,
    while `/ping` said Ok and `clinotel_collector_up` 1 (an operator's review): both now say so
    while it lasts, and are well again after it."""
    import time
    import urllib.error

    from clinotel.collector.service import LOG_ERROR_SHOWN_S
    from clinotel.collector.writer import STALL_ALARM_S

    assert collector.admin is not None
    assert collector.receiver is not None
    assert collector.writer is not None
    base = f"http://127.0.0.1:{collector.admin.port}"

    def ping() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def up() -> str:
        scrape = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(scrape, timeout=5) as r:
            return next(line.split()[1] for line in r.read().decode().splitlines()
                        if line.startswith("clinotel_collector_up "))  # fmt: skip

    assert ping()[0] == 200
    stats = collector.writer.stats
    stats.stalled_since, stats.stalled_by = time.monotonic() - STALL_ALARM_S - 1, "NOT_ENOUGH_SPACE"
    status, text = ping()
    assert status == 503
    assert "the store has taken no segment for 6" in text
    assert "NOT_ENOUGH_SPACE" in text
    assert up() == "0"
    stats.stalled_since = None
    collector.receiver.stats.count_refused("log_error")
    status, text = ping()
    assert status == 503
    assert "could not be written" in text
    collector.receiver.stats.refused_at["log_error"] -= LOG_ERROR_SHOWN_S
    assert ping()[0] == 200
    assert up() == "1"
