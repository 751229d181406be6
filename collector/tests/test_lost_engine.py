"""An embedded engine lost to a fatal error of its own may leave a query in flight waiting forever
on the thread that crashed (seen in CI: the writer hung in its insert, the metrics behind it, and
the collector never exited). The watch learns of the failure from a probe of its own (or from a
probe that never comes back), and a collector whose engine is lost stops without waiting on any
thread that may be in the engine; one told to stop before anything learnt it still learns it
while stopping, and says so (`clinotel serve` then exits after a grace period).

The real crash (a SIGSEGV to one of the engine's threads, in a `clinotel serve` process) is in
test_side_by_side.py; here the engine's answer after it is ClickHouse's own error, and the hung
query an insert held until the test lets it go."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from clinotel.collector import writer as writer_module
from clinotel.collector.log.wal import Segment
from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import schema
from clinotel.collector.store.segments import engine_failed
from clinotel.collector.store.watch import EngineWatch
from clinotel.collector.tokens import Tokens
from collector.tests.otlp_clients import plain_request, post

FATAL = DatabaseError("Code: 236. DB::Exception: The server is shutting down due to a fatal error. (ABORTED)", code=236)
FULL = DatabaseError("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)", code=241)


class _Engine:
    """Answers the watch's probes as scripted: nothing, then each error in turn; with `hang`, the
    probe after the script never comes back (until `release`); with `fails`, FATAL once it is set."""

    def __init__(self, *answers: Exception | None, hang: bool = False, fails: threading.Event | None = None) -> None:
        self.answers = list(answers)
        self.asked = 0
        self.hang = hang
        self.fails = fails
        self.released = threading.Event()

    def command(self, sql: str) -> None:
        assert sql == "SELECT 1"
        self.asked += 1
        if self.fails is not None and self.fails.is_set():
            raise FATAL
        if not self.answers and self.hang:
            self.released.wait(60)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_the_watch_reports_the_first_answer_that_says_the_engine_is_lost_and_stops_probing() -> None:
    engine = _Engine(None, FULL, None, FATAL, FATAL)
    lost: list[Exception] = []
    stalled: list[float] = []
    deaths: list[str] = []
    watch = EngineWatch(engine, engine_failed, lost.append, stalled.append, interval_s=0.01)
    watch.start(on_failure=deaths.append)
    try:
        _until(lambda: lost)
        time.sleep(0.1)
    finally:
        watch.stop()
    assert lost == [FATAL], "an engine at its memory cap is not lost; one that failed is, once"
    assert engine.asked == 4, "no probe after the engine is lost"
    assert stalled == []
    assert deaths == []


def test_a_pause_of_the_process_is_not_a_probe_that_hangs() -> None:
    """A process stopped (SIGSTOP, `docker pause`) with a probe in flight sees its clock jump by the
    pause: that is not the engine hanging. Before, the first tick after a pause past `stall_s`
    reported a healthy engine as lost."""
    jump = [0.0]
    engine = _Engine(None, hang=True)
    stalled: list[float] = []
    watch = EngineWatch(
        engine, engine_failed, lambda e: None, stalled.append, interval_s=0.01, stall_s=2.0,
        clock=lambda: time.monotonic() + jump[0],
    )  # fmt: skip
    watch.start(on_failure=lambda reason: None)
    try:
        _until(lambda: watch.stalled_for() > 0)
        jump[0] = 600.0  # ten minutes stopped
        time.sleep(1.0)  # about two ticks after it
        assert stalled == [], "reported on the pause"
        _until(lambda: stalled, timeout=10)  # still in flight two seconds after: that is a hang
    finally:
        engine.released.set()
        watch.stop()
    assert 2.0 <= stalled[0] < 10


def test_the_watch_reports_a_probe_that_does_not_come_back() -> None:
    """An engine whose new queries hang as well never answers with an error: the probe's wait is."""
    engine = _Engine(None, None, hang=True)
    lost: list[Exception] = []
    stalled: list[float] = []
    watch = EngineWatch(engine, engine_failed, lost.append, stalled.append, interval_s=0.01, stall_s=0.5)
    watch.start(on_failure=lambda reason: None)
    try:
        _until(lambda: stalled)
        assert watch.running, "the probe is still in flight"
    finally:
        engine.released.set()
        watch.stop()
    assert len(stalled) == 1
    assert stalled[0] >= 0.5
    assert lost == []
    assert not watch.running


