"""The writer against the `SegmentStore` contract, with a store that fails on demand: no engine,
no network. An unreachable store is retried for as long as it lasts; a refusal a few times, then
the segment is set aside with its reason; segments go in order, each stored once; a drain gives
up at its deadline and leaves the rest in the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinotel.collector import writer as writer_module
from clinotel.collector.log.record import frame
from clinotel.collector.log.wal import Segment, WriteAheadLog, read_records
from clinotel.collector.writer import MAX_REFUSALS, SegmentWriter, StoreLostError


class RefusedError(Exception):
    """ClickHouse ran the insert and said no."""


class UnreachableError(Exception):
    """ClickHouse could not be reached."""


class EngineFullError(Exception):
    """ClickHouse ran the insert, but the engine as a whole was at its memory cap."""


class EngineLostError(Exception):
    """The embedded engine stopped after a fatal error: it refuses everything from then on."""


class FakeStore:
    """A SegmentStore that stores records in memory and fails as scripted, segment by segment."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.records: list[bytes] = []
        self.tokens: list[str] = []
        self.failures: list[Exception] = []
        self.attempts = 0
        self.reliefs: list[str] = []
        self.refuse_containing: bytes | None = None
        """Refuse every segment with this in it (a request the engine cannot take), every time."""

    def insert(self, segment: Segment) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.refuse_containing is not None and self.refuse_containing in segment.path.read_bytes():
            raise RefusedError("CANNOT_PARSE_PROTOBUF")
        self.tokens.append(segment.token)
        self.stored.append(segment.path.read_bytes())
        self.records.extend(read_records(segment.path))

    def is_refusal(self, error: Exception) -> bool:
        return isinstance(error, RefusedError)

    def is_request_fault(self, error: Exception) -> bool:
        return isinstance(error, RefusedError) and "PROTOBUF" in str(error)

    def relieve(self, error: Exception) -> str | None:
        if not isinstance(error, EngineFullError):
            return None
        self.reliefs.append(str(error))
        return "caches"

    def is_lost(self, error: Exception) -> bool:
        return isinstance(error, EngineLostError)

    def stuck_hint(self, error: Exception) -> str:
        return f"the fake store's hint for {type(error).__name__}"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "BACKOFF_S", (0.0,))


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[WriteAheadLog]:
    log = WriteAheadLog(tmp_path / "wal", segment_bytes=1 << 20, max_age_s=60, fsync=False)
    yield log
    log.close()


def _segment(wal: WriteAheadLog, payload: bytes) -> None:
    wal.append(frame(payload))
    wal.flush()


def test_an_unreachable_store_is_retried_until_it_answers_and_stores_each_segment_once(
    wal: WriteAheadLog,
) -> None:
    store = FakeStore()
    store.failures = [UnreachableError("connection refused")] * 7
    _segment(wal, b"first")
    _segment(wal, b"second")
    writer = SegmentWriter(wal, store)
    assert writer.drain(give_up_after_s=10) == 2
    assert [s.endswith(p) for s, p in zip(store.stored, (b"first", b"second"), strict=True)] == [True, True]
    assert len(set(store.tokens)) == 2
    assert writer.stats.retries == 7
    assert writer.stats.quarantined == 0
    assert wal.pending_bytes == 0


def test_a_refused_segment_is_set_aside_with_its_reason_and_the_next_one_goes_on(wal: WriteAheadLog) -> None:
    store = FakeStore()
    store.failures = [RefusedError("CANNOT_PARSE_PROTOBUF")] * MAX_REFUSALS
    _segment(wal, b"bad")
    _segment(wal, b"good")
    writer = SegmentWriter(wal, store)
    assert writer.drain(give_up_after_s=10) == 2
    assert len(store.stored) == 1
    assert store.stored[0].endswith(b"good")
    assert writer.stats.quarantined == 1
    reasons = list((wal.directory / "quarantine").glob("*.reason.txt"))
    assert len(reasons) == 1
    assert "CANNOT_PARSE_PROTOBUF" in reasons[0].read_text()


