"""OTLP/gRPC calls that send their headers and never their message: one write token's stalled calls
held every worker of the synchronous gRPC server (eight), and every other tenant's official
exporter failed with DEADLINE_EXCEEDED until they were released. Now waiting holds no thread,
one tenant holds at most half of the calls read at once, and a call whose message has not arrived
within `--grpc-receive-timeout-s` is ended."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from clinotel.collector.tokens import Tokens
from collector.tests.fixtures import OTHER_TOKEN, WRITE_TOKEN, running

pytestmark = pytest.mark.timeout(60)

EXPORT: str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
BOUND_S: float = 3.0
"""The collector's `--grpc-receive-timeout-s` in these tests."""
STALLED: int = 8
"""As many as the synchronous server had worker threads."""


@pytest.fixture
def stalling(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> Iterator[Collector]:
    overrides = {"http": None, "metrics_interval_s": None, "rollup_interval_s": None, "grpc_receive_timeout_s": BOUND_S}
    with running(client, engine_dir, options, tokens, tmp_path / "wal", **overrides) as c:
        yield c


def _spans(name: str) -> list[ReadableSpan]:
    """One finished span of service `general-lab`."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "general-lab"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span(name):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def _official_export(port: int, token: str, name: str) -> tuple[SpanExportResult, float]:
    """The official OTLP/gRPC exporter's result for one span, and how long it took."""
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, headers=(("authorization", f"Bearer {token}"),), timeout=5
    )
    started = time.monotonic()
    try:
        return exporter.export(_spans(name)), time.monotonic() - started
    finally:
        exporter.shutdown()


def _count(c: Collector, where: str) -> int:
    assert c.writer is not None
    c.writer.drain()
    return int(c.client.query(f"SELECT count() FROM {c.options.name(schema.TRACES)} WHERE {where}").result_rows[0][0])


