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

from clinotel.collector.log.wal import WriteAheadLog, owner_of
from clinotel.collector.receiver.export import Limits, TraceReceiver
from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import StoreError
from clinotel.collector.store.segments import ServerSegments
from clinotel.collector.tokens import Tokens
from clinotel.collector.writer import SegmentWriter
from collector.tests.fixtures import OPERATOR_TOKEN
from collector.tests.otlp_clients import exchange, plain_request, send_workflows


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
    assert isinstance(server_mode.writer.store, ServerSegments)
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
    scrape = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert b"clinotel_receiver_spans_accepted_total" in exchange(scrape)[2]
    query = urllib.request.Request(base, data=b"SELECT 1", headers={"X-ClickHouse-Key": OPERATOR_TOKEN})
    status, _, body = exchange(query)
    assert status >= 400
    assert b"query that server" in body


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    config = CollectorConfig(
        clickhouse_url="http://127.0.0.1:9",
        wal_dir=tmp_path / "wal",
        otlp_http=("127.0.0.1", 0),
        otlp_grpc=("127.0.0.1", 0),
        http=("127.0.0.1", 0),
        insecure_no_auth=True,
    )
    with pytest.raises(StoreError, match=r"^cannot reach http://127\.0\.0\.1:9: connection refused$"):
        Collector(config).start()
    # no log was claimed for the URL that could not be reached: the corrected one may use it (a new
    # user's review: a typo fixed, or a host name for the address, was refused as another store's)
    assert owner_of(tmp_path / "wal") is None
    WriteAheadLog(tmp_path / "wal", owner="http://localhost:9#clinotel").release()


class _OlderServer:
    """The embedded engine answering as a ClickHouse server that predates `format_schema_source`
    (the one fact a test cannot get from chDB); everything else goes to the engine."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def command(self, cmd: str, *args: Any, **kwargs: Any) -> Any:
        if "format_schema_source" in cmd:
            return 0
        return self.client.command(cmd, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_server_without_inline_schemas_needs_the_proto_file(client: Any, options: schema.SchemaOptions) -> None:
    pipeline = ingest.install(client, options)
    assert ingest.server_schema(client, pipeline) is None, "a server that knows format_schema_source: inline"
    with pytest.raises(ingest.IngestSetupError, match=r"clinotel schema proto --out DIR") as info:
        ingest.server_schema(_OlderServer(client), pipeline)
    assert pipeline.proto_name in str(info.value)


def test_segment_bodies_with_the_proto_as_a_file(client: Any, options: schema.SchemaOptions, tmp_path: Path) -> None:
    """What an older server gets: the segment as the INSERT body, the .proto named, not sent."""
    pipeline = ingest.install(client, options)
    wal = WriteAheadLog(tmp_path / "wal", segment_bytes=1 << 20, max_age_s=0.05)
    proto = str(pipeline.write_proto(tmp_path / "format_schemas"))
    writer = SegmentWriter(wal, ServerSegments(client, pipeline, proto))
    receiver = TraceReceiver(wal, Limits(1 << 20))
    receiver.export(plain_request(5), content_type="application/x-protobuf", tenant="st-marys")
    wal.flush()
    assert writer.drain() == 1
    assert client.query(f"SELECT count() FROM {options.name(schema.TRACES)}").result_rows[0][0] == 5
