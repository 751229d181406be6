"""The embedded ClickHouse (chDB) as the real database: one engine per process (chDB's rule),
one database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from clinotel.collector import otlp_proto, schema


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def client(engine_dir: Path) -> Iterator[Any]:
    c = clickhouse_connect.get_client(dsn=f"chdb://{engine_dir / 'data'}")
    yield c
    c.close()


@pytest.fixture
def options(client: Any) -> Iterator[schema.SchemaOptions]:
    o = schema.SchemaOptions(database=f"t_{uuid.uuid4().hex[:12]}")
    schema.apply(client, o)
    yield o
    client.command(f"DROP DATABASE IF EXISTS {o.database}")


@pytest.fixture(scope="session")
def proto_file(engine_dir: Path) -> Path:
    path = engine_dir / "wal.proto"
    path.write_text(otlp_proto.proto_schema(), encoding="utf-8")
    return path
