"""One log per store, locked; a collector that can no longer store what it receives stops
acknowledging at once (503, /ping not OK, collector_up 0) and says why."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest

from clinotel.collector.log.record import frame
from clinotel.collector.log.wal import LogInUseError, LogOwnedError, WriteAheadLog, owner_of
from clinotel.collector.service import Collector, CollectorConfig, ConfigError
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import STORE_RECORD, recorded_log, store_id
from clinotel.collector.tokens import Tokens
from collector.tests.fixtures import OPERATOR_TOKEN, WRITE_TOKEN
from collector.tests.otlp_clients import exchange, plain_request, post


def _config(engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, **changes: Any) -> CollectorConfig:
    base: dict[str, Any] = {
        "database": options.database,
        "data_dir": engine_dir / "data",
        "otlp_http": ("127.0.0.1", 0),
        "otlp_grpc": ("127.0.0.1", 0),
        "http": ("127.0.0.1", 0),
        "tokens": tokens,
        "metrics_interval_s": None,
    }
    return CollectorConfig(**{**base, **changes})


def _traces(c: Collector) -> str:
    assert c.http is not None
    return f"http://127.0.0.1:{c.http.port}/v1/traces"


def _metrics(port: int) -> str:
    scrape = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    return exchange(scrape)[2].decode()


def _wait(condition: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_collector_whose_log_is_deleted_stops_acknowledging_and_says_why(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    heard: list[str] = []
    config = _config(engine_dir, options, tokens, wal_dir=tmp_path / "wal")
    c = Collector(config, client=client, on_failure=heard.append)
    c.start()
    try:
        assert post(_traces(c), plain_request())[0] == 200
        assert c.admin is not None
        ping = f"http://127.0.0.1:{c.admin.port}/ping"
        assert exchange(urllib.request.Request(ping))[0] == 200

        shutil.rmtree(tmp_path / "wal")  # the log's directory taken away under the running collector

        status, headers, _ = post(_traces(c), plain_request())
        assert status == 503, "never acknowledged into a file the log no longer owns"
        assert headers.get("Retry-After") == "5"
        assert _wait(c.failed.is_set), "the writer noticed and the collector failed"
        assert len(heard) == 1
        assert "moved or deleted" in heard[0]
        assert post(_traces(c), plain_request())[0] == 503
        status, _, body = exchange(urllib.request.Request(ping))
        assert status == 503
        assert body.startswith(b"Not OK: ")
        metrics = _metrics(c.admin.port)
        assert "clinotel_collector_up 0" in metrics
        assert c.grpc is not None
        with grpc.insecure_channel(f"127.0.0.1:{c.grpc.port}") as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            body, auth = plain_request(), [("authorization", f"Bearer {WRITE_TOKEN}")]
            with pytest.raises(grpc.RpcError) as refused:
                export(body, metadata=auth)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        c.stop()


def test_a_healthy_collector_says_so(collector: Collector) -> None:
    assert collector.admin is not None
    metrics = _metrics(collector.admin.port)
    assert "clinotel_collector_up 1" in metrics
    assert "clinotel_store_parts_synced 0" in metrics, "an embedded store without --fsync-parts says so"
    assert collector.health() is None


def test_the_default_log_is_named_after_the_store_so_two_stores_never_share_one(tmp_path: Path) -> None:
    share = tmp_path / "share"
    d1 = CollectorConfig(data_dir=share / "d1", insecure_no_auth=True)
    d2 = CollectorConfig(data_dir=share / "d2", insecure_no_auth=True)
    assert d1.resolved_wal_dir == (share / "d1.wal").resolve()
    assert d2.resolved_wal_dir == (share / "d2.wal").resolve()
    other_db = CollectorConfig(data_dir=share / "d1", database="other", insecure_no_auth=True)
    assert other_db.resolved_wal_dir == (share / "d1.other.wal").resolve()
    server = CollectorConfig(clickhouse_url="http://ch.internal:8123", insecure_no_auth=True)
    assert server.resolved_wal_dir.name == "ch.internal-8123.wal"


def test_the_store_records_its_log_and_the_log_its_store(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    first = tmp_path / "first.wal"
    c = Collector(_config(engine_dir, options, tokens, wal_dir=first), client=client)
    c.start()
    c.stop()
    store = store_id(engine_dir / "data", None, options.database)
    assert owner_of(first) == store
    assert recorded_log(engine_dir / "data", options.database) == first.resolve()
    assert (engine_dir / "data" / STORE_RECORD).is_file()

    # acknowledged segments wait in the recorded log (a crash): starting on another log is refused
    left = WriteAheadLog(first, owner=store)
    left.append(frame(b"acknowledged, not yet stored"))
    left.close()
    left.release()
    second = Collector(_config(engine_dir, options, tokens, wal_dir=tmp_path / "second.wal"), client=client)
    with pytest.raises(ConfigError, match=rf"records its log at {first.resolve()}, which holds 1 segment"):
        second.start()
    assert not (tmp_path / "second.wal").exists(), "nothing created"

    # and a log that belongs to another store is never used for this one
    foreign = tmp_path / "foreign.wal"
    WriteAheadLog(foreign, owner="chdb:///elsewhere#clinotel").release()
    third = Collector(
        _config(engine_dir, options, tokens, wal_dir=foreign, data_dir=tmp_path / "d3", http=None), client=client
    )
    with pytest.raises(LogOwnedError, match="belongs to the store chdb:///elsewhere#clinotel"):
        third.start()


def test_a_log_in_use_is_refused_before_anything_is_created(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    c = Collector(_config(engine_dir, options, tokens, wal_dir=tmp_path / "wal"), client=client)
    c.start()
    try:
        other = Collector(
            _config(engine_dir, options, tokens, wal_dir=tmp_path / "wal", data_dir=tmp_path / "d2", http=None),
            client=client,
        )
        with pytest.raises(LogInUseError, match=r"in use by another collector \(pid \d+"):
            other.start()
        assert not (tmp_path / "d2").exists()
        assert post(_traces(c), plain_request())[0] == 200, "the first one is unaffected"
    finally:
        c.stop()


def test_segments_left_in_the_unowned_log_of_earlier_versions_are_not_orphaned(
    client: Any, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    legacy = tmp_path / "wal"  # where every store's log went by default before
    old = WriteAheadLog(legacy)
    old.append(frame(b"acknowledged by an earlier version"))
    old.close()
    old.release()
    config = CollectorConfig(
        database=options.database, data_dir=tmp_path / "data", otlp_http=("127.0.0.1", 0), otlp_grpc=None,
        http=None, tokens=tokens, metrics_interval_s=None,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=rf"{legacy} holds 1 segment\(s\) not yet stored.*--wal-dir {legacy}"):
        Collector(config, client=client).start()
    assert not (tmp_path / "data.wal").exists()