def test_a_refused_segment_is_split_until_only_the_refused_request_is_set_aside(wal: WriteAheadLog) -> None:
    """A segment holds every tenant's requests of its half second: the one ClickHouse refuses is
    set aside alone, and every other request of its segment is stored once, in order."""
    store = FakeStore()
    store.refuse_containing = b"poison"
    payloads = [f"tenant-{i}".encode() for i in range(7)]
    payloads[5] = b"poison"
    for payload in payloads:
        wal.append(frame(payload))
    wal.flush()
    _segment(wal, b"later")
    writer = SegmentWriter(wal, store)
    writer.drain(give_up_after_s=10)
    assert store.records == [p for p in payloads if p != b"poison"] + [b"later"]
    assert len(set(store.tokens)) == len(store.tokens)
    assert writer.stats.quarantined == 1
    assert writer.stats.splits == 3  # 7 -> 3 + 4 -> 2 + 2 -> 1 + 1
    [kept] = [p for p in (wal.directory / "quarantine").iterdir() if p.suffix == ".wal"]
    assert list(read_records(kept)) == [b"poison"]
    assert "CANNOT_PARSE_PROTOBUF" in kept.with_suffix(".reason.txt").read_text()
    assert wal.pending_bytes == 0
    assert not list(wal.directory.glob("*.wal"))


def test_a_refusal_of_every_insert_sets_the_segment_aside_whole_without_halving_it(wal: WriteAheadLog) -> None:
    """Halving finds a request the engine cannot take; a refusal that is no request's fault (access
    denied, a missing table) would refuse every half alike: 6n inserts and 2n files for nothing."""
    store = FakeStore()
    store.failures = [RefusedError("ACCESS_DENIED")] * MAX_REFUSALS
    for payload in (b"a", b"b", b"c", b"d"):
        wal.append(frame(payload))
    wal.flush()
    _segment(wal, b"later")
    writer = SegmentWriter(wal, store)
    writer.drain(give_up_after_s=10)
    assert store.attempts == MAX_REFUSALS + 1
    assert writer.stats.splits == 0
    assert writer.stats.quarantined == 1
    [kept] = [p for p in (wal.directory / "quarantine").iterdir() if p.suffix == ".wal"]
    assert list(read_records(kept)) == [b"a", b"b", b"c", b"d"]
    assert store.records == [b"later"]


