"""The arena for the attack suite: one collector with two tenants. The attacker holds st-marys'
read token; the victim, general, keeps exporting during the attacks. The victim's rows carry
markers that must never appear in anything the attacker gets back, and a canary directory with
a secret file must never be read or written through the read port."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import schema
from clinotel.collector.tokens import Tokens
from clinotel.model.sql import literal
from clinotel.model.tables import CHANGES
from collector.tests.fixtures import (
    METRICS_TOKEN,
    OPERATOR_TOKEN,
    OTHER_READ_TOKEN,
    OTHER_TOKEN,
    READ_TOKEN,
    WRITE_TOKEN,
)
from collector.tests.otlp_clients import exchange, post, send_workflows

VICTIM = "general"
ATTACKER = "st-marys"
MARKER = "vctmsecret"
"""In the victim's service names, span names and rows of every tenant table; never in an answer."""
CANARY_SECRET = "canary-3f9c1e-not-for-readers"
VICTIM_SPANS_PER_BATCH = 4
STALL_TIMEOUT_S = 3.0
"""The arena's HTTP ports drop a stalled connection after this (the product's default is 30 s)."""


def victim_request(n: int = VICTIM_SPANS_PER_BATCH) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"{MARKER}-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for i in range(n):
        with provider.get_tracer("victim").start_as_current_span(f"{MARKER} span {i}"):
            pass
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        return self.headers.get("X-ClickHouse-Exception-Code")

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Arena:
    collector: Collector
    options: schema.SchemaOptions
    client: Any
    canary: Path
    tokens_file: Path
    acknowledged: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def base(self) -> str:
        assert self.collector.admin is not None
        return f"http://127.0.0.1:{self.collector.admin.port}"

    @property
    def otlp(self) -> str:
        assert self.collector.http is not None
        return f"http://127.0.0.1:{self.collector.http.port}/v1/traces"

    def ask(
        self,
        sql: str | None = None,
        *,
        body: bytes | None = None,
        token: str | None = READ_TOKEN,
        headers: dict[str, str] | None = None,
        path: str = "/",
        **params: str,
    ) -> Answer:
        """One request to the read port as the attacker (st-marys' read token)."""
        import urllib.parse
        import urllib.request

        query = dict(params)
        if sql is not None:
            query["query"] = sql
        url = f"{self.base}{path}?{urllib.parse.urlencode(query)}" if query else f"{self.base}{path}"
        request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
        if token is not None:
            request.add_header("X-ClickHouse-Key", token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        return Answer(*exchange(request))

    def count(self, table: str, tenant: str) -> int:
        return int(
            self.client.command(f"SELECT count() FROM {self.options.name(table)} WHERE TenantId = {literal(tenant)}")
        )


def _victim_load(arena: Arena) -> None:
    """The victim exports continuously: every acknowledged span must be stored once."""
    while not arena.stop.is_set():
        status, _, body = post(arena.otlp, victim_request(), token=OTHER_TOKEN)
        if status == 200:
            arena.acknowledged += VICTIM_SPANS_PER_BATCH
        else:
            arena.failures.append(f"{status}: {body[:200]!r}")
        arena.stop.wait(0.05)


def disk_snapshot(*roots: Path) -> set[tuple[str, int]]:
    """Every file under `roots` with its size (the store's own parts and log excluded)."""
    seen: set[tuple[str, int]] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [
                d for d in dirnames if d not in ("store", "data", "metadata", "wal", "__pycache__") and d[0] != "."
            ]
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    seen.add((str(path), path.stat().st_size))
                except OSError:
                    continue
    return seen


@pytest.fixture(scope="module")
def arena(client: Any, engine_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    tmp = tmp_path_factory.mktemp("arena")
    canary = tmp / "canary"
    canary.mkdir()
    (canary / "secret.txt").write_text(CANARY_SECRET + "\n", encoding="utf-8")
    tokens_file = tmp / "tokens.toml"
    tokens_file.write_text(
        "".join(
            f'[[token]]\ntenant = "{tenant}"\nrole = "{role}"\ntoken = "{token}"\n\n'
            for tenant, role, token in [
                (ATTACKER, "write", WRITE_TOKEN),
                (ATTACKER, "read", READ_TOKEN),
                (VICTIM, "write", OTHER_TOKEN),
                (VICTIM, "read", OTHER_READ_TOKEN),
                ("*", "read", OPERATOR_TOKEN),
                ("*", "metrics", METRICS_TOKEN),
            ]
        ),
        encoding="utf-8",
    )
    tokens_file.chmod(0o600)
    options = schema.SchemaOptions(database=f"sec_{uuid.uuid4().hex[:10]}")
    schema.apply(client, options)
    config = CollectorConfig(
        database=options.database,
        wal_dir=tmp / "wal",
        otlp_http=("127.0.0.1", 0),
        otlp_grpc=None,
        http=("127.0.0.1", 0),
        data_dir=engine_dir / "data",
        tokens=Tokens.load(tokens_file),
        metrics_interval_s=None,
    )
    collector = Collector(config, client=client)
    collector.start()
    for port in (collector.admin, collector.http):  # stalled requests are dropped sooner than the 30 s default
        assert port is not None
        port._server.request_timeout_s = STALL_TIMEOUT_S  # type: ignore[attr-defined]
    arena = Arena(collector, options, client, canary, tokens_file)
    assert collector.http is not None
    assert collector.writer is not None
    send_workflows(f"http://127.0.0.1:{collector.http.port}", "http/protobuf", 6, token=WRITE_TOKEN)
    for _ in range(5):
        assert post(arena.otlp, victim_request(), token=OTHER_TOKEN)[0] == 200
        arena.acknowledged += VICTIM_SPANS_PER_BATCH
    _victim_rows(arena)
    collector.writer.drain()
    loader = threading.Thread(target=_victim_load, args=(arena,), daemon=True)
    loader.start()
    try:
        yield arena
    finally:
        arena.stop.set()
        loader.join(timeout=10)
        collector.writer.drain()
        stored = client.command(f"SELECT count() FROM {options.name(schema.TRACES)} WHERE ServiceName = '{MARKER}-svc'")
        collector.stop()
        client.command(f"DROP DATABASE IF EXISTS {options.database}")
        assert not arena.failures, arena.failures[:3]
        assert stored == arena.acknowledged, "every span the victim exported during the attacks is stored once"


def _victim_rows(arena: Arena) -> None:
    """Marker rows for the victim in the tenant tables the OTLP path does not fill."""
    o, c = arena.options, arena.client
    c.command(
        f"INSERT INTO {o.name(schema.ALERT_EVENTS)} (Timestamp, TenantId, Rule, Event, Severity, Detail) "
        f"VALUES (now64(3), '{VICTIM}', '{MARKER}_rule', 'firing', 'page', '{MARKER} detail')"
    )
    c.command(
        f"INSERT INTO {o.name(schema.COLLECTOR_METRICS)} (Timestamp, TenantId, Instance, Metric, Kind, Value) "
        f"VALUES (now64(3), '{VICTIM}', '{MARKER}-host', '{MARKER}_metric', 'gauge', 4242424242)"
    )
    c.command(
        f"INSERT INTO {o.name(schema.SDK_TELEMETRY)} (Timestamp, TenantId, ServiceName, ServiceInstance) "
        f"VALUES (now64(9), '{VICTIM}', '{MARKER}-svc', '{MARKER}-instance')"
    )
    # a change event as the rollups' refresh writes it (the arena runs no refresh)
    c.command(
        f"INSERT INTO {o.name(CHANGES)} (TenantId, Hour, Timestamp, ServiceName, Kind, Name, Actor) "
        f"VALUES ('{VICTIM}', toStartOfHour(now()), now64(9), '{MARKER}-svc', 'deploy', '{MARKER}-change', "
        f"'pipeline:{MARKER}')"
    )


SECRETS = (MARKER, CANARY_SECRET, OTHER_READ_TOKEN, OTHER_TOKEN, OPERATOR_TOKEN, METRICS_TOKEN, WRITE_TOKEN)


def assert_reveals_nothing(answer: Answer) -> None:
    """Nothing of the victim, the canary or any token in the body or the headers."""
    haystack = (answer.text() + " " + " ".join(f"{k}: {v}" for k, v in answer.headers.items())).lower()
    for secret in SECRETS:
        assert secret.lower() not in haystack, f"{secret!r} leaked: {haystack[:300]}"
    import hashlib

    for token in (OTHER_READ_TOKEN, OTHER_TOKEN, OPERATOR_TOKEN):
        assert hashlib.sha256(token.encode()).hexdigest() not in haystack


def assert_refused(answer: Answer, *codes: int) -> None:
    """A ClickHouse-style refusal: an error status, the code header, the code in the text."""
    assert answer.status >= 400, answer.text()[:300]
    assert answer.code is not None, answer.headers
    assert answer.text().startswith(f"Code: {answer.code}. DB::Exception: "), answer.text()[:200]
    if codes:
        assert int(answer.code) in codes, answer.text()[:300]
    assert_reveals_nothing(answer)


@pytest.fixture
def untouched(arena: Arena) -> Iterator[None]:
    """Nothing on disk changes: the canary, the arena's files, the working directory."""
    roots = (arena.canary, arena.tokens_file.parent, Path.cwd())
    before = disk_snapshot(*roots)
    tokens = arena.tokens_file.read_bytes()
    yield
    time.sleep(0.05)
    assert disk_snapshot(*roots) - before == set(), "a file was written"
    assert arena.tokens_file.read_bytes() == tokens
    assert (arena.canary / "secret.txt").read_text(encoding="utf-8") == CANARY_SECRET + "\n"
