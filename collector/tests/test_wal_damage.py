"""Damage inside a write-ahead-log segment, found at the next start: the records after it are kept.

Six acknowledged requests (five spans each) are left in a segment by a process that died, the
segment is damaged, and the log is opened again (a restart) and written into the real engine. Only
an incomplete final record is a torn tail (cut, nothing set aside); anything else loses the damaged
record alone, the damaged original goes to the quarantine with a reason, and an error names the
segment and the bytes lost. A segment of the earlier format (records without a checksum) replays
as before.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from clinotel.collector import leb128
from clinotel.collector.log import record as otlp_proto
from clinotel.collector.log.wal import WriteAheadLog, read_records
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.collector.store.segments import EmbeddedSegments
from clinotel.collector.tokens import Tokens
from clinotel.collector.writer import SegmentWriter
from collector.tests.fixtures import running

RECORDS = 6
SPANS = 5
DAMAGED = 2
"""The record damaged in the middle of the segment (the third)."""


def _message(n: int) -> bytes:
    """Request `n` with its envelope: spans named `rec<n>-<j>`."""
    now = time.time_ns()
    spans = [
        Span(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"rec{n}-{j}", start_time_unix_nano=now - 1000,
             end_time_unix_nano=now)
        for j in range(SPANS)
    ]  # fmt: skip
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return bytes(request.SerializeToString()) + otlp_proto.envelope("st-marys", f"b{n}", now)


def _names(records: range | list[int]) -> list[str]:
    return sorted(f"rec{n}-{j}" for n in records for j in range(SPANS))


def _acknowledged(directory: Path, torn: bytes = b"") -> tuple[Path, list[int]]:
    """A segment of `RECORDS` acknowledged records (each `append` returned), then `torn` written
    without an acknowledgement, left by a process that died; and where each record starts."""
    wal = WriteAheadLog(directory, max_age_s=60)
    starts, at = [], 0
    for n in range(RECORDS):
        record = otlp_proto.frame(_message(n))
        wal.append(record)
        starts.append(at)
        at += len(record)
    file = wal._file
    assert file is not None
    file.write(torn)
    wal.release()  # dies: the segment is left open, unsealed
    file.close()
    [segment] = directory.glob("*.wal")
    return segment, starts


def _restart(client: Any, pipeline: ingest.Pipeline, directory: Path, proto_dir: Path) -> WriteAheadLog:
    """Open the log again and write what it replays into the engine."""
    wal = WriteAheadLog(directory, max_age_s=60)
    writer = SegmentWriter(wal, EmbeddedSegments(client, pipeline, str(pipeline.write_proto(proto_dir))))
    writer.drain(give_up_after_s=60)
    wal.release()
    return wal


def _stored(client: Any, options: schema.SchemaOptions) -> list[str]:
    rows = client.query(f"SELECT SpanName FROM {options.name(schema.TRACES)} ORDER BY SpanName").result_rows
    return [str(row[0]) for row in rows]


def _damage(segment: Path, change: Any) -> bytes:
    data = bytearray(segment.read_bytes())
    change(data)
    segment.write_bytes(bytes(data))
    return bytes(data)


def _damaged_and_restarted(segment: Path, change: Any, caplog: pytest.LogCaptureFixture, *restart: Any) -> bytes:
    """`change` made to the segment, then the log opened again and replayed (`_restart(*restart)`),
    its errors captured; the damaged bytes."""
    damaged = _damage(segment, change)
    with caplog.at_level(logging.ERROR, logger="clinotel.collector"):
        _restart(*restart)
    return damaged


def _flip_length_at(at: int) -> Any:
    """A change that makes the length prefix at `at` run on into what follows it."""

    def flip(data: bytearray) -> None:
        data[at] |= 0x80
        data[at + 1] |= 0x7F

    return flip


def _assert_set_aside(directory: Path, segment: Path, damaged: bytes, lost: tuple[int, int], log: str) -> None:
    """The damaged original is in the quarantine with its reason, and the error names the segment
    and the bytes lost."""
    quarantine = directory / "quarantine"
    copies = sorted(quarantine.glob("*.wal")) if quarantine.is_dir() else []
    assert [p.read_bytes() for p in copies] == [damaged], "the damaged original, as found, is in the quarantine"
    reasons = list(quarantine.glob("*.reason.txt"))
    assert len(reasons) == 1
    assert f"{lost[0]}-{lost[1]}" in reasons[0].read_text(encoding="utf-8")
    assert segment.name in log, log
    assert f"{lost[0]}-{lost[1]}" in log, log


@pytest.fixture
def proto_dir(tmp_path: Path) -> Path:
    return tmp_path / "proto"


def test_a_bit_flip_in_a_middle_records_length_loses_that_record_alone(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    directory = tmp_path / "wal"
    segment, starts = _acknowledged(directory)
    at = starts[DAMAGED]
    damaged = _damaged_and_restarted(segment, _flip_length_at(at), caplog, client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names([n for n in range(RECORDS) if n != DAMAGED])
    _assert_set_aside(directory, segment, damaged, (at, starts[DAMAGED + 1]), caplog.text)
    assert not segment.exists(), "stored, then deleted"


def test_a_zeroed_run_in_the_middle_is_damage_not_empty_records(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    directory = tmp_path / "wal"
    segment, starts = _acknowledged(directory)
    at = starts[DAMAGED]
    assert starts[DAMAGED + 1] - at > 64

    def zero(data: bytearray) -> None:  # a lost write-back page: 64 zero bytes, 64 "empty records"
        data[at : at + 64] = bytes(64)

    damaged = _damaged_and_restarted(segment, zero, caplog, client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names([n for n in range(RECORDS) if n != DAMAGED])
    _assert_set_aside(directory, segment, damaged, (at, starts[DAMAGED + 1]), caplog.text)


def test_a_damaged_payload_byte_in_a_middle_record_is_not_stored(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    directory = tmp_path / "wal"
    segment, starts = _acknowledged(directory)
    name = segment.read_bytes().index(b"rec2-3")
    assert starts[DAMAGED] < name < starts[DAMAGED + 1]

    def garble(data: bytearray) -> None:  # still a readable request, with another span name
        data[name + 5] = ord("X")

    damaged = _damaged_and_restarted(segment, garble, caplog, client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names([n for n in range(RECORDS) if n != DAMAGED])
    _assert_set_aside(directory, segment, damaged, (starts[DAMAGED], starts[DAMAGED + 1]), caplog.text)


def test_a_damaged_length_of_the_last_record_is_not_a_torn_tail(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    directory = tmp_path / "wal"
    segment, starts = _acknowledged(directory)
    at, size = starts[-1], segment.stat().st_size  # the length will run past the file, like a torn record's
    damaged = _damaged_and_restarted(segment, _flip_length_at(at), caplog, client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names(range(RECORDS - 1))
    _assert_set_aside(directory, segment, damaged, (at, size), caplog.text)


def test_a_torn_final_record_is_still_cut_and_nothing_is_set_aside(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    directory = tmp_path / "wal"
    torn = otlp_proto.frame(_message(RECORDS))[:-20]  # a crash mid-write, never acknowledged
    segment, _ = _acknowledged(directory, torn)
    with caplog.at_level(logging.ERROR, logger="clinotel.collector"):
        wal = WriteAheadLog(directory, max_age_s=60)
        replayed = wal.next_segment(0)
        assert replayed is not None
        assert replayed.records == RECORDS
        assert segment.stat().st_size == replayed.size, "the torn record is cut off"
        wal.release()
        _restart(client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names(range(RECORDS))
    assert not (directory / "quarantine").exists(), "a torn tail is no damage"
    assert caplog.text == ""


def test_a_segment_of_the_earlier_format_replays_as_before(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
) -> None:  # fmt: skip
    directory = tmp_path / "wal"
    directory.mkdir()
    old = [leb128.encode(len(m)) + m for m in map(_message, range(3))]  # no checksum field
    torn = old[1][:-7]
    segment = directory / f"{time.time_ns():020d}-0123abcd.wal"  # named as the earlier version named it
    segment.write_bytes(b"".join(old) + torn)
    _restart(client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names(range(3))
    assert not (directory / "quarantine").exists()
    assert not segment.exists()


def test_a_record_framed_inside_a_torn_request_is_not_taken_for_one(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
) -> None:  # fmt: skip
    """A client can put a well-formed framed record (another tenant's envelope, the checksum that
    `frame` computes) in an attribute: when its request is torn by a crash, the scan for whole
    records must not take that one for a record of the log's. The log keys its checksums with a
    secret of each segment (`record.keyed`), which no client knows."""
    directory = tmp_path / "wal"
    now = time.time_ns()
    forged = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
            Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="forged", start_time_unix_nano=now - 1000,
                 end_time_unix_nano=now)
        ])])]
    )  # fmt: skip
    inner = otlp_proto.frame(bytes(forged.SerializeToString()) + otlp_proto.envelope("general", "x", now))
    carrier = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
            Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="carrier", start_time_unix_nano=now - 1000,
                 end_time_unix_nano=now, attributes=[KeyValue(key="blob", value=AnyValue(bytes_value=inner))])
        ])])]
    )  # fmt: skip
    record = otlp_proto.frame(bytes(carrier.SerializeToString()) + otlp_proto.envelope("st-marys", "c", now))
    cut = record.index(inner) + len(inner) + 3  # torn just after the framed record it carries
    _acknowledged(directory, record[:cut])
    _restart(client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names(range(RECORDS))
    assert not (directory / "quarantine").exists()


def test_resynchronising_after_a_long_damaged_run_is_linear(tmp_path: Path) -> None:
    """Whole records after 2 MiB of random bytes are found again, within seconds."""
    messages = [_message(n) for n in range(4)]
    wal = WriteAheadLog(tmp_path, max_age_s=60)
    for message in messages:
        wal.append(otlp_proto.frame(message))
    wal.close()
    [segment] = tmp_path.glob("*.wal")
    data = segment.read_bytes()
    middle = sum(len(otlp_proto.frame(m)) for m in messages[:2])
    segment.write_bytes(data[:middle] + os.urandom(2 << 20) + data[middle:])
    started = time.monotonic()
    assert list(read_records(segment)) == messages
    assert time.monotonic() - started < 20


def test_a_request_full_of_planted_checksum_tags_costs_a_start_linear_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client can fill its request's bytes with plausible lengths each followed by the
    checksum's tag: torn by a crash, that request had every such candidate hashed whole, and a
    start took minutes (4 MiB: 122 s; a 32 MiB request kept a collector from listening past 4
    minutes). What a scan hashes is bounded by `RESYNC_HASH_FACTOR` times the segment."""
    from clinotel.collector.log import wal as wal_module

    unit = leb128.encode(1 << 20) + b"\xbd\x06"  # a 1 MiB length, then field 103's fixed32 tag
    blob = unit * ((2 << 20) // len(unit))
    now = time.time_ns()
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
            Span(trace_id=b"\1" * 16, span_id=b"\2" * 8, name="planted", start_time_unix_nano=now,
                 end_time_unix_nano=now, attributes=[KeyValue(key="blob", value=AnyValue(bytes_value=blob))])
        ])])]
    )  # fmt: skip
    wal = WriteAheadLog(tmp_path, max_age_s=60, max_bytes=1 << 30, segment_bytes=64 << 20)
    wal.append(otlp_proto.frame(bytes(request.SerializeToString()) + otlp_proto.envelope("a", "b", now)))
    wal.close()
    wal.release()
    [segment] = tmp_path.glob("*.wal")
    size = segment.stat().st_size
    os.truncate(segment, size - 100)  # what a crash mid-write leaves
    hashed = [0]
    real = wal_module.checked

    def counting(record: Any, key: int = 0) -> bool:
        hashed[0] += len(record)
        return real(record, key)

    monkeypatch.setattr(wal_module, "checked", counting)
    started = time.monotonic()
    WriteAheadLog(tmp_path, max_age_s=60, max_bytes=1 << 30).close()
    assert hashed[0] <= (wal_module.RESYNC_HASH_FACTOR + 12) * size + (1 << 20), hashed[0]
    assert time.monotonic() - started < 20


