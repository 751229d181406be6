"""`serve --clickhouse-url`: the collector writing to a ClickHouse server. No server runs here, so
the collector is handed the embedded engine as its client while configured for a server: what is
tested is everything the collector itself does in that mode (segments sent as the INSERT's body
with the .proto in its settings, nothing read through its own port). The HTTP request carrying
the body is clickhouse-connect's."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector import schema
from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import StoreError
from clinotel.collector.tokens import Tokens
from tests.collector.fixtures import OPERATOR_TOKEN
from tests.collector.otlp_clients import exchange, send_workflows


@pytest.fixture
def server_mode(client: Any, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path) -> Iterator[Collector]:
    config = CollectorConfig(
        clickhouse_url="http://clickhouse.invalid:8123",
        database=options.database,
        wal_dir=tmp_path / "wal",
        otlp_http=("127.0.0.1", 0),
        otlp_grpc=None,
        http=("127.0.0.1", 0),
        tokens=tokens,
    )
    c = Collector(config, client=client)
    c.start()
    yield c
    c.stop()


def test_server_mode_sends_segments_as_the_insert_body(
    server_mode: Collector, client: Any, options: schema.SchemaOptions
) -> None:
    assert server_mode.writer is not None
    assert server_mode.writer.transport == "body"
    assert server_mode.http is not None
    send_workflows(f"http://127.0.0.1:{server_mode.http.port}", "http/protobuf", 20)
    server_mode.writer.drain()
    table = options.name(schema.TRACES)
    assert client.query(f"SELECT count() FROM {table}").result_rows[0][0] == 20 * 8
    tenants = client.query(f"SELECT DISTINCT ResourceAttributes['clinical.tenant.id'] FROM {table}").result_rows
    assert tenants == [("st-marys",)]


def test_server_mode_reads_go_to_the_server(server_mode: Collector) -> None:
    assert server_mode.admin is not None
    base = f"http://127.0.0.1:{server_mode.admin.port}"
    assert exchange(urllib.request.Request(f"{base}/ping"))[2] == b"Ok.\n"
    assert b"clinotel_receiver_spans_accepted_total" in exchange(urllib.request.Request(f"{base}/metrics"))[2]
    query = urllib.request.Request(base, data=b"SELECT 1", headers={"X-ClickHouse-Key": OPERATOR_TOKEN})
    status, _, body = exchange(query)
    assert status >= 400
    assert b"query that server" in body


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    config = CollectorConfig(
        clickhouse_url="http://127.0.0.1:9", wal_dir=tmp_path / "wal", otlp_http=("127.0.0.1", 0), insecure_no_auth=True
    )
    with pytest.raises(StoreError, match=r"cannot open http://127\.0\.0\.1:9"):
        Collector(config).start()
