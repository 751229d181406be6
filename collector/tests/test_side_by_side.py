"""Operating collectors as an operator does: two beside each other in one folder under load, one
restarted (killed, then stopped) while the other takes spans; wrong ports, a log or a store in use,
a store read while a collector holds it, a log deleted under a running collector. Every
collector runs as `clinotel serve` in its own process (chDB allows one engine per process)."""

from __future__ import annotations

import http.client
import json
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from clinotel.collector.cli import EXIT_FAILED
from collector.tests.test_crash import _close, _request, wait_serving
from tests.net import free_port

pytestmark = pytest.mark.slow


def _stored(data: Path) -> dict[str, int]:
    """SpanId -> copies stored, read in a process of its own."""
    code = (
        "import json, clickhouse_connect\n"
        f"c = clickhouse_connect.get_client(dsn='chdb://{data.resolve()}')\n"
        "rows = c.query('SELECT SpanId, count() FROM clinotel.otel_traces GROUP BY SpanId').result_rows\n"
        "print(json.dumps(dict(rows)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    counts: dict[str, int] = json.loads(out.stdout)
    return counts


def _send(port: int, stop: threading.Event, sent: list[str], acked: list[str], batch0: int) -> None:
    """Export batches until stopped; every span id sent, and those acknowledged (200)."""
    from collector.tests.otlp_clients import post

    batch = batch0
    while not stop.is_set():
        body, ids = _request(batch)
        batch += 1
        sent.extend(ids)
        try:
            if post(f"http://127.0.0.1:{port}/v1/traces", body, token=None)[0] == 200:
                acked.extend(ids)
        except (OSError, http.client.HTTPException):  # a dying collector may cut its answer off mid-body
            time.sleep(0.01)  # down or dying: nothing acknowledged


def _cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clinotel.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
        check=False,
    )  # fmt: skip


def _start_serve(data: Path, log: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """`clinotel serve` on `data` once it serves, its stderr to the file `log` (a busy collector cannot
    fill a file as it can a pipe nobody reads until it exits); (the process, its /ping port). A port
    found free that another test's process took before this one bound it is tried again with new
    ones (`free_port` can only say what is free now); any other failure names what serve said."""
    for attempt in range(3):
        http = free_port()
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(data),
                 "--otlp-http", f"127.0.0.1:{port or free_port()}", "--otlp-grpc", f"127.0.0.1:{free_port()}",
                 "--http", f"127.0.0.1:{http}", "--insecure-no-auth"],
                stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        try:
            return wait_serving(proc, http), http
        except AssertionError:
            _killed(proc)
            said = log.read_text(encoding="utf-8", errors="replace")
            if "already in use" in said and port is None and attempt < 2:
                continue
            raise AssertionError(f"serve exited: {said[-2000:]}") from None
        except BaseException:
            _killed(proc)
            raise
    raise AssertionError("unreachable")