def test_stalled_calls_of_one_token_leave_the_receiver_to_other_tenants_and_are_ended(
    stalling: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    assert stalling.grpc is not None
    port = stalling.grpc.port
    release = threading.Event()

    def never() -> Iterator[bytes]:
        release.wait(30)
        yield from ()  # sends nothing: the call ends without a message once released

    caplog.set_level(logging.WARNING, logger="clinotel.collector")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stalled_export = channel.stream_unary(EXPORT)
        opened = time.monotonic()
        calls = [
            stalled_export.future(never(), metadata=(("authorization", f"Bearer {WRITE_TOKEN}"),))
            for _ in range(STALLED)
        ]
        time.sleep(1.0)  # the headers are in, the messages never come
        assert not any(call.done() for call in calls), "the stalled calls are still open"

        # another tenant's official exporter meanwhile: served at once, not after the stalled calls
        result, took = _official_export(port, OTHER_TOKEN, "during-the-stall")
        assert result is SpanExportResult.SUCCESS, f"another tenant's export failed after {took:.1f} s"
        assert took < 3.0

        # the stalled calls are ended by the server within the bound (no client deadline was set)
        codes = []
        for call in calls:
            error = call.exception(timeout=BOUND_S + 10)
            assert isinstance(error, grpc.RpcError), "a stalled call was answered as if it had sent a request"
            codes.append(error.code())
        ended = time.monotonic() - opened
        assert ended < BOUND_S + 3.0, f"the stalled calls were ended after {ended:.1f} s"
        assert set(codes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}, codes
        assert grpc.StatusCode.DEADLINE_EXCEEDED in codes
    finally:
        release.set()
        channel.close()

    # one warning for them all (at most one a minute), naming the bound and the tenant, not the token
    warnings = [r.getMessage() for r in caplog.records if "did not arrive within" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "--grpc-receive-timeout-s" in warnings[0]
    assert "st-marys" in warnings[0]
    assert WRITE_TOKEN not in caplog.text

    # acknowledged means logged: the other tenant's span is stored, and the receiver still serves
    assert _official_export(port, OTHER_TOKEN, "after-the-stall")[0] is SpanExportResult.SUCCESS
    assert _official_export(port, WRITE_TOKEN, "the-staller-recovers")[0] is SpanExportResult.SUCCESS
    assert _count(stalling, "TenantId = 'general' AND ServiceName = 'general-lab'") == 2
    assert _count(stalling, "TenantId = 'st-marys' AND ServiceName = 'general-lab'") == 1


def test_a_slow_message_within_the_bound_is_accepted(stalling: Collector) -> None:
    """The bound is on the whole message, not on the call being quiet: a client that takes a while
    (under the bound) to send its request is served as before."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    assert stalling.grpc is not None
    body = encode_spans(_spans("slow")).SerializeToString()

    def late() -> Iterator[bytes]:
        time.sleep(BOUND_S / 3)
        yield body

    with grpc.insecure_channel(f"127.0.0.1:{stalling.grpc.port}") as channel:
        reply = channel.stream_unary(EXPORT)(
            late(), metadata=(("authorization", f"Bearer {OTHER_TOKEN}"),), timeout=BOUND_S + 5
        )
    assert isinstance(reply, bytes)
    assert _count(stalling, "TenantId = 'general' AND SpanName = 'slow'") == 1


THIRD_TOKEN: str = "write-token-riverside-0123456789"


@pytest.fixture
def three_tenants(client: Any, engine_dir: Path, options: schema.SchemaOptions, tmp_path: Path) -> Iterator[Collector]:
    """A collector whose calls may wait 8 s for their message, with write tokens of three tenants."""
    path = tmp_path / "tokens.toml"
    path.write_text(
        "".join(
            f'[[token]]\ntenant = "{tenant}"\nrole = "write"\ntoken = "{token}"\n\n'
            for tenant, token in (("st-marys", WRITE_TOKEN), ("general", OTHER_TOKEN), ("riverside", THIRD_TOKEN))
        ),
        encoding="utf-8",
    )
    path.chmod(0o600)
    overrides = {"http": None, "metrics_interval_s": None, "rollup_interval_s": None, "grpc_receive_timeout_s": 8.0}
    with running(client, engine_dir, options, Tokens.load(path), tmp_path / "wal", **overrides) as c:
        yield c


def test_two_tokens_stalled_calls_leave_a_turn_to_a_third_tenant(three_tenants: Collector) -> None:
    """Two stolen tokens of different tenants, each with as many stalled calls as one tenant may
    have read at once, held all 8 turns: a third tenant's exporter failed until they were ended."""
    assert three_tenants.grpc is not None
    port = three_tenants.grpc.port
    release = threading.Event()

    def never() -> Iterator[bytes]:
        release.wait(30)
        yield from ()

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stalled_export = channel.stream_unary(EXPORT)
        calls = [
            stalled_export.future(never(), metadata=(("authorization", f"Bearer {token}"),))
            for token in (WRITE_TOKEN, OTHER_TOKEN)
            for _ in range(STALLED // 2)
        ]
        time.sleep(1.0)
        assert not any(call.done() for call in calls), "the stalled calls are still open"
        result, took = _official_export(port, THIRD_TOKEN, "beside-two-stallers")
        assert result is SpanExportResult.SUCCESS, f"the third tenant's export failed after {took:.1f} s"
        assert took < 2.0, f"the third tenant's export waited {took:.1f} s for a turn"
    finally:
        release.set()
        channel.close()
    assert _count(three_tenants, "TenantId = 'riverside'") == 1


def test_the_last_free_turn_is_kept_for_a_tenant_that_holds_none() -> None:
    from clinotel.collector.receiver.grpc import _Turns

    async def scenario() -> list[str]:
        turns = _Turns(total=8, per_tenant=4, open_per_tenant=64)
        for tenant in ("a", "a", "a", "b", "b", "b", "b"):
            await turns.take(tenant)
        served: list[str] = []

        async def wait(tenant: str) -> None:
            await turns.take(tenant)
            served.append(tenant)

        # the last free turn is kept for a tenant holding none: a's call waits, c's goes at once
        a_waits = asyncio.ensure_future(wait("a"))
        await asyncio.sleep(0)
        assert not a_waits.done()
        await wait("c")
        d_waits = asyncio.ensure_future(wait("d"))
        await asyncio.sleep(0)
        turns.give_back("b")  # the last free turn: d (none held) takes it, not a (3 held, waiting first)
        await asyncio.sleep(0)
        turns.give_back("b")  # the last free turn again: kept
        await asyncio.sleep(0)
        assert not a_waits.done()
        turns.give_back("b")
        await asyncio.wait_for(asyncio.gather(a_waits, d_waits), 5)
        return served

    assert asyncio.run(scenario()) == ["c", "d", "a"]
