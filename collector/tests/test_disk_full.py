"""The log directory's disk fills up (a small tmpfs; needs root, as CI has): the collector refuses
what it cannot write (503, the client retries), stores exactly what it acknowledged, and
acknowledges again once space returns. Bounded: a 1 MiB disk, 60 requests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import schema
from clinotel.collector.tokens import Tokens
from collector.tests.otlp_clients import plain_request, post

SPANS = 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def on_small_disk(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, small_disk: Path
) -> Iterator[Collector]:
    config = CollectorConfig(
        database=options.database,
        wal_dir=small_disk / "wal",
        otlp_http=("127.0.0.1", 0),
        otlp_grpc=None,
        http=None,
        data_dir=engine_dir / "data",
        tokens=tokens,
    )
    c = Collector(config, client=client)
    c.start()
    yield c
    c.stop()


def _fill(disk: Path) -> Path:
    """A file taking every free byte of `disk`."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_a_full_log_disk_refuses_stores_exactly_what_it_acknowledged_and_recovers(
    on_small_disk: Collector, small_disk: Path
) -> None:
    assert on_small_disk.http is not None
    assert on_small_disk.writer is not None
    url = f"http://127.0.0.1:{on_small_disk.http.port}/v1/traces"
    body = plain_request(SPANS)
    acknowledged = refused = 0
    filler = _fill(small_disk)
    for _ in range(20):
        status = post(url, body)[0]
        acknowledged += status == 200
        refused += status == 503
    assert refused > 0, "a full disk is refused, never acknowledged"
    filler.unlink()
    recovered = [post(url, body)[0] for _ in range(40)]
    assert 200 in recovered, "acknowledges again once space returns"
    acknowledged += recovered.count(200)
    on_small_disk.writer.drain()
    db = on_small_disk.options.database
    stored = int(on_small_disk.client.command(f"SELECT count() FROM {db}.otel_traces WHERE ServiceName = 'ehr-bridge'"))
    assert stored == acknowledged * SPANS, f"{acknowledged} acknowledged, {refused} refused"