def _killed(proc: subprocess.Popen[bytes]) -> None:
    """`proc` gone: killed if it still runs."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def _exit_code(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """`proc`'s exit code once it exits; a collector still running after `timeout` fails the test
    with its log's end and every thread's stack (`kill -USR1`), which say where it hangs."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2.0)
        raise AssertionError(f"still running {timeout:.0f} s on:\n{log.read_text()[-12000:]}") from None


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_two_collectors_beside_each_other_under_load_with_restarts_store_every_acknowledged_span_once_in_its_own_store(
    tmp_path: Path,
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    d1, d2 = share / "d1", share / "d2"
    port1, port2 = free_port(), free_port()

    started: list[subprocess.Popen[bytes]] = []
    logs: dict[int, Path] = {}

    def serve(data: Path, port: int) -> subprocess.Popen[bytes]:
        # no --wal-dir: each log's default place comes from its data directory
        log = tmp_path / f"serve-{len(started)}.log"
        proc, _ = _start_serve(data, log, port)
        started.append(proc)
        logs[proc.pid] = log
        return proc

    def stopped(proc: subprocess.Popen[bytes]) -> None:
        """`proc` (sent SIGTERM) exits 0 within 180 s, or the failure shows its log and where each
        of its threads was (SIGUSR1: the collector dumps its threads)."""
        try:
            code = proc.wait(timeout=180)  # a clean stop writes what the log holds: slow on a busy machine
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2.0)
            proc.kill()
            proc.wait(timeout=30)
            raise AssertionError(f"not stopped 180 s after SIGTERM:\n{logs[proc.pid].read_text()[-12000:]}") from None
        assert code == 0, logs[proc.pid].read_text()[-12000:]

    sent1: list[str] = []
    sent2: list[str] = []
    acked1: list[str] = []
    acked2: list[str] = []
    try:
        first, second = serve(d1, port1), serve(d2, port2)
        stop = threading.Event()
        senders = [
            threading.Thread(target=_send, args=(port1, stop, sent1, acked1, 0)),
            threading.Thread(target=_send, args=(port2, stop, sent2, acked2, 500_000)),
        ]
        for s in senders:
            s.start()
        try:
            time.sleep(1.0)
            second.send_signal(signal.SIGKILL)  # d2 crashes under load, while d1 keeps taking spans
            second.wait(timeout=30)
            second = serve(d2, port2)
            time.sleep(1.0)
            second.send_signal(signal.SIGTERM)  # and is restarted cleanly
            stopped(second)
            second = serve(d2, port2)
            time.sleep(1.0)
        finally:
            stop.set()
            for s in senders:
                s.join(timeout=30)
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
        for proc in (first, second):
            stopped(proc)
    finally:  # a failed assertion leaves no collector running
        for proc in started:
            _killed(proc)
    assert len(acked1) >= 20 * 50, "too little acknowledged to mean anything"
    assert len(acked2) >= 5 * 50, "too little acknowledged to mean anything"

    stored1, stored2 = _stored(d1), _stored(d2)
    for acked, sent, stored, name in ((acked1, sent1, stored1, "d1"), (acked2, sent2, stored2, "d2")):
        missing = [s for s in acked if s not in stored]
        assert missing == [], f"{len(missing)} spans acknowledged by {name} are not in its store"
        assert {s: n for s, n in stored.items() if n > 1} == {}, f"spans stored twice in {name}"
        strays = set(stored) - set(sent)  # a request cut off by the kill may be stored unacknowledged
        assert strays == set(), f"{len(strays)} spans sent to the other collector landed in {name}"
    assert sorted(p.name for p in share.iterdir()) == ["d1", "d1.wal", "d2", "d2.wal"], "one log per store"


