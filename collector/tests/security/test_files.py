"""What the collector leaves on disk: its log holds every tenant's requests as received, before
the allowlist and the PHI rules run in the engine, so nobody else on the host may read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from clinotel.collector.log.record import frame
from clinotel.collector.log.wal import WriteAheadLog
from clinotel.collector.store.embedded import record_log


def _others_may_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def test_the_log_and_the_store_directory_are_private(tmp_path: Path) -> None:
    """Under the usual umask (022) the log directory, its segments, its lock and its quarantine
    were readable by every local user: raw OTLP requests, PHI not yet scrubbed."""
    previous = os.umask(0o022)
    try:
        wal = WriteAheadLog(tmp_path / "new" / "wal", segment_bytes=1000, max_age_s=60)
        wal.append(frame(b"Mrs. Jane Doe 123-45-6789"))
        wal.flush()
        segment = wal.next_segment(0)
        assert segment is not None
        quarantined = wal.quarantine(segment, "test")
        record_log(tmp_path / "data", "clinotel", wal.directory)
        wal.close()
    finally:
        os.umask(previous)
    for path in (wal.directory, quarantined.parent, quarantined, tmp_path / "data"):
        assert not _others_may_read(path), f"{path}: {stat.filemode(path.stat().st_mode)}"
