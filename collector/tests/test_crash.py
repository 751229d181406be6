"""kill -9 during sustained ingest, three times: every acknowledged span is stored exactly once.

The collector runs as `clinotel serve` in its own process (chDB allows one engine per process);
the store is read afterwards by a separate process too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.net import free_port

pytestmark = pytest.mark.slow

SPANS_PER_REQUEST = 50


def _start(data: Path, wal: Path, port: int, http: int | None = None, *more: str) -> subprocess.Popen[bytes]:
    """`clinotel serve` on `data` and `wal`, OTLP/HTTP on `port`, its read port on `http` (or a free
    one), with `more` options."""
    http = http or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(data), "--wal-dir", str(wal),
         "--otlp-http", f"127.0.0.1:{port}", "--otlp-grpc", f"127.0.0.1:{free_port()}",
         "--http", f"127.0.0.1:{http}", "--insecure-no-auth", *more],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    return wait_serving(proc, http)


def wait_serving(proc: subprocess.Popen[bytes], http: int) -> subprocess.Popen[bytes]:
    """`proc` once its collector serves: its ports listen from the start, so wait for `/ping`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/ping", timeout=30) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not start serving")


def _close(proc: subprocess.Popen[bytes]) -> str:
    """What the process wrote to stderr; closes the pipe."""
    if proc.stderr is None:
        return ""
    with proc.stderr:
        return proc.stderr.read().decode(errors="replace")


def _request(batch: int) -> tuple[bytes, list[str]]:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "crash-test"
    ss = rs.scope_spans.add()
    ids = []
    now = time.time_ns()
    for _ in range(SPANS_PER_REQUEST):
        span = ss.spans.add()
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8)
        span.name = f"batch {batch}"
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now + 1000
        ids.append(span.span_id.hex())
    return request.SerializeToString(), ids


def _send(port: int, stop: threading.Event, acked: list[str], batch0: int) -> None:
    batch = batch0
    while not stop.is_set():
        body, ids = _request(batch)
        batch += 1
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=body, method="POST")
        req.add_header("Content-Type", "application/x-protobuf")
        try:
            with urllib.request.urlopen(req, timeout=5) as response:
                if response.status == 200:
                    acked.extend(ids)
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.01)  # the server is down or dying: nothing acknowledged


def _stored(data: Path) -> dict[str, int]:
    code = (
        "import json, sys, clickhouse_connect\n"
        f"c = clickhouse_connect.get_client(dsn='chdb://{data.resolve()}')\n"
        "rows = c.query('SELECT SpanId, count() FROM clinotel.otel_traces GROUP BY SpanId').result_rows\n"
        "print(json.dumps(dict(rows)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    counts: dict[str, int] = json.loads(out.stdout)
    return counts


def test_kill_9_during_ingest_loses_and_duplicates_nothing_acknowledged(tmp_path: Path) -> None:
    data, wal = tmp_path / "data", tmp_path / "wal"
    port = free_port()
    acked: list[str] = []
    for round_ in range(3):
        # the second round syncs its parts (serve --fsync-parts): a store switched on and off again
        synced = round_ == 1
        proc = _start(data, wal, port, None, *(["--fsync-parts"] if synced else []))
        stop = threading.Event()
        sender = threading.Thread(target=_send, args=(port, stop, acked, round_ * 100_000))
        sender.start()
        time.sleep(1.0 + 0.3 * round_)  # sustained ingest, then a crash at a different moment
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        said = _close(proc)
        assert ("every inserted part synced to disk" in said) == synced, said
        stop.set()
        sender.join(timeout=10)
    assert len(acked) >= 3 * SPANS_PER_REQUEST, "the test acknowledged too little to mean anything"

    # after the last crash: restart (replays the log), accept new writes, stop cleanly
    proc = _start(data, wal, port)
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(port, stop, acked, 900_000))
    sender.start()
    time.sleep(0.5)
    stop.set()
    sender.join(timeout=10)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    errors = _close(proc)
    assert code == 0, errors

    stored = _stored(data)
    missing = [s for s in acked if s not in stored]
    duplicated = {s: n for s, n in stored.items() if n > 1}
    assert missing == [], f"{len(missing)} acknowledged spans lost"
    assert duplicated == {}, f"{len(duplicated)} spans stored more than once"


def test_a_burst_of_sigterm_and_sigint_stops_serve_cleanly(tmp_path: Path) -> None:
    """Two Ctrl-C, or a supervisor's SIGTERM and an operator's: the handler only records the signal.
    It called `Event.set`, whose lock the main thread may hold; a second signal inside the first
    handler's `set` blocked `serve` on its own lock for good (seen with `timeout` and `pkill`)."""
    for round_ in range(3):
        proc = _start(tmp_path / f"data{round_}", tmp_path / f"wal{round_}", free_port())
        for n in range(300):
            proc.send_signal(signal.SIGTERM if n % 2 else signal.SIGINT)
        assert proc.wait(timeout=60) == 0, _close(proc)
        _close(proc)