class _HungInsert:
    """The writer's store, whose next insert never returns until `release`: a query that waits on an
    engine thread that crashed."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.entered = threading.Event()
        self.released = threading.Event()

    def insert(self, segment: Segment) -> None:
        self.entered.set()
        self.released.wait(120)
        raise FATAL

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def told(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> Iterator[tuple[Collector, list[str]]]:
    """A collector on the tests' engine, and what its `on_store_lost` heard."""
    heard: list[str] = []
    config = CollectorConfig(
        database=options.database, wal_dir=tmp_path / "wal", otlp_http=("127.0.0.1", 0), otlp_grpc=None,
        http=("127.0.0.1", 0), data_dir=engine_dir / "data", tokens=tokens, max_request_bytes=1 << 20,
        wal_max_bytes=4 << 20,
    )  # fmt: skip
    c = Collector(config, client=client, on_store_lost=lambda: heard.append("lost"))
    c.start()
    yield c, heard
    c.stop()


def test_a_collector_told_to_stop_while_an_insert_hangs_learns_the_engine_failed_while_stopping(
    told: tuple[Collector, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM before anything learnt of the failure: the stop waited for the writer, then its
    drain waited forever for the insert the writer held, with the watch already stopped (found by
    a review, a real crash 0.05 s before SIGTERM: still running after 100 s). Now the watch runs
    until the end of the stop and its failure is heard (the hard exit's cue), the drain waits for
    no insert past its deadline, and the acknowledged segment stays in the log."""
    collector, heard = told
    assert collector.writer is not None
    assert collector.http is not None
    assert collector.wal is not None
    monkeypatch.setattr(writer_module, "STOP_WAIT_S", 1.0)
    monkeypatch.setattr(writer_module, "DRAIN_DEADLINE_S", 2.0)
    hung = _HungInsert(collector.writer.store)
    collector.writer.store = hung
    writer_stops = threading.Event()  # the engine fails once the stop reaches the writer
    stop_writer = collector.writer.stop

    def stop(drain: bool = True, wait: bool = True) -> None:
        writer_stops.set()
        stop_writer(drain, wait)

    collector.writer.stop = stop  # type: ignore[method-assign]
    engine = _Engine(fails=writer_stops)
    collector.watch = EngineWatch(engine, engine_failed, collector._store_error, collector._engine_stalled, 0.05)
    stopping = threading.Thread(target=collector.stop)
    try:
        assert post(f"http://127.0.0.1:{collector.http.port}/v1/traces", plain_request(5))[0] == 200
        collector.wal.flush()
        assert hung.entered.wait(30), "the writer took the segment"
        collector.watch.start(on_failure=collector.fail)
        stopping.start()
        stopping.join(timeout=60)
        assert not stopping.is_alive(), "the stop waited on the hung insert"
    finally:
        hung.released.set()
        stopping.join(timeout=30)
    assert heard == ["lost"], "the failure learnt while stopping is heard, once"
    assert collector.failure is not None
    assert "fatal error" in collector.failure
    assert collector.wal.sealed_count >= 1, "the acknowledged segment stays in the log for the next start"


def test_a_collector_whose_engine_is_lost_stops_without_waiting_for_the_insert_it_holds(
    collector: Collector,
) -> None:
    assert collector.writer is not None
    assert collector.http is not None
    assert collector.reader is not None
    hung = _HungInsert(collector.writer.store)
    collector.writer.store = hung
    try:
        assert post(f"http://127.0.0.1:{collector.http.port}/v1/traces", plain_request(5))[0] == 200
        assert collector.wal is not None
        collector.wal.flush()
        assert hung.entered.wait(30), "the writer took the segment"
        collector._store_error(FATAL)  # what the watch hears from its probe
        assert collector.failure is not None
        assert "fatal error" in collector.failure
        assert collector.store_lost
        started = time.monotonic()
        collector.stop()
        took = time.monotonic() - started
        # before: the writer's thread was waited for (30 s), then the metrics written once more
        assert took < 10, f"stopping took {took:.1f} s: it waited on the hung insert"
        assert collector.wal.sealed_count >= 1, "the acknowledged segment stays in the log for the next start"
    finally:
        hung.released.set()
        collector.reader.close()


class _FailedEngine:
    """A client whose engine failed before the collector started: every statement gets FATAL."""

    def command(self, sql: str, *args: Any, **kwargs: Any) -> None:
        raise FATAL

    def query(self, sql: str, *args: Any, **kwargs: Any) -> None:
        raise FATAL


def test_a_collector_whose_engine_fails_while_it_starts_knows_it_is_lost(
    engine_dir: Path, tokens: Tokens, tmp_path: Path
) -> None:
    """The engine can fail during a start (a migration copying a table takes minutes): the start
    raised and the process then hung at exit in the engine's close. Now the collector knows its
    engine is lost, so `clinotel serve` and the demo exit at once (`start_or_exit`)."""
    config = CollectorConfig(
        database="lost", wal_dir=tmp_path / "wal", otlp_http=("127.0.0.1", 0), otlp_grpc=None,
        http=("127.0.0.1", 0), data_dir=engine_dir / "data", tokens=tokens,
    )  # fmt: skip
    collector = Collector(config, client=_FailedEngine())
    with pytest.raises(DatabaseError, match="fatal error"):
        collector.start()
    assert collector.store_lost
