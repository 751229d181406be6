"""Segments a collector of an earlier release left in the log (a kill -9 between an insert and
the segment's deletion) are replayed through that release's ingest view, whose deduplication
recognises what it had stored: through this release's view they were stored twice (an upgrade
review: 2,560 acknowledged spans doubled, queue waits with them)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.collector.tokens import Tokens
from collector.tests.fixtures import running
from collector.tests.test_wal_damage import RECORDS, _acknowledged, _names, _stored


def _left_by_earlier(client: Any, options: schema.SchemaOptions, wal_dir: Path, *, stored: bool) -> Path:
    """A segment of `RECORDS` acknowledged requests left in `wal_dir` by a collector whose pipeline
    is not this release's (here: this release's without the drop counts, so another digest),
    stored by it first when `stored`; its pipeline's table, view and .proto left as a release leaves them."""
    earlier = ingest.Pipeline.for_options(options, count_drops=False)
    for statement in earlier.statements():
        client.command(statement)
    segment, _ = _acknowledged(wal_dir)
    proto = earlier.write_proto(wal_dir)
    if stored:
        client.command(earlier.insert_from_file(str(segment), segment.stem, str(proto)))
    return segment


@pytest.mark.parametrize("stored", [True, False])
def test_a_segment_an_earlier_release_left_is_stored_once(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, stored: bool,
) -> None:  # fmt: skip
    wal_dir = tmp_path / "wal"
    segment = _left_by_earlier(client, options, wal_dir, stored=stored)
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"), running(
        client, engine_dir, options, tokens, wal_dir
    ) as collector:  # fmt: skip
        assert collector.writer is not None
        collector.writer.drain(give_up_after_s=60)
    assert _stored(client, options) == _names(range(RECORDS))
    assert not segment.exists()
    assert "left by a collector of another release" in caplog.text


def test_this_releases_own_segments_go_through_its_own_view(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Once this release has started on the log (its .proto the newest there), what it leaves
    goes through its own view, the earlier one's table and view still in the store."""
    wal_dir = tmp_path / "wal"
    _left_by_earlier(client, options, wal_dir, stored=False)
    with running(client, engine_dir, options, tokens, wal_dir) as collector:
        assert collector.writer is not None
        collector.writer.drain(give_up_after_s=60)
    current = ingest.Pipeline.for_options(options)
    assert (wal_dir / current.proto_name).stat().st_mtime_ns >= max(
        p.stat().st_mtime_ns for p in wal_dir.glob("*.proto")
    )
    segment, _ = _acknowledged(wal_dir)
    client.command(current.insert_from_file(str(segment), segment.stem, str(current.write_proto(wal_dir))))
    os.utime(wal_dir / current.proto_name)  # the newest: this release ran last
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"), running(
        client, engine_dir, options, tokens, wal_dir
    ) as collector:  # fmt: skip
        assert collector.writer is not None
        collector.writer.drain(give_up_after_s=60)
    assert _stored(client, options) == sorted(_names(range(RECORDS)) * 2)  # two segments of the same names
    assert "another release" not in caplog.text
