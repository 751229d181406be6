"""A tenant's spans of many different days are paced: every tenant table is partitioned by tenant
and day, and one 24 KB request of 365 spans a day apart held the writer 1.5 s for every tenant.
A request of more than 64 days other than today's is refused (413); within a tenant's allowance
its spans are stored, past it the tenant's requests that add days it was not charged for in the
last second are answered 429 with a `Retry-After` (UNAVAILABLE with `RetryInfo` over gRPC, in the
trailer the Python exporter reads too); its live traffic (today's spans) and other tenants are not
held back; sending the same old days again and again is charged again every second; the official
exporters honour the delay and a backfill in time order gets through."""

from __future__ import annotations

import time
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult

from clinotel.collector.errors import RefusedError
from clinotel.collector.log.wal import LogFullError, WriteAheadLog
from clinotel.collector.receiver.days import DayPacing
from clinotel.collector.receiver.export import DAY_NS, PROTOBUF, Limits, TraceReceiver
from clinotel.collector.receiver.http import OtlpHttpServer
from clinotel.collector.service import Collector
from clinotel.collector.tokens import Grant
from collector.tests.fixtures import OTHER_TOKEN, WRITE_TOKEN, ListLog
from collector.tests.otlp_clients import plain_request, post, sdk_spans

HOUR_NS = 3_600 * 10**9


def _spread(days: int, salt: int, *, first_day_back: int = 0, per_day: int = 1) -> bytes:
    """A request of `per_day` spans on each of `days` days, each day before the last, starting
    `first_day_back` days ago."""
    request = ExportTraceServiceRequest.FromString(plain_request(1))
    scope = request.resource_spans[0].scope_spans[0]
    template = scope.spans[0]
    spans = []
    now = time.time_ns()
    for n in range(days * per_day):
        d = n // per_day
        span = type(template)()
        span.CopyFrom(template)
        span.trace_id = (salt << 32 | n + 1).to_bytes(16, "big")
        span.start_time_unix_nano = now - (first_day_back + d) * DAY_NS - HOUR_NS
        span.end_time_unix_nano = span.start_time_unix_nano + 10**6
        spans.append(span)
    del scope.spans[:]
    scope.spans.extend(spans)
    return request.SerializeToString()


def _stored(collector: Collector) -> dict[str, int]:
    assert collector.writer is not None
    collector.writer.drain()
    table = collector.options.name("otel_traces")
    return {
        str(t): int(n)
        for t, n in collector.client.query(f"SELECT TenantId, count() FROM {table} GROUP BY 1").result_rows
    }


