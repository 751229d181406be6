"""The write-ahead log on its own: framing, group commit, torn tails, the size bound."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from clinotel.collector.otlp_proto import frame
from clinotel.collector.wal import LogFullError, WriteAheadLog, read_records, valid_length


def test_records_round_trip_and_segments_seal_by_size(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=1000, max_age_s=60)
    payloads = [bytes([i]) * (100 + i) for i in range(30)]
    for p in payloads:
        wal.append(frame(p))
    wal.flush()
    got = []
    while (segment := wal.next_segment(0)) is not None:
        got.extend(read_records(segment.path))
        wal.done(segment)
        assert not segment.path.exists()
    assert got == payloads
    assert wal.pending_bytes == 0


def test_concurrent_appends_are_all_on_disk_once(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=64 << 10, max_age_s=60)

    def writer(n: int) -> None:
        for i in range(200):
            wal.append(frame(f"{n}:{i}".encode()))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    records = [r for p in sorted(tmp_path.glob("*.wal")) for r in read_records(p)]
    assert sorted(records) == sorted(f"{n}:{i}".encode() for n in range(8) for i in range(200))


def test_a_torn_tail_is_cut_at_start_and_whole_records_replay(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_age_s=60)
    for i in range(5):
        wal.append(frame(b"record-%d" % i))
    assert wal._file is not None
    wal._file.write(frame(b"never acknowledged")[:-4])  # a crash mid-write
    wal._file.flush()
    # the process dies: the file is left open; a new log opens the directory
    reopened = WriteAheadLog(tmp_path, max_age_s=60)
    segment = reopened.next_segment(0)
    assert segment is not None
    assert list(read_records(segment.path)) == [b"record-%d" % i for i in range(5)]
    assert segment.records == 5
    data = segment.path.read_bytes()
    assert valid_length(data) == (len(data), 5)
    wal._file.close()


def test_the_size_bound_refuses_instead_of_growing(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=10_000, max_age_s=60)
    accepted = 0
    for _ in range(19):
        wal.append(frame(b"x" * 500))
        accepted += 1
    with pytest.raises(LogFullError):
        wal.append(frame(b"x" * 500))
    assert accepted == 19
    assert wal.pending_bytes <= 10_000
    wal.flush()
    segment = wal.next_segment(0)
    assert segment is not None
    wal.done(segment)
    wal.append(frame(b"x" * 500))  # room again
    wal.close()


def test_quarantine_keeps_the_segment_and_the_reason(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_age_s=60)
    wal.append(frame(b"bad"))
    wal.flush()
    segment = wal.next_segment(0)
    assert segment is not None
    target = wal.quarantine(segment, "Code: 1. refused")
    assert target.exists()
    assert target.with_suffix(".reason.txt").read_text() == "Code: 1. refused"
    assert wal.next_segment(0) is None
    assert wal.pending_bytes == 0


def test_an_old_open_segment_is_sealed_for_freshness(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_age_s=0.05)
    wal.append(frame(b"fresh"))
    segment = wal.next_segment(timeout=1.0)
    assert segment is not None
    assert list(read_records(segment.path)) == [b"fresh"]
