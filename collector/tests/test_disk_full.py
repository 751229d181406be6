"""The log directory's disk fills up (a small tmpfs; needs root, as CI has): the collector refuses
what it cannot write (503, the client retries), stores exactly what it acknowledged, and
acknowledges again once space returns. Bounded: a 1 MiB disk, 60 requests. The store's disk fills
up while the log's has room: what was acknowledged waits in the log (no quarantine, which needs a
person) and is stored once space returns. Bounded: a 4 MiB disk, 10 requests."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import schema
from clinotel.collector.tokens import Tokens
from clinotel.collector.writer import MAX_REFUSALS
from clinotel.model.collector_metrics import WRITER_RETRIES
from collector.tests.fixtures import running
from collector.tests.otlp_clients import plain_request, post, variants
from collector.tests.test_crash import _close as close_serving
from collector.tests.test_crash import _start as start_serving
from collector.tests.test_crash import _stored as stored
from tests.net import free_port

SPANS = 20


@contextlib.contextmanager
def _tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `mount` for the duration."""
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with _tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


@pytest.fixture
def on_small_disk(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, small_disk: Path
) -> Iterator[Collector]:
    defaults = {"max_request_bytes": CollectorConfig.max_request_bytes, "wal_max_bytes": CollectorConfig.wal_max_bytes}
    with running(client, engine_dir, options, tokens, small_disk / "wal", otlp_grpc=None, http=None, **defaults) as c:
        yield c


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
    bodies = variants(plain_request(SPANS))
    acknowledged = refused = 0
    filler = _fill(small_disk)
    for body in itertools.islice(bodies, 20):
        status = post(url, body)[0]
        acknowledged += status == 200
        refused += status == 503
    assert refused > 0, "a full disk is refused, never acknowledged"
    filler.unlink()
    recovered = [post(url, body)[0] for body in itertools.islice(bodies, 40)]
    assert 200 in recovered, "acknowledges again once space returns"
    acknowledged += recovered.count(200)
    on_small_disk.writer.drain()
    db = on_small_disk.options.database
    stored = int(on_small_disk.client.command(f"SELECT count() FROM {db}.otel_traces WHERE ServiceName = 'ehr-bridge'"))
    assert stored == acknowledged * SPANS, f"{acknowledged} acknowledged, {refused} refused"


def _retries(http: int) -> int:
    """The collector's failed inserts so far, from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=30).read().decode()
    return int(float(next(line.split()[1] for line in text.splitlines() if line.startswith(WRITER_RETRIES.name))))


@pytest.mark.slow
def test_a_full_store_disk_keeps_what_was_acknowledged_in_the_log_and_stores_it_once_space_returns(
    tmp_path: Path,
) -> None:
    with _tmpfs(tmp_path / "store", "4m") as disk:
        port, http = free_port(), free_port()
        proc = start_serving(disk / "data", tmp_path / "wal", port, http)
        try:
            filler = _fill(disk)
            url = f"http://127.0.0.1:{port}/v1/traces"
            acknowledged = sum(post(url, plain_request(SPANS), token=None)[0] == 200 for _ in range(10))
            quarantined = tmp_path / "wal" / "quarantine"
            deadline = time.monotonic() + 60
            while _retries(http) <= MAX_REFUSALS and not any(quarantined.glob("*.wal")):
                assert time.monotonic() < deadline, "the writer never met the full disk"
                time.sleep(0.2)
            assert list(quarantined.glob("*.wal")) == [], "a full disk is no segment's fault: it waits in the log"
            filler.unlink()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=180) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            errors = close_serving(proc)
        assert acknowledged == 10, errors
        assert sum(stored(disk / "data").values()) == acknowledged * SPANS, errors
