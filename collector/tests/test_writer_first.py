"""The writer's acknowledged spans come before readers: when an insert keeps failing on the
engine's whole memory, its try alone holds the read port's queries back, so what readers hold is
never taken for the segment's own size (one tenant's four queries at their caps had another
tenant's acknowledged segments set aside in the quarantine)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from clinotel.collector.readport.reader import ClickHouseError, ReadLimits, SqlReader
from clinotel.collector.service import Collector
from clinotel.collector.store.segments import EmbeddedSegments


def test_paused_waits_for_running_readers_and_holds_new_ones(engine_dir: Path) -> None:
    reader = SqlReader(engine_dir / "data", "default", (), ReadLimits(max_execution_time=5))
    try:
        running = reader._admitted()
        running.__enter__()  # a reader query in flight
        started = time.monotonic()
        with reader.paused(0.3) as idle:
            assert idle is False, "a query still ran when the wait ended"
        assert 0.25 < time.monotonic() - started < 3
        answered: list[float] = []

        def ask() -> None:
            reader.query("SELECT 1", tenant="b")
            answered.append(time.monotonic())

        with reader.paused(5) as idle:
            assert idle is False
            running.__exit__(None, None, None)
        with reader.paused(5) as idle:
            assert idle is True, "no query runs"
            late = threading.Thread(target=ask)
            late.start()
            time.sleep(0.5)
            assert answered == [], "a new reader query waits while the writer holds the readers"
            released = time.monotonic()
        late.join(timeout=10)
        assert answered
        assert answered[0] >= released
    finally:
        reader.close()


def test_a_reader_held_back_too_long_is_told_so(engine_dir: Path) -> None:
    reader = SqlReader(engine_dir / "data", "default", (), ReadLimits(max_execution_time=1))
    try:
        with reader.paused(0), pytest.raises(ClickHouseError) as refused:
            reader.query("SELECT 1", tenant="a")
        assert refused.value.code == 202
        assert reader.query("SELECT 1", tenant="a").body == b"1\n"
    finally:
        reader.close()


def test_the_collector_holds_its_readers_for_the_writer_s_try_alone(collector: Collector) -> None:
    assert collector.writer is not None
    assert collector.reader is not None
    store = collector.writer.store
    assert isinstance(store, EmbeddedSegments)
    assert store.quiesce is not None
    with store.quiesce(1) as idle:
        assert idle is True