@dataclass
class Running:
    data: Path
    wal: Path
    otlp_http: int
    otlp_grpc: int
    http: int


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One collector serving, as the obstacle the others run into."""
    base = tmp_path_factory.mktemp("running")
    r = Running(base / "data", base / "data.wal", free_port(), free_port(), free_port())
    proc = subprocess.Popen(
        [sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(r.data),
         "--otlp-http", f"127.0.0.1:{r.otlp_http}", "--otlp-grpc", f"127.0.0.1:{r.otlp_grpc}",
         "--http", f"127.0.0.1:{r.http}", "--insecure-no-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_serving(proc, r.http)
    yield r
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    errors = _close(proc)
    assert code == 0, errors


@pytest.mark.parametrize(
    ("flag", "label"),
    [("--otlp-http", "OTLP/HTTP"), ("--otlp-grpc", "OTLP/gRPC"), ("--http", "the ClickHouse HTTP interface (--http)")],
)
def test_a_port_in_use_is_one_line_and_exit_1_with_nothing_created(
    running: Running, tmp_path: Path, flag: str, label: str
) -> None:
    ports = {"--otlp-http": free_port(), "--otlp-grpc": free_port(), "--http": free_port()}
    ports[flag] = {"--otlp-http": running.otlp_http, "--otlp-grpc": running.otlp_grpc, "--http": running.http}[flag]
    args = [a for f, p in ports.items() for a in (f, f"127.0.0.1:{p}")]
    done = _cli("serve", "--data-dir", str(tmp_path / "data"), "--insecure-no-auth", *args)
    line = _one_line_error(done)  # not a traceback, not a segmentation fault (rc 139)
    assert line == (
        f"Error: cannot listen on 127.0.0.1:{ports[flag]} for {label}: the address is already in use "
        "(another collector or program listens there)"
    )
    assert list(tmp_path.iterdir()) == [], "no store, no log"


def test_a_second_collector_on_a_log_in_use_is_refused(running: Running, tmp_path: Path) -> None:
    done = _cli(
        "serve", "--data-dir", str(tmp_path / "d2"), "--wal-dir", str(running.wal), "--insecure-no-auth",
        "--otlp-http", f"127.0.0.1:{free_port()}", "--otlp-grpc", f"127.0.0.1:{free_port()}",
        "--http", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    line = _one_line_error(done)
    assert f"the write-ahead log {running.wal} is in use by another collector (pid " in line
    assert not (tmp_path / "d2").exists()


def test_a_store_held_by_a_running_collector_is_refused_and_readers_are_told_where_to_read(
    running: Running, tmp_path: Path
) -> None:
    done = _cli(
        "serve", "--data-dir", str(running.data), "--wal-dir", str(tmp_path / "wal"), "--insecure-no-auth",
        "--otlp-http", f"127.0.0.1:{free_port()}", "--otlp-grpc", f"127.0.0.1:{free_port()}",
        "--http", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert "is held by process" in _one_line_error(done)
    assert not (tmp_path / "wal").exists()
    for command in (["query", "SELECT 1"], ["report", "--out", str(tmp_path / "r.html")], ["dashboards", "check"]):
        line = _one_line_error(_cli(*command, "--data-dir", str(running.data)))
        assert line.endswith(f"read through the collector with --server http://127.0.0.1:{running.http}"), line
    # a command without --server is not told to use it (an operator's fault injection)
    line = _one_line_error(_cli("schema", "refresh-rollups", "--data-dir", str(running.data)))
    assert "is held by process" in line
    assert line.endswith("it refreshes the rollups itself (stop it to refresh them here)"), line
    assert list(tmp_path.iterdir()) == []


def test_a_process_past_the_holder_check_at_the_same_moment_is_refused_naming_the_holder(running: Running) -> None:
    """Two processes can both pass the check before either engine has started; the engine's own
    lock then refuses the later one, whose error named the engine's options, not the holder (an
    operator's review)."""
    code = (
        "from pathlib import Path\n"
        "from clinotel.collector.store import embedded\n"
        "from clinotel.model.store import StoreError\n"
        "real, calls = embedded.holder_pid, []\n"
        "def once(path):\n"
        "    calls.append(path)\n"
        "    return None if len(calls) == 1 else real(path)\n"
        "embedded.holder_pid = once\n"
        "try:\n"
        f"    embedded.connect(Path({str(running.data)!r}))\n"
        "except StoreError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"the store {running.data.resolve()} is held by process "), line
    assert "allows one process per data directory" in line
    assert "max_server_memory_usage" not in line


def test_alerts_evaluated_through_a_read_only_port_refuse_to_page_without_their_state(running: Running) -> None:
    done = _cli(
        "alerts", "evaluate", "--server", f"http://127.0.0.1:{running.http}", "--once", "--webhook",
        f"http://127.0.0.1:{free_port()}/hook",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot keep the alert state" in done.stderr
    assert "clinotel serve --rules" in done.stderr
    # its insert (lz4 rows) is refused saying the port is read-only (a new user's review)
    assert "read port is read-only: an insert's rows are not read" in done.stderr


def test_alerts_evaluated_on_a_store_a_collector_holds_are_told_to_run_in_the_collector(
    running: Running, tmp_path: Path
) -> None:
    """Not the other readers' advice (`--server`, whose port is read-only: a new user's review)."""
    line = _one_line_error(
        _cli("alerts", "evaluate", "--data-dir", str(running.data), "--once", "--webhook", "http://127.0.0.1:9/h")
    )
    assert "is held by process" in line
    assert "clinotel serve --rules" in line
    assert "--server" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_collector_whose_log_is_deleted_exits_75_saying_why(tmp_path: Path) -> None:
    import shutil

    from collector.tests.otlp_clients import post

    port, http = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(tmp_path / "data"),
         "--otlp-http", f"127.0.0.1:{port}", "--otlp-grpc", f"127.0.0.1:{free_port()}",
         "--http", f"127.0.0.1:{http}", "--insecure-no-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_serving(proc, http)
    url = f"http://127.0.0.1:{port}/v1/traces"
    body, _ = _request(0)
    assert post(url, body, token=None)[0] == 200
    shutil.rmtree(tmp_path / "data.wal")
    try:
        status = post(url, _request(1)[0], token=None)[0]
    except OSError:
        status = 0  # already gone
    assert status in (503, 0), "never a 200 into a deleted log"
    code = proc.wait(timeout=60)
    errors = _close(proc)
    assert code == EXIT_FAILED, errors
    assert "Traceback" not in errors, errors
    stopping = [line for line in errors.splitlines() if line.startswith("clinotel serve: stopping: ")]
    assert len(stopping) == 1, errors
    assert "clinotel-writer stopped" in stopping[0]
    assert "moved or deleted" in stopping[0]


def test_sigusr1_dumps_every_thread_and_the_collector_keeps_serving(tmp_path: Path) -> None:
    """Dumps asked for again and again while the collector is under load: each one whole, and the
    collector stores on. `faulthandler.register` dumped from whichever thread the kernel picked,
    often the engine's, while the others ran: under load it crashed there within a few signals,
    and the engine refused every insert after it."""
    log = tmp_path / "serve.log"
    data, port = tmp_path / "data", free_port()
    proc, http = _start_serve(data, log, port)
    sent: list[str] = []
    acked: list[str] = []
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(port, stop, sent, acked, 0))
    dumps = 10
    try:
        sender.start()
        time.sleep(0.5)
        for _ in range(dumps):
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while log.read_text().count("Current thread") < dumps and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        sender.join(timeout=30)
        dump = log.read_text()
        assert dump.count("Current thread") == dumps, dump[-6000:]
        assert "clinotel" in dump
        assert dump.count("Thread 0x") >= 3 * dumps, "the writer's, the servers' and the main thread"
        assert "fatal error" not in dump, dump[-6000:]
        wait_serving(proc, http)  # still answering
        proc.send_signal(signal.SIGTERM)
        assert _exit_code(proc, log, 120) == 0, log.read_text()[-6000:]
    finally:
        stop.set()
        _killed(proc)
    stored = _stored(data)
    assert len(acked) >= 50, "too little acknowledged to mean anything"
    assert [s for s in acked if s not in stored] == [], "every acknowledged span stored"


_SYS_TGKILL: Final = 234  # on x86_64 Linux
needs_tgkill = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.machine() != "x86_64",
    reason="tgkill (syscall 234 on x86_64 Linux): a signal to one thread of another process",
)


