"""The write-ahead log: the collector's acknowledgement and its persistent queue.

A request is answered only after its record is on disk (`append` returns after fsync). Records
are length-delimited, so a segment is exactly what ClickHouse's `Protobuf` format reads. Appends
that arrive together share one fsync (group commit). The open segment is sealed when it is big
or old enough; sealed segments wait for the writer, which deletes each once ClickHouse holds it.

Crash safety: on start every segment left on disk is sealed and queued again; a torn record at
the end of a segment (a crash mid-write, never acknowledged) is cut off. Segment names are unique
and serve as insert deduplication tokens, so a segment inserted just before a crash and replayed
after it is stored once.

Damage: every record starts with a checksum (`record.frame`), and segments written so are named
`<time>-<random>-v2.wal` (`FORMAT_MARK`). At start each is checked record by record: only an
incomplete final record (its length runs past the end of the file, and no whole record follows)
of the newest segment, the one open when the process stopped, is a torn tail, cut off as before
with a warning; an older segment cut short is damage. Anything else that is not a whole record (a damaged length,
payload or checksum, zeros, an empty record) is damage: the log resynchronises at the next offset
where a whole record starts, keeps every whole record before and after, copies the damaged
original to `quarantine/<name>.damaged.wal` with a reason file, rewrites the segment with the
whole records alone, and logs an error naming the segment and the byte ranges lost. A segment
without the mark was written by an earlier version (no checksums) and replays as before.

A segment holds every tenant's requests of its half second. One with a request the engine cannot
read is `split` by the writer in two halves, each a segment of its own in its place in the order,
until that request is alone: only it is set aside, and the other tenants' spans are stored.

The log has a size bound: past it, `append` raises `LogFullError` and the receiver answers 503 with
Retry-After instead of holding more in memory or on disk.

Ownership: a log belongs to one store and one running collector. The directory holds `OWNER` (the
store it feeds, written once) and `LOCK` (an exclusive `flock`, held while the log is open, with the
holder's process id and addresses inside). Opening a log held by another process, or one owned by
another store, is refused. Every group commit checks that the open segment is still the file at its
path, and `verify` that the lock file is still ours: a log moved or deleted under a running
collector raises `LogLostError`, so nothing is acknowledged into a file the log no longer owns.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from clinotel.collector import leb128
from clinotel.collector.log.record import CHECKSUM_BYTES, checked, has_checksum_tag_at, keyed, unchecked
from clinotel.model.store import without_credentials

__all__ = [
    "COPIES_PER_REQUEST",
    "COPIES_PER_SEGMENT",
    "FORMAT_MARK",
    "HELD_UP_AGES",
    "LOCK_FILE",
    "OWNER_FILE",
    "LogFullError",
    "LogInUseError",
    "LogLostError",
    "LogOwnedError",
    "Scan",
    "Segment",
    "WriteAheadLog",
    "holder_of",
    "is_checked",
    "key_of",
    "owner_of",
    "pending_segments",
    "read_records",
    "scan_checked",
    "valid_length",
]

logger: Final = logging.getLogger("clinotel.collector")

COPIES_PER_SEGMENT: Final = 1
"""A segment is sealed once the bytes the store copies to insert its requests (their resources'
registered attributes and their scopes' names and versions, once for each of their spans:
`otel_traces` keeps them on every span's row, `service.name` twice) reach this many times the
segment's size. The insert takes 7-15 bytes at its peak for each byte copied (15 for
`service.name`) and 13-14 for each byte of the segment (2026-12-07; `segment_bytes_for` budgets
40): a full segment and its full copies come to about 240 MB at 8 MiB, within that budget. A usual
exporter's resource (a few hundred bytes over 512 spans) copies half a segment's size or less."""
HELD_UP_AGES: Final = 10
"""An append seals the open segment once it is this many times its age (5 s by default): the writer
seals it at its age when it asks for the next segment, and while an insert is retried it does not
ask. At every age, appends sealed segments before a busy writer had filled them: 5.7-6.8 MB instead
of 8 at 25,000-30,000 spans/s, and the fixed cost of the inserts took 5,000 spans/s off the
benchmark's capacity (2026-12-08)."""
COPIES_PER_REQUEST: Final = 2
"""A request whose resources and scopes copied onto its spans come to more than this many times a
segment's size is refused whole (413): alone in its segment, its insert would pass the insert's
budget (16 MiB at the default 8 MiB segment; an OpenTelemetry Collector's batch of 8,192 spans
under 1 KB of registered resource attributes copies 8 MiB; 3 MiB of resource over 400 spans, an
attack review's, 1.2 GB, and a 300 KB scope name over 3,000 spans went past the engine's cap and
set aside every other tenant's spans in its segment)."""
SUFFIX: Final = ".wal"
FORMAT_MARK: Final = "-v2"
"""The end of the names (before `.wal`, and before a half's `.0`/`.1`) of segments whose records
carry a checksum; a segment without it was written by an earlier version and replays unchecked."""
QUARANTINE_DIR: Final = "quarantine"
"""The log's directory of segments set aside (refused by the store, or damaged), kept for the
operator: never replayed."""
DAMAGED: Final = ".damaged"
"""Suffix (before `.wal`) of a damaged segment's original copied to the quarantine."""
SPLIT_PREFIX: Final = ".split-"
"""A directory of the log where a segment's halves are written before they replace it."""
SPLIT_READY: Final = ".ready"
"""Suffix of a split's directory once both halves are on disk: from then on the split is done,
at the next start if not before."""
LOCK_FILE: Final = "LOCK"
OWNER_FILE: Final = "OWNER"
PRIVATE_DIR: Final = 0o700
PRIVATE_FILE: Final = 0o600
"""Modes of what the log creates: its segments are the requests as received, every tenant's,
before the allowlist and the PHI rules run in the engine (a quarantined one stays for good)."""