def test_a_segment_damaged_twice_keeps_both_originals(tmp_path: Path) -> None:
    """The second start's copy of a repaired segment damaged again replaced the first original,
    which held the requests lost the first time."""
    wal = WriteAheadLog(tmp_path, max_age_s=60)
    for n in range(10):
        wal.append(otlp_proto.frame(b"record %d " % n + b"x" * 50))
    wal.close()
    wal.release()
    [segment] = tmp_path.glob("*.wal")
    originals = []
    for _ in range(2):
        data = bytearray(segment.read_bytes())
        data[len(data) // 3] ^= 0xFF
        segment.write_bytes(data)
        originals.append(bytes(data))
        WriteAheadLog(tmp_path, max_age_s=60).release()
    kept = sorted(p.read_bytes() for p in (tmp_path / "quarantine").glob("*.wal"))
    assert kept == sorted(originals)
    assert len(list((tmp_path / "quarantine").glob("*.reason.txt"))) == 2


def test_a_segment_cut_short_that_is_not_the_newest_is_damage_not_a_torn_tail(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, proto_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Only the segment open when the process stopped can end in a record a crash tore. An older
    one cut short (a copy cut off, a truncation) lost acknowledged records: it was cut quietly like
    a torn tail, 8,200 acknowledged spans gone with no line (an operator's fault injection). Now it
    is damage: the original in the quarantine, an error naming the bytes; and the newest segment's
    torn tail, still cut, is named in a warning."""
    directory = tmp_path / "wal"
    records = [otlp_proto.frame(_message(n)) for n in range(RECORDS)]
    wal = WriteAheadLog(directory, max_age_s=60, segment_bytes=sum(map(len, records[:3])))
    for record in records[:5]:
        wal.append(record)
    wal.release()  # dies with the second segment (records 3 and 4) open
    assert wal._file is not None
    wal._file.close()
    older, newest = sorted(directory.glob("*.wal"))
    assert older.stat().st_size == sum(map(len, records[:3]))
    cut = older.stat().st_size - 20
    damaged = _damage(older, lambda data: data.__delitem__(slice(cut, None)))
    _damage(newest, lambda data: data.__delitem__(slice(len(data) - 7, None)))
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"):
        _restart(client, pipeline, directory, proto_dir)
    assert _stored(client, options) == _names([0, 1, 3])
    start = len(records[0]) + len(records[1])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    _assert_set_aside(directory, older, damaged, (start, cut), errors[0])
    assert "the file was cut short, and the records that followed it, acknowledged, are lost too" in errors[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(newest.name in w and "incomplete record" in w for w in warnings), warnings


def test_a_split_half_cut_short_is_damage_even_when_it_sorts_last(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A half of a split segment is never the segment a crash tore (halves are written whole
    before they replace their segment); one that sorted last, cut short, was taken for a torn
    tail (an operator's fault injection)."""
    directory = tmp_path / "wal"
    wal = WriteAheadLog(directory, max_age_s=60)
    for n in range(4):
        wal.append(otlp_proto.frame(_message(n)))
    wal.flush()
    segment = wal.next_segment(0)
    assert segment is not None
    _, second = wal.split(segment)
    wal.close()
    wal.release()
    assert sorted(directory.glob("*.wal"))[-1] == second.path
    damaged = _damage(second.path, lambda data: data.__delitem__(slice(len(data) - 20, None)))
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"):
        again = WriteAheadLog(directory, max_age_s=60)
        again.release()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert second.path.name in errors[0]
    assert [p.read_bytes() for p in (directory / "quarantine").glob("*.wal")] == [damaged]


def test_a_segment_found_damaged_at_start_counts_as_set_aside(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    """A collector that finds a damaged segment when it starts counts it in
    `clinotel_writer_quarantined_total`, which opens the `segments_quarantined` ticket: 512
    acknowledged spans lost to one with nothing but a line in the log (an on-call review)."""
    directory = tmp_path / "wal"
    segment, starts = _acknowledged(directory)
    _damage(segment, _flip_length_at(starts[DAMAGED]))
    with running(client, engine_dir, options, tokens, directory) as collector:
        assert collector.writer is not None
        collector.writer.drain(give_up_after_s=60)
        assert collector.writer.stats.quarantined == 1
    assert _stored(client, options) == _names([n for n in range(RECORDS) if n != DAMAGED])