def test_halves_are_refused_once_and_a_split_that_cannot_be_written_sets_the_segment_aside_whole(
    wal: WriteAheadLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FakeStore()
    store.refuse_containing = b"poison"
    for payload in (b"a", b"poison", b"c", b"d"):
        wal.append(frame(payload))
    wal.flush()
    writer = SegmentWriter(wal, store)
    writer.drain(give_up_after_s=10)
    # 3 tries of the whole, then [a, poison] once, [a], [poison] once, then [c, d]
    assert store.attempts == MAX_REFUSALS + 1 + 1 + 1 + 1
    assert store.records == [b"a", b"c", b"d"]

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("clinotel.collector.log.wal._write_durably", disk_full)
    for payload in (b"e", b"poison", b"g"):
        wal.append(frame(payload))
    wal.flush()
    writer.drain(give_up_after_s=10)
    kept = sorted(p for p in (wal.directory / "quarantine").iterdir() if p.suffix == ".wal")
    assert [list(read_records(p)) for p in kept][-1] == [b"e", b"poison", b"g"]
    assert not list(wal.directory.glob(".split-*")), "what the split had written is removed"
    assert wal.pending_bytes == 0


def test_a_lost_engine_stops_the_writer_and_sets_nothing_aside(wal: WriteAheadLog) -> None:
    """An engine that crashed refuses every segment alike: none of them is at fault, so none is
    quarantined; the writer stops at once, everything still in the log for the next start."""
    store = FakeStore()
    store.failures = [EngineLostError("The server is shutting down due to a fatal error")] * 100
    _segment(wal, b"first")
    _segment(wal, b"second")
    writer = SegmentWriter(wal, store)
    with pytest.raises(StoreLostError, match="fatal error"):
        writer.drain(give_up_after_s=10)
    assert store.attempts == 1
    assert writer.stats.quarantined == 0
    assert not (wal.directory / "quarantine").exists() or not any((wal.directory / "quarantine").iterdir())
    assert wal.sealed_count == 2


def test_the_writer_thread_reports_a_lost_engine_as_its_failure(wal: WriteAheadLog) -> None:
    store = FakeStore()
    store.failures = [EngineLostError("The server is shutting down due to a fatal error")] * 100
    reasons: list[str] = []
    writer = SegmentWriter(wal, store, on_failure=reasons.append)
    writer.start()
    _segment(wal, b"acknowledged")
    deadline = time.monotonic() + 10
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(reasons) == 1, reasons
    assert "stay in the log" in reasons[0]
    assert not writer.alive
    assert wal.sealed_count == 1
    writer.stop(drain=False)


def test_a_drain_gives_up_at_its_deadline_and_leaves_the_segment_in_the_log(wal: WriteAheadLog) -> None:
    store = FakeStore()
    store.failures = [UnreachableError("down")] * 10_000
    _segment(wal, b"kept")
    writer = SegmentWriter(wal, store)
    assert writer.drain(give_up_after_s=0.2) == 0
    assert wal.sealed_count == 1
    assert writer.stats.quarantined == 0
    store.failures = []
    assert writer.drain(give_up_after_s=5) == 1
    assert store.stored[0].endswith(b"kept")


def test_fewer_refusals_than_the_limit_are_retried_not_set_aside(wal: WriteAheadLog) -> None:
    store = FakeStore()
    store.failures = [RefusedError("TOO_MANY_PARTS")] * (MAX_REFUSALS - 1)
    _segment(wal, b"eventually")
    writer = SegmentWriter(wal, store)
    assert writer.drain(give_up_after_s=10) == 1
    assert writer.stats.quarantined == 0
    assert store.attempts == MAX_REFUSALS


def test_a_segment_kept_out_by_a_full_engine_asks_it_to_free_memory_and_then_says_so_loudly(
    wal: WriteAheadLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The 512 MB stall: an engine at its cap with nothing else running kept one segment out for
    minutes, the writer retrying quietly. Now the store is asked to free memory, and a segment
    kept out past the alarm is an error in the log, while the writer keeps retrying."""
    monkeypatch.setattr(writer_module, "BACKOFF_S", (0.01,))
    monkeypatch.setattr(writer_module, "RELIEVE_AFTER_S", 0.05)
    monkeypatch.setattr(writer_module, "STALL_ALARM_S", 0.2)
    store = FakeStore()
    store.failures = [EngineFullError("(total) memory limit exceeded")] * 40
    _segment(wal, b"waits")
    writer = SegmentWriter(wal, store)
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"):
        started = time.monotonic()
        assert writer.drain(give_up_after_s=30) == 1
    assert time.monotonic() - started >= 0.2
    assert store.stored[0].endswith(b"waits"), "retried, never set aside: the engine did not refuse it"
    assert writer.stats.quarantined == 0
    assert 1 <= len(store.reliefs) == writer.stats.reliefs
    assert writer.stats.stalled_since is None, "stored: no longer stalled"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "a segment kept out past the alarm is reported as an error"
    assert "not stored for" in errors[0]
    assert errors[0].endswith("the fake store's hint for EngineFullError"), "with the store's advice"


def test_an_unreachable_store_is_not_asked_to_free_memory(wal: WriteAheadLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "BACKOFF_S", (0.01,))
    monkeypatch.setattr(writer_module, "RELIEVE_AFTER_S", 0.0)
    store = FakeStore()
    store.failures = [UnreachableError("connection refused")] * 5
    _segment(wal, b"later")
    writer = SegmentWriter(wal, store)
    assert writer.drain(give_up_after_s=10) == 1
    assert store.reliefs == []
    assert writer.stats.reliefs == 0


def test_a_segment_kept_out_past_the_alarm_is_logged_with_the_stores_advice(
    wal: WriteAheadLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_module, "STALL_ALARM_S", 0.0)
    store = FakeStore()
    store.failures = [UnreachableError("connection refused")] * 2
    _segment(wal, b"waiting")
    with caplog.at_level(logging.ERROR, logger="clinotel.collector"):
        assert SegmentWriter(wal, store).drain(give_up_after_s=10) == 1
    alarms = [r.getMessage() for r in caplog.records if "still retrying" in r.getMessage()]
    assert alarms, "the alarm was raised"
    assert alarms[0].endswith("the fake store's hint for UnreachableError")


def test_a_stop_that_leaves_acknowledged_spans_in_the_log_says_so_and_why(
    wal: WriteAheadLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopped on a full disk, a collector's last line was "stopping: writing what the log holds",
    and nothing said two acknowledged segments were left (an operator's review)."""
    monkeypatch.setattr(writer_module, "DRAIN_DEADLINE_S", 0.2)
    store = FakeStore()
    store.failures = [UnreachableError("Code: 243. NOT_ENOUGH_SPACE")] * 10_000
    _segment(wal, b"kept")
    writer = SegmentWriter(wal, store)
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"):
        writer.stop(drain=True, wait=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopped with")]
    assert len(lines) == 1, lines
    assert "NOT_ENOUGH_SPACE" in lines[0]
    assert "the next start stores them" in lines[0]
    assert wal.sealed_count == 1