def _tgkill(pid: int, tid: int, signum: int) -> int:
    """`signum` to thread `tid` of process `pid`: 0, or the errno (ESRCH: the thread ended)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return 0 if libc.syscall(_SYS_TGKILL, pid, tid, signum) == 0 else ctypes.get_errno()


@needs_tgkill
def test_sigterm_stops_the_collector_whichever_of_its_threads_receives_it(tmp_path: Path) -> None:
    """The kernel hands a process's SIGTERM to any thread that does not block it, the engine's too;
    the collector waited on an event with no timeout, so when another thread got it the handler
    never ran and the collector never stopped (seen in CI: not stopped 180 s after SIGTERM)."""
    import os

    log = tmp_path / "serve.log"
    proc, _ = _start_serve(tmp_path / "data", log)
    try:
        sigterm = 1 << (signal.SIGTERM - 1)
        others = []
        for t in os.listdir(f"/proc/{proc.pid}/task"):
            try:
                status = Path(f"/proc/{proc.pid}/task/{t}/status").read_text()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            if int(t) != proc.pid and not int(status.split("SigBlk:")[1].split()[0], 16) & sigterm:
                others.append(int(t))
        assert others, "threads other than the main one that take SIGTERM"
        # a thread may end before its signal: the next one takes it (ESRCH)
        errors = []
        for t in others:
            errors.append(_tgkill(proc.pid, t, signal.SIGTERM))
            if errors[-1] == 0:
                break
        assert errors[-1] == 0, errors
        assert _exit_code(proc, log, 120) == 0, log.read_text()
        assert "stopping: writing what the log holds" in log.read_text()
    finally:
        _killed(proc)


def _engine_thread(pid: int) -> int:
    """A thread of the embedded engine's in process `pid` (its background schedule pool)."""
    import os

    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == "BgSchPool":
                return int(t)
        except FileNotFoundError:
            continue
    raise AssertionError("no thread of the engine's found")