def test_a_tenant_past_its_allowance_waits_and_no_one_else_does(collector: Collector) -> None:
    assert collector.http is not None
    assert collector.grpc is not None
    url = f"http://127.0.0.1:{collector.http.port}/v1/traces"
    assert post(url, _spread(100, 1, first_day_back=2))[0] == 200, "100 old days: within the allowance at once"
    assert post(url, _spread(136, 2, first_day_back=102))[0] == 200  # 236 days in all: 20 left of the 256
    status, headers, _ = post(url, _spread(60, 4, first_day_back=238))
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 2, headers
    assert post(url, _spread(8, 5, first_day_back=2))[0] == 200, "a few days charged a moment ago cost nothing more"
    assert post(url, _spread(60, 5, first_day_back=2))[0] == 429, "many days sent again are charged again"
    assert post(url, _spread(1, 6))[0] == 200, "its live traffic (today's spans) is not held back"
    other = post(url, _spread(30, 7, first_day_back=222), token=OTHER_TOKEN)[0]
    assert other == 200, "another tenant is not held back"
    auth = (("authorization", f"Bearer {WRITE_TOKEN}"),)
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc.port}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as refused:
            export(_spread(84, 8, first_day_back=282), metadata=auth, timeout=10)
    error: Any = refused.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(error.trailing_metadata())
    status_details = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert status_details.details[0].Unpack(retry)
    assert retry.retry_delay.seconds >= 1
    assert error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == retry
    assert _stored(collector) == {"st-marys": 245, "general": 30}
    assert collector.receiver is not None
    assert collector.receiver.stats.requests_refused["throttled"] == 3


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_official_exporters_honour_the_delay_and_a_backfill_gets_through(protocol: str) -> None:
    """Six batches of 60 old days each, from the official exporter: those past the tenant's
    allowance at once (256) wait for it (Retry-After, RetryInfo) and are stored."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    from clinotel.collector.receiver.grpc import OtlpGrpcServer

    log = ListLog()
    receiver = TraceReceiver(cast(WriteAheadLog, log), Limits(max_span_age_days=None))
    grant = lambda token: Grant("st-marys", "write") if token else None  # noqa: E731
    server: Any = (
        OtlpHttpServer("127.0.0.1", 0, receiver, grant)
        if protocol == "http"
        else OtlpGrpcServer("127.0.0.1", 0, receiver, grant)
    )
    server.start()
    try:
        exporter: Any = (
            OTLPSpanExporter(
                endpoint=f"http://127.0.0.1:{server.port}/v1/traces", headers={"Authorization": "Bearer w"}
            )
            if protocol == "http"
            else GrpcExporter(endpoint=f"127.0.0.1:{server.port}", insecure=True, headers={"authorization": "Bearer w"})
        )
        [template] = sdk_spans(1)
        started = time.monotonic()
        for batch in range(6):
            spans = [
                _at(template, time.time_ns() - (2 + batch * 60 + d) * DAY_NS, batch * 1000 + d + 1) for d in range(60)
            ]
            assert exporter.export(spans) is SpanExportResult.SUCCESS, f"batch {batch}"
        took = time.monotonic() - started
        exporter.shutdown()
    finally:
        server.stop()
    assert len(log.records) == 6
    assert receiver.stats.requests_refused["throttled"] >= 2
    assert took >= 2.0, f"paced: {took:.1f} s"


def _at(template: Any, start_ns: int, n: int) -> Any:
    """A copy of SDK span `template` started at `start_ns`, of its own trace."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    context = SpanContext(n, n, is_remote=False, trace_flags=TraceFlags(1))
    return ReadableSpan(
        name=template.name, context=context, parent=None, resource=template.resource, attributes=template.attributes,
        kind=template.kind, start_time=start_ns, end_time=start_ns + 10**6, status=template.status,
        instrumentation_scope=template.instrumentation_scope,
    )  # fmt: skip