class LogFullError(Exception):
    """The log holds its maximum of unwritten bytes; the client should retry later."""


class LogInUseError(RuntimeError):
    """Another process holds the log's lock."""


class LogOwnedError(RuntimeError):
    """The log belongs to another store."""


class LogAccessError(RuntimeError):
    """The log's directory does not let this process create and delete its segments."""


class LogLostError(RuntimeError):
    """The log's files were moved or deleted under it: it can no longer acknowledge anything."""


def pending_segments(directory: Path) -> list[Path]:
    """The segments waiting in a log directory (not the quarantined ones)."""
    return sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []


def owner_of(directory: Path) -> str | None:
    """The store a log directory belongs to, as recorded in it (None: not recorded)."""
    try:
        return str(json.loads((directory / OWNER_FILE).read_text(encoding="utf-8"))["store"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def holder_of(directory: Path) -> dict[str, str] | None:
    """What the process holding a log's lock wrote about itself, or None when nobody holds it."""
    path = directory / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder_info(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder_info(path: Path) -> dict[str, str]:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in info.items()} if isinstance(info, dict) else {}


def _describe(info: dict[str, str]) -> str:
    parts = [f"pid {info['pid']}" if "pid" in info else "another process"]
    if info.get("host"):
        parts.append(f"on {info['host']}")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Segment:
    """A sealed segment, ready for the writer."""

    path: Path
    size: int
    records: int
    acknowledged_at: tuple[float, ...] = ()
    """Wall-clock times the records were appended in this process (empty after a restart)."""

    @property
    def token(self) -> str:
        """The insert deduplication token: unique per segment, stable across restarts."""
        return self.path.stem

    @property
    def is_half(self) -> bool:
        """A half of a refused segment (`WriteAheadLog.split`; named `<name>.0`, `<name>.1`)."""
        return is_half(self.path)


def is_half(path: Path) -> bool:
    """Whether the segment file at `path` is a half of a split one (`Segment.is_half`)."""
    return "." in path.stem


def _frames(data: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """(start, end) of each whole record with its length prefix, stopping at the first torn one."""
    start = 0
    for _, end in _records(data):
        yield start, end
        start = end


def _write_durably(path: Path, data: bytes | memoryview) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _records(data: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """(start, end) of each whole length-delimited record, stopping at the first torn one."""
    pos = 0
    while pos < len(data):
        parsed = leb128.decode(data, pos)
        if parsed is None:
            return
        length, start = parsed
        if start + length > len(data):
            return
        pos = start + length
        yield start, pos


def valid_length(data: bytes) -> tuple[int, int]:
    """(bytes, records) of the longest prefix of `data` made of whole length-delimited records."""
    spans = list(_records(data))
    return (spans[-1][1] if spans else 0), len(spans)


def is_checked(path: Path) -> bool:
    """True when the segment (or a half of it, or its damaged original in the quarantine) was
    written with checksums (its name carries `FORMAT_MARK`)."""
    return path.name.split(".", 1)[0].endswith(FORMAT_MARK)


_KEYED_NAME: Final = re.compile(r"\d+-([0-9a-f]{8})" + re.escape(FORMAT_MARK))


def key_of(path: Path) -> int:
    """The key a checked segment's checksums are XORed with (`record.keyed`): the random part of
    its name, which its halves and its copy in the quarantine keep. No client sees a segment's
    name, so none can frame a record inside its request that verifies in the log."""
    named = _KEYED_NAME.match(path.name)
    return int(named.group(1), 16) if named is not None else 0


def read_records(path: Path) -> Iterator[bytes]:
    """The whole records of a segment file: for a checked segment, the records whose checksum
    verifies, without it (what was given to `record.frame`); for an earlier version's segment,
    each record up to the first torn one."""
    data = path.read_bytes()
    if is_checked(path):
        for start, end in scan_checked(data, key=key_of(path)).kept:
            parsed = leb128.decode(data, start)
            assert parsed is not None
            yield unchecked(data[parsed[1] : end])
        return
    for start, end in _records(data):
        yield data[start:end]


RESYNC_HASH_FACTOR: Final = 4
"""What a scan for whole records after damage may hash in all: this many times the segment's
size (and a MiB). A client can fill its own request with the checksum's tag after plausible
lengths, and hashing every such candidate whole made a start quadratic in that request (a 32 MiB
request torn by kill -9 kept a collector from listening for minutes); past the budget the rest
of the segment is lost to the store and kept in the quarantine copy."""
_MAX_PREFIX: Final = 10
"""The most bytes a length prefix (a varint of 64 bits) takes."""
_NONZERO: Final = re.compile(rb"[^\x00]")


def _whole_at(data: bytes | memoryview, pos: int, key: int, budget: list[int] | None = None) -> int | None:
    """The end of the whole checked record (length prefix, checksum that verifies, at least a
    byte of message) starting at `pos`, or None. The length is checked against the file, and the
    checksum field's tag looked for after it, before the CRC is computed; with a `budget` (bytes
    left to hash, in a one-item list), a CRC it cannot pay for is not computed and spends it all."""
    parsed = leb128.decode(data, pos)
    if parsed is None:
        return None
    length, start = parsed
    end = start + length
    if length <= CHECKSUM_BYTES or end > len(data) or not has_checksum_tag_at(data, start):
        return None
    if budget is not None:
        if length > budget[0]:
            budget[0] = -1
            return None
        budget[0] -= length
    return end if checked(memoryview(data)[start:end], key) else None


def _next_whole(data: bytes, pos: int, key: int, budget: list[int]) -> int | None:
    """The first offset from `pos` where a whole checked record starts, or None. Runs of zeros (a
    zero length is never a record) are skipped at once; elsewhere each offset costs a varint and a
    two-byte compare, and a CRC only where the checksum's tag follows a plausible length, paid
    from `budget` (`RESYNC_HASH_FACTOR`): None once it is spent."""
    view = memoryview(data)
    n = len(data)
    p = pos
    while p < n and budget[0] >= 0:
        if data[p] == 0:
            found = _NONZERO.search(data, p)
            if found is None:
                return None
            p = found.start()
        if _whole_at(view, p, key, budget) is not None:
            return p
        p += 1
    return None


def _torn_at(data: bytes | memoryview, pos: int, limit: int, key: int) -> bool:
    """True when what starts at `pos` and runs to the end of the file (no whole record in it) is
    an incomplete final record, cut short by a crash mid-write: its length prefix is well formed
    (or itself cut short), plausible (a message and a checksum, within `limit`), and runs past the
    end of the file; and the file does not end with a whole record whose length prefix is what was
    damaged (a record that was acknowledged)."""
    n = len(data)
    parsed = leb128.decode(data, pos)
    if parsed is None:  # cut short inside the prefix, or not a varint at all
        return n - pos < _MAX_PREFIX and all(b & 0x80 for b in data[pos:n])
    length, start = parsed
    if length <= CHECKSUM_BYTES or length > limit or start + length <= n:
        return False
    view = memoryview(data)
    for message in range(pos + 1, min(pos + _MAX_PREFIX, n - CHECKSUM_BYTES - 1) + 1):
        if has_checksum_tag_at(view, message) and checked(view[message:n], key):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Scan:
    """What a checked segment's bytes hold (`scan_checked`)."""

    kept: list[tuple[int, int]]
    """(start, end) of each whole record, its length prefix included, in order."""
    lost: list[tuple[int, int]]
    """[start, end) of each damaged byte range between or after them."""
    torn: int | None
    """Where an incomplete final record starts (a crash mid-write: cut off), or None."""

    @property
    def size(self) -> int:
        return sum(end - start for start, end in self.kept)


def scan_checked(data: bytes, limit: int = 1 << 62, *, key: int = 0) -> Scan:
    """Walk a checked segment's records: whole ones are kept; at anything else, resynchronise at
    the next offset where a whole record starts, the bytes between being lost, unless it is a
    torn final record (`_torn_at`). `limit`: no torn record is longer (the log's size bound; a
    whole record is whole whatever its length, should the bound have been lowered since); `key`:
    the segment's (`key_of`)."""
    view = memoryview(data)
    kept: list[tuple[int, int]] = []
    lost: list[tuple[int, int]] = []
    pos, n = 0, len(data)
    budget = [RESYNC_HASH_FACTOR * n + (1 << 20)]
    while pos < n:
        end = _whole_at(view, pos, key)
        if end is not None:
            kept.append((pos, end))
            pos = end
            continue
        following = _next_whole(data, pos + 1, key, budget)
        if following is None:
            if _torn_at(view, pos, limit, key):
                return Scan(kept, lost, pos)
            lost.append((pos, n))
            break
        lost.append((pos, following))
        pos = following
    return Scan(kept, lost, None)


class WriteAheadLog:
    """Append-only segments in one directory; thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        owner: str | None = None,
        holder: dict[str, str] | None = None,
        segment_bytes: int = 16 << 20,
        max_age_s: float = 0.5,
        max_bytes: int = 1 << 30,
        fsync: bool = True,
    ) -> None:
        """`owner`: the store this log feeds (recorded on first use, refused when another store's);
        `holder`: what to tell a process that finds the log locked (addresses, role)."""
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.copies_per_segment = COPIES_PER_SEGMENT * segment_bytes
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._sealed: deque[Segment] = deque()
        self._ready = threading.Condition(self._lock)
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._key = 0
        """The open segment's checksum key (`key_of`)."""
        self._opened_at = 0.0
        self._written = 0  # bytes in the open segment
        self._copies = 0  # resource bytes its spans copy (`append`'s `copies`)
        self._records = 0
        self._synced = 0  # bytes of the open segment known to be on disk
        self._generation = 0  # bumps when a segment is sealed
        self._pending_bytes = 0  # open + sealed, not yet deleted
        self._appended_at: list[float] = []
        self._lost: str | None = None
        self._last_name_ns = 0
        """The time in the name of the latest segment (`_open`): a new one's is later."""
        self.damaged_at_open = 0
        """Segments found damaged when the log was opened, their originals copied to the quarantine."""
        directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        self._lock_fd = self._take_lock(holder or {})
        try:
            self._check_access()
            self._claim(owner)
            self._recover()
        except BaseException:
            self.release()
            raise

    # -- ownership ----------------------------------------------------------------------------
    def _check_access(self) -> None:
        """LogAccessError unless a file can be created and deleted in the directory, as every
        segment is: a directory the collector could read but not change stopped its writer at the
        first segment stored (it could not delete it), with a traceback and the exit status that
        says a restart is the remedy (an operator's fault injection)."""
        quarantine = self.directory / QUARANTINE_DIR
        for directory in (self.directory, *([quarantine] if quarantine.is_dir() else [])):
            probe = directory / f".access-{os.getpid()}.tmp"
            try:
                probe.open("wb").close()
                probe.unlink()
            except OSError as e:
                raise LogAccessError(
                    f"the write-ahead log {self.directory} does not let this process create and delete files in "
                    f"{directory} ({e.strerror or e}): the collector writes and deletes its segments there, and sets "
                    "damaged ones aside in its quarantine (give the directory to the user the collector runs as)"
                ) from None

    def _take_lock(self, holder: dict[str, str]) -> int:
        path = self.directory / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        except PermissionError as e:
            raise LogAccessError(
                f"cannot open the write-ahead log's lock file {path} for writing ({e.strerror}): give the log "
                "directory and its files to the user the collector runs as"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            info = _holder_info(path)
            raise LogInUseError(
                f"the write-ahead log {self.directory} is in use by another collector ({_describe(info)}); "
                "each collector needs a log of its own (--wal-dir)"
            ) from None
        info = {"pid": str(os.getpid()), "host": os.uname().nodename, **holder}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return fd

    def _claim(self, owner: str | None) -> None:
        if owner is None:
            return
        recorded = owner_of(self.directory)
        if recorded is None and (self.directory / OWNER_FILE).exists():
            raise LogOwnedError(f"{self.directory / OWNER_FILE} is unreadable: the log's owner is unknown")
        if recorded is not None and recorded != owner and without_credentials(recorded) == owner:
            recorded = None  # recorded by an earlier version with the server URL's credentials: rewritten
        if recorded is not None and recorded != owner:
            shown = without_credentials(recorded)
            waiting = [path for path in pending_segments(self.directory) if path.stat().st_size]
            quarantine = self.directory / QUARANTINE_DIR
            set_aside = sorted(quarantine.glob(f"*{SUFFIX}")) if quarantine.is_dir() else []
            if waiting:
                held = (
                    f"it holds {len(waiting)} segment(s) not yet stored there; if this store is a copy of that one "
                    f"restored here, delete {self.directory / OWNER_FILE} and its segments are stored here"
                )
            elif set_aside:
                held = f"it holds no segment to store, but {len(set_aside)} set aside in {quarantine}: keep them"
            else:
                held = "it holds no segment: remove the directory to give it to this store"
            raise LogOwnedError(
                f"the write-ahead log {self.directory} belongs to the store {shown}, not {owner} ({held}): "
                + ("or give this collector a log of its own (--wal-dir) and leave this one to that store's collector"
                   if waiting else "give this collector a log of its own (--wal-dir)")
            )  # fmt: skip
        if recorded is None:
            tmp = self.directory / f".{OWNER_FILE}.tmp"
            with tmp.open("w", encoding="utf-8") as f:
                json.dump({"store": owner}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / OWNER_FILE)

    def verify(self) -> None:
        """Raise LogLostError when the log's directory or lock file is no longer this log's."""
        if self._lost is not None:
            raise LogLostError(self._lost)
        if self._lock_fd < 0:
            return
        try:
            same = os.stat(self.directory / LOCK_FILE).st_ino == os.fstat(self._lock_fd).st_ino
        except OSError:
            same = False
        if not same:
            self._lose(f"the write-ahead log {self.directory} was moved or deleted while in use")

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        raise LogLostError(self._lost)

    @property
    def lost(self) -> str | None:
        """Why the log can no longer acknowledge anything, or None."""
        return self._lost

    def release(self) -> None:
        """Give up the lock (after the writer is done with the log); an open segment left unsealed
        (a lost log) is closed."""
        with self._lock:
            if self._file is not None and self._lost is not None:
                self._file.close()
                self._file = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- start-up ----------------------------------------------------------------------------
    def _recover(self) -> None:
        for staging in sorted(self.directory.glob(f"{SPLIT_PREFIX}*")):
            if staging.name.endswith(SPLIT_READY):  # both halves on disk: finish replacing the segment
                original = staging.name.removeprefix(SPLIT_PREFIX).removesuffix(SPLIT_READY) + SUFFIX
                self._finish_split(staging, self.directory / original)
            else:  # a split cut short: the segment is still whole
                shutil.rmtree(staging, ignore_errors=True)
        for leftover in [*self.directory.glob(".*.repaired"), *self.directory.glob("quarantine/.*.tmp")]:
            leftover.unlink(missing_ok=True)  # a repair cut short: the segment is as found, repaired again below
        paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        for path in paths:
            stamp = path.name.split("-", 1)[0]
            if stamp.isascii() and stamp.isdigit():
                self._last_name_ns = max(self._last_name_ns, int(stamp))
        # the segment open when the process stopped: the last opened, never a split's half
        opened = [p for p in paths if is_checked(p) and not is_half(p)]
        newest = opened[-1] if opened else None
        for path in paths:
            data = path.read_bytes()
            if is_checked(path):
                size, records = self._recover_checked(path, data, newest=path == newest)
            else:  # an earlier version's segment, without checksums: as that version replayed it
                size, records = valid_length(data)
                if size < len(data):
                    self._cut(path, size)
            if size == 0:
                path.unlink()
                continue
            self._sealed.append(Segment(path, size, records))
            self._pending_bytes += size

    @staticmethod
    def _cut(path: Path, size: int) -> None:
        """Cut a torn tail: it was never acknowledged."""
        with path.open("r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())

    def _recover_checked(self, path: Path, data: bytes, *, newest: bool) -> tuple[int, int]:
        """(bytes, records) of a checked segment once its torn tail is cut, or once its damage is
        set aside: the original copied to the quarantine with the reason, the segment rewritten
        with its whole records alone (so the engine reads none of the damage), an error logged.
        Only the `newest` segment, the one open when the process stopped, can end in a record a
        crash tore; any other cut short was damaged or copied short, past acknowledged records."""
        scan = scan_checked(data, self.max_bytes, key=key_of(path))
        torn_at, short_at = (scan.torn, None) if newest else (None, scan.torn)
        damaged = [*scan.lost, (short_at, len(data))] if short_at is not None else scan.lost
        if not damaged:
            if torn_at is not None:
                self._cut(path, torn_at)
                logger.warning(
                    "write-ahead log segment %s ended in an incomplete record (bytes %d-%d): cut off, as a write "
                    "that a crash interrupted, never acknowledged (if the log was copied or cut short instead, "
                    "those bytes may have held acknowledged spans)",
                    path, torn_at, len(data),
                )  # fmt: skip
            return scan.size, len(scan.kept)
        lost = ", ".join(f"{start}-{end}" for start, end in damaged)
        lost_bytes = sum(end - start for start, end in damaged)
        torn = f"; an incomplete final record from byte {torn_at} was cut off" if torn_at is not None else ""
        short = (
            f"; it ends part-way through a record at byte {short_at}: the file was cut short, and the records "
            "that followed it, acknowledged, are lost too (how many cannot be told)"
            if short_at is not None
            else ""
        )
        reason = (
            f"segment {path.name} ({len(data)} bytes) is damaged: bytes {lost} ({lost_bytes} bytes, end "
            f"exclusive) are not whole records and were dropped{short}; its {len(scan.kept)} whole records are "
            f"kept and stored{torn}. This file is the segment as found at start.\n"
        )
        target = self._quarantine_copy(path, data, reason)
        # said before the segment is replaced: a process killed between the two would start again
        # on a segment already repaired, with nothing left to say it lost anything
        logger.error(
            "write-ahead log segment %s is damaged: bytes %s of %d lost (%d bytes)%s; %d whole records kept; "
            "the original is in %s",
            path, lost, len(data), lost_bytes, short, len(scan.kept), target,
        )  # fmt: skip
        repaired = b"".join(data[start:end] for start, end in scan.kept)
        tmp = path.with_name(f".{path.name}.repaired")
        tmp.unlink(missing_ok=True)
        _write_durably(tmp, repaired)
        os.replace(tmp, path)
        _sync_dir(self.directory)
        return len(repaired), len(scan.kept)

    def _quarantine_copy(self, path: Path, data: bytes, reason: str) -> Path:
        """A durable copy of a damaged segment's original in the quarantine, with `reason` beside it
        (replaced by a later start's copy of the same original, should this one be cut short; a
        copy of an earlier, different original of the same segment is kept beside it)."""
        self.damaged_at_open += 1
        target_dir = self.directory / QUARANTINE_DIR
        target_dir.mkdir(exist_ok=True, mode=PRIVATE_DIR)
        stem = f"{path.name.removesuffix(SUFFIX)}{DAMAGED}"
        target = target_dir / f"{stem}{SUFFIX}"
        n = 1
        # a copy of another original (the repaired segment damaged again) is kept: a new name
        while target.exists() and target.read_bytes() != data:
            n += 1
            target = target_dir / f"{stem}-{n}{SUFFIX}"
        for done, text in ((target, data), (target.with_suffix(".reason.txt"), reason.encode("utf-8"))):
            tmp = done.with_name(f".{done.name}.tmp")
            tmp.unlink(missing_ok=True)
            _write_durably(tmp, text)
            os.replace(tmp, done)
        _sync_dir(target_dir)
        _sync_dir(self.directory)
        return target

    # -- appending ----------------------------------------------------------------------------
    def append(self, record: bytes | Sequence[bytes], copies: int = 0) -> None:
        """Write one framed record and return once it is on disk (raises LogFullError past the bound).
        The record may come in parts (`record.framed`), the first holding its prefix and checksum.
        `copies`: the bytes the store will copy to insert it beyond its own (its resources, once
        for each of their spans): a segment is also sealed once its records' reach
        `copies_per_segment` (`COPIES_PER_SEGMENT` times its size)."""
        parts = [record] if isinstance(record, (bytes, bytearray)) else list(record)
        size = sum(map(len, parts))
        with self._lock:
            if self._lost is not None:
                raise LogLostError(self._lost)
            if self._pending_bytes + size > self.max_bytes:
                raise LogFullError(f"the write-ahead log holds {self._pending_bytes:,} bytes not yet written")
            if self._records and (
                self._written + size > self.segment_bytes
                or self._copies + copies > self.copies_per_segment
                or time.monotonic() - self._opened_at >= HELD_UP_AGES * self.max_age_s
            ):
                # A segment holds no more than its size: a request as big gets one of its own, so
                # should the engine refuse it for its size no other request shares its fate in the
                # quarantine; nor do the requests before one that would take the segment past its
                # size or its copies past their share (a segment took a request after nearly
                # filling up, to twice its size: an attack review). And none much older than its
                # age while the writer is held up (it seals old segments only when it asks for the
                # next): 20 s of every tenant's requests gathered behind a stalled insert and were
                # set aside with it.
                self._seal()
            if self._file is None:
                self._open()
            assert self._file is not None
            parts[0] = keyed(bytes(parts[0]), self._key)
            self._write_whole(parts)
            self._written += size
            self._copies += copies
            self._records += 1
            self._pending_bytes += size
            self._appended_at.append(time.time())
            generation, end = self._generation, self._written
            file = self._file
            if self._written >= self.segment_bytes or self._copies >= self.copies_per_segment:
                self._seal()
        self._sync(file, generation, end)

    def _write_whole(self, parts: list[bytes]) -> None:
        """Hand the record's `parts` to the OS whole, or not at all: the segment is unbuffered, so a
        write the disk refuses (ENOSPC) fails this append alone, and what it wrote in part is cut
        off again. Left in a buffer, the refused record would reach the disk with a later append's
        flush and be stored, although its sender was told 503 and sends it again."""
        assert self._file is not None
        try:
            for part in parts:
                view = memoryview(part)
                done = 0
                while done < len(view):
                    done += self._file.write(view[done:]) or 0
        except OSError:
            try:
                self._file.truncate(self._written)
                self._file.seek(self._written)
            except OSError as e:
                self._lose(f"segment {self._path} could not be cut back after a failed write: {e}")
            raise

    def _sync(self, file: BinaryIO, generation: int, end: int) -> None:
        with self._sync_lock:
            self._sync_locked(file, generation, end)
            # also when sealing covered this record: a seal that found the file gone set `_lost`
            # before it moved to the next generation
            if self._lost is not None:
                raise LogLostError(self._lost)

    def _sync_locked(self, file: BinaryIO, generation: int, end: int) -> None:
        if generation != self._generation:
            return  # sealed since: sealing flushed, synced and checked it
        if self._synced >= end:
            return  # another append's fsync covered this one
        with self._lock:
            if generation != self._generation:
                return
            file.flush()
            target = self._written
            path = self._path
            fd = os.dup(file.fileno())  # sealing may close the file while this fsync runs
        try:
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            if generation != self._generation:
                return  # sealed meanwhile (and perhaps written and deleted): the seal checked it
            self._check_file(file, path)
            self._synced = max(self._synced, target)

    def _check_file(self, file: BinaryIO, path: Path | None) -> None:
        """The open segment must still be the file at its path: one moved or deleted by someone
        else would take what is acknowledged with it."""
        try:
            same = path is not None and os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
        except OSError:
            same = False
        if not same:
            self._lose(f"segment {path} was moved or deleted while open: the log directory changed under it")

    def _open(self) -> None:
        # names sort in the order segments were opened, whatever the clock does: replay follows
        # it, and only the last can be the segment a crash tore (a clock stepped back a day made
        # an older, sealed segment sort last: cut short, it was taken for a torn tail)
        self._last_name_ns = max(time.time_ns(), self._last_name_ns + 1)
        name = f"{self._last_name_ns:020d}-{secrets.token_hex(4)}{FORMAT_MARK}{SUFFIX}"
        self._path = self.directory / name
        self._key = key_of(self._path)
        self._file = os.fdopen(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE), "wb", 0)
        self._opened_at = time.monotonic()
        self._written = self._records = self._synced = self._copies = 0
        self._appended_at = []

    def _seal(self) -> None:
        """Close the open segment and queue it; the caller holds the lock."""
        if self._file is None or self._path is None:
            return
        file, path = self._file, self._path
        try:
            file.flush()
            if self._fsync:
                os.fsync(file.fileno())
            self._check_file(file, path)  # sets `_lost` before the generation moves on
        finally:
            file.close()
            self._file = None
            self._path = None
            self._generation += 1
        self._sealed.append(Segment(path, self._written, self._records, tuple(self._appended_at)))
        self._ready.notify_all()

    # -- the writer's side ----------------------------------------------------------------------
    def seal_if_old(self) -> None:
        """Seal the open segment when it has waited `max_age_s` (bounds freshness)."""
        with self._lock:
            if self._file is not None and time.monotonic() - self._opened_at >= self.max_age_s:
                self._seal()

    def flush(self) -> None:
        """Seal the open segment now, whatever its age."""
        with self._lock:
            self._seal()

    def next_segment(self, timeout: float) -> Segment | None:
        """The oldest sealed segment (left in place until `done`), or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._sealed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._ready.wait(min(remaining, self.max_age_s))
                if self._file is not None and time.monotonic() - self._opened_at >= self.max_age_s:
                    self._seal()
            return self._sealed[0]

    def done(self, segment: Segment) -> None:
        """The segment is in ClickHouse: forget it and free its bytes."""
        with self._lock:
            if self._sealed and self._sealed[0] == segment:
                self._sealed.popleft()
            else:
                self._sealed.remove(segment)
            self._pending_bytes -= segment.size
        segment.path.unlink(missing_ok=True)

    def quarantine(self, segment: Segment, reason: str) -> Path:
        """Move a segment ClickHouse refuses for good out of the way, with the reason beside it."""
        target_dir = self.directory / QUARANTINE_DIR
        target_dir.mkdir(exist_ok=True, mode=PRIVATE_DIR)
        target = target_dir / segment.path.name
        os.replace(segment.path, target)
        target.with_suffix(".reason.txt").write_text(reason, encoding="utf-8")
        with self._lock:
            self._sealed.remove(segment)
            self._pending_bytes -= segment.size
        return target

    def split(self, segment: Segment) -> list[Segment]:
        """Replace a sealed segment of two records or more by its two halves (half its records
        each), sealed segments of their own in its place in the order (their names sort where its
        name did, and carry it: `<name>.0`, `<name>.1`), and return them. Each half is written and
        synced in a directory of its own first, which is then marked ready: a crash before that
        leaves the segment whole, and after it the next start finishes the split, so the records
        are never both in the segment and in a half.

        An OSError before the halves are ready (a full disk: a split needs the segment's size
        again) leaves the segment whole and in the log, and is raised; one while the ready halves
        replace it loses the log (`LogLostError`): the next start finishes the split."""
        data = memoryview(segment.path.read_bytes())[: segment.size]
        frames = list(_frames(data))
        if len(frames) < 2:
            raise ValueError(f"segment {segment.token} has {len(frames)} record: nothing to split")
        middle = len(frames) // 2
        bounds = ((frames[0][0], frames[middle - 1][1]), (frames[middle][0], frames[-1][1]))
        staging = self.directory / f"{SPLIT_PREFIX}{segment.path.stem}"
        ready = staging.with_name(staging.name + SPLIT_READY)
        names = [f"{segment.path.stem}.{i}{SUFFIX}" for i in range(2)]
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(mode=PRIVATE_DIR)
            for name, (start, end) in zip(names, bounds, strict=True):
                _write_durably(staging / name, data[start:end])
            _sync_dir(staging)
            os.replace(staging, ready)
            _sync_dir(self.directory)
        except OSError:
            for leftover in (staging, ready):
                shutil.rmtree(leftover, ignore_errors=True)
            raise
        acknowledged = segment.acknowledged_at if len(segment.acknowledged_at) == len(frames) else ()
        halves = [
            Segment(self.directory / name, end - start, count, acknowledged[first : first + count])
            for name, (start, end), first, count in zip(
                names, bounds, (0, middle), (middle, len(frames) - middle), strict=True
            )
        ]
        # the halves are the log's from here: the segment is never inserted again in this process
        with self._lock:
            at = self._sealed.index(segment)
            del self._sealed[at]
            for half in reversed(halves):
                self._sealed.insert(at, half)
        try:
            self._finish_split(ready, segment.path)
        except OSError as e:
            self._lose(f"segment {segment.token} could not be replaced by its halves ({e}); the next start does it")
        return halves

    def _finish_split(self, ready: Path, original: Path) -> None:
        """Move a ready split's halves into the log and delete the segment they replace."""
        for half in sorted(ready.iterdir()):
            os.replace(half, self.directory / half.name)
        _sync_dir(self.directory)
        original.unlink(missing_ok=True)
        _sync_dir(self.directory)
        ready.rmdir()

    def is_pending(self, segment: Segment) -> bool:
        """True while `segment` waits for the writer."""
        with self._lock:
            return segment in self._sealed

    @property
    def pending_bytes(self) -> int:
        """Bytes acknowledged but not yet in ClickHouse."""
        return self._pending_bytes

    @property
    def sealed_count(self) -> int:
        return len(self._sealed)

    def sealed_names(self) -> frozenset[str]:
        """The file names of the sealed segments waiting for the writer (at open: those a previous
        process left)."""
        with self._lock:
            return frozenset(s.path.name for s in self._sealed)

    def close(self) -> None:
        """Seal the open segment (it stays on disk for the writer or the next start)."""
        with self._lock:
            self._seal()