@needs_tgkill
def test_an_engine_that_crashes_stops_the_collector_and_its_restart_stores_every_acknowledged_span(
    tmp_path: Path,
) -> None:
    """A crash in one of the embedded engine's threads (here a SIGSEGV sent to it) leaves the engine
    refusing every query for the rest of the process. The collector acknowledged on and set every
    later segment aside as refused, and then hung at exit (seen after `kill -USR1` on a loaded
    collector, when the dump crashed). Now it stops acknowledging, exits 1 saying why with nothing
    set aside, and its next start stores every span it acknowledged, once."""
    data, port = tmp_path / "data", free_port()
    proc, _ = _start_serve(data, tmp_path / "serve.log", port)
    sent: list[str] = []
    acked: list[str] = []
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(port, stop, sent, acked, 0))
    try:
        sender.start()
        time.sleep(1.0)
        assert _tgkill(proc.pid, _engine_thread(proc.pid), signal.SIGSEGV) == 0
        code = _exit_code(proc, tmp_path / "serve.log", 120)
    finally:
        stop.set()
        sender.join(timeout=30)
        _killed(proc)
    log = (tmp_path / "serve.log").read_text()
    assert code == EXIT_FAILED, log[-6000:]
    assert "the embedded engine stopped after a fatal error" in log, log[-6000:]
    assert "exiting without closing it" in log
    quarantine = tmp_path / "data.wal" / "quarantine"
    assert not quarantine.exists() or list(quarantine.iterdir()) == [], "nothing is the segments' fault"
    assert len(acked) >= 50, "too little acknowledged to mean anything"

    proc, _ = _start_serve(data, tmp_path / "restart.log", port)
    try:
        proc.send_signal(signal.SIGTERM)  # a clean stop writes what the log holds
        assert _exit_code(proc, tmp_path / "restart.log", 180) == 0, (tmp_path / "restart.log").read_text()[-6000:]
    finally:
        _killed(proc)
    stored = _stored(data)
    missing = [s for s in acked if s not in stored]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged spans are not stored"
    assert {s: n for s, n in stored.items() if n > 1} == {}, "spans stored twice"


@needs_tgkill
@pytest.mark.parametrize("then", ["nothing", "sigterm"])
def test_an_idle_collector_whose_engine_crashes_exits_75_by_itself_or_on_sigterm(tmp_path: Path, then: str) -> None:
    """With nothing to insert the writer never meets the failed engine: the collector kept saying it
    was up, and a SIGTERM then hung it at exit, in the engine's close waiting for the thread that
    crashed. Its own metrics, written every 10 s and once more on stop, meet the failure too: the
    collector stops acknowledging and exits 1, whether or not it was told to stop first."""
    data = tmp_path / "data"
    proc, _ = _start_serve(data, tmp_path / "serve.log")
    try:
        assert _tgkill(proc.pid, _engine_thread(proc.pid), signal.SIGSEGV) == 0
        if then == "sigterm":
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
        code = _exit_code(proc, tmp_path / "serve.log", 60)
    finally:
        _killed(proc)
    log = (tmp_path / "serve.log").read_text()
    assert code == EXIT_FAILED, log[-6000:]
    assert "the embedded engine stopped after a fatal error" in log, log[-6000:]
    assert "exiting without closing it" in log, log[-6000:]