def test_pacing_counts_new_days_only_and_charges_them_again_each_second() -> None:
    now = [0.0]
    pacing = DayPacing(rate_per_s=10, burst=20, clock=lambda: now[0])
    today = 20_000
    pacing.admit("a", range(today - 100, today - 85), today)  # 15 new days: 5 left
    with pytest.raises(RefusedError) as refused:
        pacing.admit("a", range(today - 50, today - 40), today)
    assert (refused.value.reason, refused.value.http_status, refused.value.retry_after) == ("throttled", 429, 1)
    pacing.admit("a", [today - 90, today - 1, today, today + 1], today)  # charged a moment ago, or live: free
    with pytest.raises(RefusedError):  # but many charged days sent again are charged again
        pacing.admit("a", range(today - 100, today - 85), today)
    pacing.admit("b", range(today - 100, today - 90), today)  # another tenant's own allowance
    now[0] = 0.5
    pacing.admit("a", range(today - 100, today - 92), today)  # 8 of them within the second: free
    now[0] = 1.2  # a second later: charged again (5 + 12 left: 9 after)
    pacing.admit("a", range(today - 100, today - 92), today)
    now[0] = 2.4  # and the 15 again: 9 + 12 left, then 6; the same days are never free for ever
    pacing.admit("a", range(today - 100, today - 85), today)
    with pytest.raises(RefusedError):
        pacing.admit("a", range(today - 100, today - 85), today)
    now[0] = 10.0  # a request of more than a burst: waits for the whole burst, is charged a burst
    pacing.admit("e", range(today - 100, today - 80), today)  # the whole burst of 20
    with pytest.raises(RefusedError) as waits:
        pacing.admit("e", range(today - 200, today - 160), today)  # 40 days: waits for a whole burst
    assert waits.value.retry_after == 2, "a burst's wait, not a debt's: 20 / 10 s"
    now[0] = 12.0
    pacing.admit("e", range(today - 200, today - 160), today)
    with pytest.raises(RefusedError, match="one request may carry 400") as large:
        DayPacing(rate_per_s=10).admit("d", range(today - 600, today - 100), today)
    assert large.value.http_status == 413
    now[0] = 20.0
    for step in range(100):  # a backfill in time order: a new day now and then
        now[0] = 20.0 + step * 0.1
        pacing.admit("a", [today - 300 + step // 10], today)
    DayPacing(rate_per_s=0).admit("a", range(10_000), today)  # 0: unpaced
    assert DayPacing().burst == 256


def test_a_large_screened_request_counts_its_days() -> None:
    """A request over the direct decoding limit is screened a run at a time: its days count too."""
    receiver = TraceReceiver(cast(WriteAheadLog, ListLog()), Limits(max_span_age_days=None))
    receiver.pacing = DayPacing(burst=40)
    body = _spread(40, 7, first_day_back=2, per_day=300)
    assert len(body) > 700_000
    receiver.export(body, content_type=PROTOBUF, tenant="st-marys")
    with pytest.raises(RefusedError, match="retry after"):
        receiver.export(_spread(40, 8, first_day_back=500), content_type=PROTOBUF, tenant="st-marys")


class _FullOnce(ListLog):
    def __init__(self) -> None:
        super().__init__()
        self.full = True

    def append(self, record: Any, copies: int = 0) -> None:
        if self.full:
            self.full = False
            raise LogFullError("the log is full")
        super().append(record)


def test_a_request_the_log_refuses_is_not_charged_its_days() -> None:
    """A request charged its new days and then refused because the log is full (503: retried) is
    refunded: its retry is stored at once, not answered 429 for days it never stored."""
    log = _FullOnce()
    receiver = TraceReceiver(cast(WriteAheadLog, log), Limits(max_span_age_days=None))
    body = _spread(200, 11, first_day_back=2)
    with pytest.raises(RefusedError) as full:
        receiver.export(body, content_type=PROTOBUF, tenant="st-marys")
    assert (full.value.reason, full.value.http_status) == ("log_full", 503)
    receiver.export(body, content_type=PROTOBUF, tenant="st-marys")
    assert len(log.records) == 1
    with pytest.raises(RefusedError, match="retry after"):  # the stored one was charged
        receiver.export(_spread(200, 12, first_day_back=300), content_type=PROTOBUF, tenant="st-marys")


def test_a_refund_gives_back_the_allowance_and_the_days() -> None:
    now = [0.0]
    pacing = DayPacing(rate_per_s=10, burst=20, clock=lambda: now[0])
    today = 20_000
    charge = pacing.admit("a", range(today - 100, today - 85), today)
    assert charge is not None
    assert charge.cost == 15
    now[0] = 0.1
    pacing.refund(charge)
    again = pacing.admit("a", range(today - 100, today - 82), today)  # refunded: 18 new days fit
    assert again is not None
    assert again.days == tuple(range(today - 100, today - 82)), "the refunded days are new again"
    assert pacing.admit("a", [today, today - 1], today) is None, "live days: never charged"


def test_no_refund_once_another_request_of_the_tenant_was_admitted() -> None:
    """A refused request that others of its tenant rode on (its days free for a second) is not
    refunded: a review stored 5,120 new days in 0.2 s against an allowance of 256 by refusing a
    large request on purpose after small ones stored spans on its days."""
    pacing = DayPacing(rate_per_s=32, clock=lambda: 0.0)
    today = 20_000
    for cycle in range(3):
        days = range(today - 300 * (cycle + 1), today - 300 * (cycle + 1) + 256)
        try:
            big = pacing.admit("a", days, today)
        except RefusedError:
            assert cycle == 1, "the allowance was spent by the first cycle"
            break
        assert big is not None
        pacing.admit("a", list(days)[:8], today)  # rides free on the big request's days
        pacing.refund(big)  # the big request refused by the log after that
    else:
        raise AssertionError("a refund after a rider gave the allowance back")
    other = DayPacing(rate_per_s=32, clock=lambda: 0.0)
    alone = other.admit("b", range(today - 300, today - 44), today)
    assert alone is not None
    other.admit("c", range(today - 300, today - 292), today)  # another tenant's request does not count
    other.refund(alone)
    assert other.admit("b", range(today - 600, today - 344), today) is not None, "refunded: no one rode on it"
