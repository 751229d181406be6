"""The embedded ClickHouse (chDB) as the real database: one engine per process (chDB's rule),
one database per test; tokens and a running collector on that engine. Loaded for every test
directory by the root conftest."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import clickhouse_connect
import pytest

from clinotel.collector.log.wal import WriteAheadLog
from clinotel.collector.receiver.export import Limits, TraceReceiver
from clinotel.collector.receiver.http import OtlpHttpServer
from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import PLANNER_SETTINGS
from clinotel.collector.tokens import Grant, Tokens
from clinotel.model.sql import literal


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def client(engine_dir: Path) -> Iterator[Any]:
    # the planner's settings, as the collector's own client has them
    c = clickhouse_connect.get_client(dsn=f"chdb://{engine_dir / 'data'}", settings=PLANNER_SETTINGS)
    _keep_schema_cache_in(c, engine_dir)
    yield c
    c.close()


def _keep_schema_cache_in(c: Any, directory: Path) -> None:
    """Tests that stand the engine in for a server send the .proto inline, and chDB caches inline
    schemas under the working directory of its first such query, for the rest of the process:
    make that first query here, from `directory`, so the cache stays out of the checkout."""
    proto = literal('syntax = "proto3"; message M { string a = 1; }')
    here = Path.cwd()
    os.chdir(directory)
    try:
        c.query(
            "SELECT * FROM format(Protobuf, 'a String', '') SETTINGS format_schema_source = 'string', "
            f"format_schema = {proto}, format_schema_message_name = 'M'"
        )
    finally:
        os.chdir(here)


@contextlib.contextmanager
def own_database(client: Any) -> Iterator[schema.SchemaOptions]:
    """A database of its own on the shared engine, at the latest schema; dropped afterwards."""
    o = schema.SchemaOptions(database=f"t_{uuid.uuid4().hex[:12]}")
    schema.apply(client, o)
    try:
        yield o
    finally:
        client.command(f"DROP DATABASE IF EXISTS {o.database}")


@pytest.fixture
def options(client: Any) -> Iterator[schema.SchemaOptions]:
    with own_database(client) as o:
        yield o


@pytest.fixture
def pipeline(client: Any, options: schema.SchemaOptions) -> ingest.Pipeline:
    """The ingest pipeline (`Null` table and view) in the test's own database."""
    return ingest.install(client, options)


WRITE_TOKEN = "write-token-st-marys-0123456789"
READ_TOKEN = "read-token-st-marys-0123456789ab"
OTHER_TOKEN = "write-token-general-0123456789"
OTHER_READ_TOKEN = "read-token-general-0123456789ab"
OPERATOR_TOKEN = "read-token-operator-0123456789ab"
METRICS_TOKEN = "metrics-token-prometheus-012345"


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return tokens_in(tmp_path)


def tokens_in(directory: Path) -> Tokens:
    """The tests' tokens (st-marys' and general's write and read tokens, an operator's read token, a
    metrics token), from a tokens file written in `directory`."""
    path = directory / "tokens.toml"
    path.write_text(
        f"""
[[token]]
tenant = "st-marys"
role = "write"
sha256 = "{hashlib.sha256(WRITE_TOKEN.encode()).hexdigest()}"

[[token]]
tenant = "st-marys"
role = "read"
token = "{READ_TOKEN}"

[[token]]
tenant = "general"
token = "{OTHER_TOKEN}"

[[token]]
tenant = "general"
role = "read"
token = "{OTHER_READ_TOKEN}"

[[token]]
tenant = "*"
role = "read"
token = "{OPERATOR_TOKEN}"

[[token]]
tenant = "*"
role = "metrics"
sha256 = "{hashlib.sha256(METRICS_TOKEN.encode()).hexdigest()}"
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return Tokens.load(path)


def started_collector(work: Path, **config: Any) -> Collector:
    """An embedded collector of its own on `work` (its data, log and a tokens file with st-marys'
    `WRITE_TOKEN`), opened as `serve` opens it, without the metrics and rollup threads; `config`
    sets other `CollectorConfig` fields. For a child process: the engine's settings are per process."""
    path = work / "tokens.toml"
    path.write_text(f'[[token]]\ntenant = "st-marys"\ntoken = "{WRITE_TOKEN}"\n', encoding="utf-8")
    path.chmod(0o600)
    started = Collector(
        CollectorConfig(
            data_dir=work / "data", wal_dir=work / "wal", otlp_http=("127.0.0.1", 0), otlp_grpc=None, http=None,
            tokens=Tokens.load(path), metrics_interval_s=None, rollup_interval_s=None, **config,
        )
    )  # fmt: skip
    started.start()
    return started


@contextlib.contextmanager
def running(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, wal_dir: Path, **overrides: Any
) -> Iterator[Collector]:
    """A collector on the process's shared engine with its log in `wal_dir`, every port on loopback
    (1 MiB requests, a 4 MiB log); `overrides` replace any of its configuration."""
    fields: dict[str, Any] = {
        "database": options.database,
        "wal_dir": wal_dir,
        "otlp_http": ("127.0.0.1", 0),
        "otlp_grpc": ("127.0.0.1", 0),
        "http": ("127.0.0.1", 0),
        "data_dir": engine_dir / "data",
        "tokens": tokens,
        "max_request_bytes": 1 << 20,
        "wal_max_bytes": 4 << 20,
    }
    c = Collector(CollectorConfig(**(fields | overrides)), client=client)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def collector(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> Iterator[Collector]:
    with running(client, engine_dir, options, tokens, tmp_path / "wal") as c:
        yield c


@pytest.fixture(scope="module")
def module_collector(client: Any, engine_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """`collector`, once for a module whose tests only read what it was given (a test that tries to
    write checks that nothing changed) or count only what they add themselves: its set-up, a schema
    and a collector, took about 1.5 s of each test's 2."""
    work = tmp_path_factory.mktemp("collector")
    with own_database(client) as o, running(client, engine_dir, o, tokens_in(work), work / "wal") as c:
        yield c


class ListLog:
    """A stand-in for the write-ahead log that keeps each appended record in `records` (whole,
    when it came in parts)."""

    segment_bytes = 8 << 20
    copies_per_segment = 8 << 20

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.copies: list[int] = []

    def append(self, record: bytes | Sequence[bytes], copies: int = 0) -> None:
        self.copies.append(copies)
        self.records.append(record if isinstance(record, bytes) else b"".join(record))


@pytest.fixture
def receiver_port() -> Iterator[tuple[int, ListLog, TraceReceiver]]:
    """An OTLP/HTTP port with the default limits, its log a list; any token writes for st-marys."""
    log = ListLog()
    receiver = TraceReceiver(cast(WriteAheadLog, log), Limits())
    server = OtlpHttpServer("127.0.0.1", 0, receiver, lambda token: Grant("st-marys", "write") if token else None)
    server.start()
    try:
        yield server.port, log, receiver
    finally:
        server.stop()
