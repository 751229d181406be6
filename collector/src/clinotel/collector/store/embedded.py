"""One way to reach ClickHouse: clickhouse-connect, on the embedded engine or a server; and what
can be known about an embedded store before opening it (whether it exists, who holds it, whether
it is writable, which write-ahead log it owns).

The embedded engine allows one process per data directory and writes to it even to read, so a
store held by a running collector, or on a read-only mount, is refused here with what to do
instead, before chDB is started at all.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from clinotel.collector.log.wal import PRIVATE_DIR
from clinotel.collector.store.engine_import import import_engine
from clinotel.model.sql import identifier, literal
from clinotel.model.store import (
    DEFAULT_DATA_DIR,
    StoreError,
    connect_server,
    error_line,
    first_line,
    reach_error,
    shown_url,
    without_credentials,
)
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_ENGINE_MEMORY_MB",
    "DIAGNOSTIC_LOGS",
    "DURABLE_PART_SETTINGS",
    "ENGINE_CONFIG",
    "MAX_ENGINE_MEMORY_MB",
    "MAX_SEGMENT_BYTES",
    "MERGE_TREE_SETTINGS",
    "MIN_ENGINE_MEMORY_MB",
    "PACKED_PART_BYTES",
    "PACKED_PART_SETTING",
    "PLANNER_SETTINGS",
    "STORE_RECORD",
    "StoreError",
    "check_embedded",
    "connect",
    "default_wal_dir",
    "dsn_for",
    "engine_config",
    "engine_options",
    "error_line",
    "full_parts",
    "holder_pid",
    "legacy_wal_dir",
    "reach_error",
    "record_log",
    "recorded_log",
    "segment_bytes_for",
    "settings_clause",
    "store_id",
]

STORE_RECORD: Final = "clinotel-store.json"
"""In an embedded store's directory: the write-ahead log of each database it holds."""
_ENGINE_STATUS: Final = "status"
"""The file a running engine keeps locked in its data directory (with its process id inside)."""

DEFAULT_ENGINE_MEMORY_MB: Final = 768
"""The embedded engine's own memory (its heap: inserts, merges, reads, caches), a hard cap. The
process adds what the cap does not cover: the engine's code (chDB's library: ~320 MB resident
once ingesting, ~130-250 MB since the collector gives back what only start-up ran, `code_pages`)
and the Python interpreter with the collector. Measured on 2026-12-02 (ingest benchmark, 8 MiB
segments, 8 readers), before merges ran column by column (`MERGE_TREE_SETTINGS`): at 512 the writer
stalled, one segment retried for over 13 minutes, merges and the insert failing each other at the
cap; at 768 the process peaked at 849 MB; at 1024, 909 MB."""
MIN_ENGINE_MEMORY_MB: Final = 448
"""The smallest cap taken: a 1 MiB log segment's insert (~40 MB at its peak) beside the 384 MB the
engine holds anyway, with a little to spare (`segment_bytes_for`)."""
MAX_ENGINE_MEMORY_MB: Final = 1 << 24
"""16 TiB: past any machine (and a figure the engine's 64-bit settings hold)."""
MAX_SEGMENT_BYTES: Final = 8 << 20
"""The log's segment size when the engine has room for it (and with a ClickHouse server)."""
_ENGINE_BESIDE_INSERT_MB: Final = 384
_INSERT_BYTES_PER_SEGMENT_BYTE: Final = 40


def segment_bytes_for(memory_bytes: int) -> int:
    """The largest log segment (8 MiB, halved down to 1 MiB) whose INSERT fits in an engine capped
    at `memory_bytes` beside what the engine holds anyway. Measured on 2026-12-03 with the demo's
    mix: an insert takes ~40 times its segment at its peak through every view (8 MiB: 256-286 MB,
    4 MiB: 120-180, 1 MiB: 40-55; 223-232 MB for 8 MiB since 2026-12-04, when the flattening
    stopped copying the segment at each level: the factor keeps that margin for wider spans than
    the demo's), and an idle engine counts 76-213 MB (parts, indexes, merges
    finishing); merges under load and a reader need more: 384 MB is left for them. An insert that
    does not fit beside them fails on the engine's total and is retried, and a segment that can
    never fit keeps every later one out of the store: at 512 MB with 8 MiB segments one was retried
    for minutes while the log filled."""
    room = memory_bytes - (_ENGINE_BESIDE_INSERT_MB << 20)
    size = MAX_SEGMENT_BYTES
    while size > 1 << 20 and size * _INSERT_BYTES_PER_SEGMENT_BYTE > room:
        size //= 2
    return size


DURABLE_PART_SETTINGS: Final = {"fsync_after_insert": "1", "fsync_part_directory": "1"}
"""`--fsync-parts`: every part an insert writes is on disk (its file, then its directory) before the
INSERT returns, so before the writer deletes the log segment it came from. Without them the engine
leaves an insert's parts to the kernel's write-back (ClickHouse's default), and a power cut in the
next half minute can lose spans the log had already let go of; a process crash loses nothing
either way (the kernel still writes its pages). Merged parts are synced with or without it
(`MERGE_TREE_SETTINGS`). Every table's inserts are synced, the rollups' refresh and the
collector's own metrics included. Measured 2026-12-05 on this project's virtual disk (8 MiB
segments of the demo's spans through the collector's pipeline, alternated): 4 syncs a packed part,
about 28 an insert, 1-7 % of its wall time (docs/collector.md); a disk whose fsync is slower pays
more."""

MERGE_NICE: Final = 10
"""The nice value of the engine's merge threads. Merging the parts each insert leaves costs about as
much CPU as the inserts (docs/collector.md, "Where a sustained run's CPU goes"); at the process's
own priority the merges of a backlog took the core the writer's insert and the receiver need, and
freshness suffered most right after a burst. Lowered, they take what the writer leaves; raising a
nice value needs no privilege."""


PLANNER_SETTINGS: Final = {"optimize_and_compare_chain": "0"}
"""Query settings of the sessions that run clinotel's SQL on the embedded engine (its own client,
which the evaluator and the rollups use; the read port's readers) and of a server's reader profile
(`server_readers`); not of a client of a ClickHouse server, which may be a read port that refuses
settings. The analyzer's compare-chain rewrite (from a chain such as `a < b AND b < 5` it adds `a <
5`, for index use) hashes the query tree under each AND, layers below included (ClickHouse names the
hashing its main cost and bounds it only at 5 million nodes, `optimize_and_compare_chain_max_hash_work`):
over the layered statistical SQL an AND at the top of the canary rules' interval cost about 11 ms of
planning. Measured 2026-12-07 on a demo's store at its last hour, interleaved: one pass over the 30
default rules 527 -> 489 ms (the three canary rules 58-68 -> 40-54 ms each); at 10M spans (25
rounds interleaved) the five fairness tables 4-8 ms and the kill criteria 5 ms faster by median, of
78-106; the same rows from every panel and rule, and the same query trees (a review compared every
panel, rule, view and refresh). clinotel's SQL compares no column with another in a chain that
reaches a literal, where the rewrite would help. The setting exists from ClickHouse 25.2.

Tried and not kept (2026-12-07): `query_plan_merge_expressions = 0` (the layers' expression steps
not fused) took a tenth to a quarter off every rollup panel's and rule's planning, and cost a
drill-down its PREWHERE: a filter on the span name then read every attribute of every span in range,
25-28 times as long (the change annotations at 10M spans 183 -> 5,240 ms); the engine's query
condition cache hid it from a benchmark that repeats a query unchanged (test_reader checks the
PREWHERE through the read port)."""


def engine_options(memory_bytes: int) -> dict[str, str]:
    """The embedded engine's server settings for a memory cap of `memory_bytes` (they take effect
    when the process opens its engine, and are ignored by later connections): the cap itself, kept
    against what the allocator actually holds (the engine's memory worker corrects its count every
    100 ms and returns freed pages, instead of the container's figure, which counts other
    processes), half of it at most for merges, and caches sized to it (ClickHouse's defaults, 5 GiB
    each, assume a server of its own); and the `PLANNER_SETTINGS` of the client that opens it."""
    cache = max(memory_bytes // 8, 16 << 20)
    return {
        "max_server_memory_usage": str(memory_bytes),
        "memory_worker_period_ms": "100",
        "memory_worker_use_cgroup": "0",
        "memory_worker_correct_memory_tracker": "1",
        "merges_mutations_memory_usage_soft_limit": str(memory_bytes // 2),
        "mark_cache_size": str(cache),
        "index_mark_cache_size": str(cache // 4),
        "primary_index_cache_size": str(cache // 2),
        "index_uncompressed_cache_size": "0",
        "uncompressed_cache_size": "0",
        "os_threads_nice_value_merge_mutate": str(MERGE_NICE),
        **PLANNER_SETTINGS,
    }


PACKED_PART_BYTES: Final = 32 << 20
"""Parts with less data than this (uncompressed) are written as one file (`MERGE_TREE_SETTINGS`):
every part a collector's insert writes (an 8 MiB segment's `otel_traces` part holds about 10 MB),
not the merged or refreshed parts that grow past it."""
ENGINE_CONFIG: Final = "clinotel-engine.xml"
"""In an embedded store's directory: the engine settings that only a configuration file can set."""
PACKED_PART_SETTING: Final = "min_bytes_for_full_part_storage"
"""The MergeTree setting under which (bytes of data) a part is written packed, in one file."""
MERGE_TREE_SETTINGS: Final = {
    "vertical_merge_algorithm_min_rows_to_activate": "1",
    "vertical_merge_algorithm_min_columns_to_activate": "1",
    "merge_selector_base": "10",
    PACKED_PART_SETTING: str(PACKED_PART_BYTES),
    "min_rows_to_fsync_after_merge": "1",
}
"""Every merge column by column (vertical): a horizontal merge holds a compression buffer and a
block of every column of `otel_traces` at once, and one merge of a few parts took 400-500 MB of
the engine's memory right after inserts (measured 2026-12-02, 8 MiB segments): beside an insert
(~280 MB) that passed a 768 MB cap, and at 512 MB the writer and the merges kept failing each
other. Column by column, the engine's count between inserts stayed under ~250 MB.

Merges wait for about ten parts of a size rather than five (`merge_selector_base`, 5 by
default): each row is merged fewer times on its way to a large part. With a collector's inserts
(8 MiB segments of the demo's spans, one after another, merges run until none was left), the
merges' CPU per span fell from 18.0 to 11.3 us over 4.4M spans and from 14.6-15.8 to 5.5 over
0.9M (2026-12-05): on two cores, the merges took as much CPU as the inserts. The cost is a few
more parts per partition between merges (at most about ten of a size), which a query reads.

A part under 32 MiB of data (`PACKED_PART_BYTES`) is one file, `data.packed`, instead of about
fourteen (packed part storage: `min_bytes_for_full_part_storage`). Each insert writes a part per
table and per (tenant, day) it touches, so a collector created ~90 files for each segment, and
creating them was a fifth of the insert's CPU on a file system that looks at each recently freed
inode before reusing it (ext4 without a journal: measured 2026-12-05, 408 -> 362 ms a segment by
median, kernel 81 -> 43 ms). A packed part is assembled in memory before it is written, hence the
bound: the large parts of merges, of the rollups' refresh and of a migration's copy are written as
before. An engine from before packed storage was open-sourced (mid-2026; chDB is pinned to 26.9)
cannot read such a part: the store is not for an older chDB. The rollups are written full
(`full_parts`).

Every merged part is synced to disk before the merge replaces its sources
(`min_rows_to_fsync_after_merge` 1). This engine deletes the parts a merge replaced at once
(`old_parts_lifetime` 0, where a ClickHouse server keeps them 8 minutes for this reason): without
the sync a power cut within the kernel's write-back (about 30 s) of a merge could take the merged
rows with it, of any age, not only the latest inserts."""


def settings_clause(engine_full: str) -> str:
    """The ` SETTINGS …` clause at the end of a table's `engine_full` (`system.tables`), or `''`."""
    at = engine_full.rfind(" SETTINGS ")
    return engine_full[at:] if at >= 0 else ""


def full_parts(client: Any, database: str, tables: Iterable[str]) -> list[str]:
    """Make `tables` (of `database`) write every part full, never packed (their own
    `PACKED_PART_SETTING` 0 over the engine's `PACKED_PART_BYTES`); the tables changed, those
    already so left as they are (an ALTER rewrites a table's metadata). For the rollups: written off
    the insert path, a whole refresh at a time, and read by most dashboard panels, whose reads of
    packed parts cost more (30M spans, 24 parts a rollup, 2026-12-05: 123 rollup panels 1,399 ms
    in all packed against 1,326 full, the small ones about a millisecond each, growing with the
    parts a store keeps). Their existing parts stay packed until the refresh replaces them."""
    changed = []
    for table in tables:
        engine = client.command(
            f"SELECT engine_full FROM system.tables WHERE database = {literal(database)} AND name = {literal(table)}"
        )
        if f"{PACKED_PART_SETTING} = 0" not in settings_clause(str(engine)).removeprefix(" SETTINGS ").split(", "):
            name = f"{identifier(database)}.{identifier(table)}"
            client.command(f"ALTER TABLE {name} MODIFY SETTING {PACKED_PART_SETTING} = 0")
            changed.append(table)
    return changed


DIAGNOSTIC_LOGS: Final = ("query_log", "query_views_log", "part_log")
"""The engine's own logs `connect(system_logs=True)` keeps in `system`: every query with its CPU
and memory, every view an insert ran, every part written and merged. Off in a collector: they
cost CPU and disk, and they hold every reader's query text, whichever tenant sent it."""


def engine_config(data_dir: Path, *, system_logs: bool = False, fsync_parts: bool = False) -> Path:
    """Write the embedded engine's configuration file into `data_dir` (MergeTree settings: they
    have no command-line form; with `system_logs`, the `DIAGNOSTIC_LOGS` too; with `fsync_parts`,
    the `DURABLE_PART_SETTINGS`); its path, for the engine's `config-file` option."""
    merge_tree = {**MERGE_TREE_SETTINGS, **(DURABLE_PART_SETTINGS if fsync_parts else {})}
    items = "".join(f"<{k}>{v}</{k}>" for k, v in merge_tree.items())
    logs = "".join(f"<{t}><database>system</database><table>{t}</table></{t}>" for t in DIAGNOSTIC_LOGS)
    text = f"<clickhouse><merge_tree>{items}</merge_tree>{logs if system_logs else ''}</clickhouse>\n"
    path = data_dir / ENGINE_CONFIG
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = data_dir / f".{ENGINE_CONFIG}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def dsn_for(data_dir: Path | None = None, url: str | None = None) -> str:
    """`chdb:///abs/path` for the embedded engine, or the server URL as given."""
    if url is not None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            # without a scheme the whole text is shown: never the user and password in it
            shown = scheme or (shown_url(url) if url.startswith("//") else url.rpartition("@")[2])
            raise StoreError(f"a ClickHouse server URL starts with http:// or https://, not {shown!r}")
        return url
    path = (data_dir or DEFAULT_DATA_DIR).resolve()
    return f"chdb://{path}"


def store_id(data_dir: Path | None, url: str | None, database: str) -> str:
    """The name a write-ahead log records as its owner: the store and the database it feeds (a
    server by its address, never the credentials in its URL: they would be written to the log's
    directory, and a changed password would orphan the log)."""
    return f"{without_credentials(dsn_for(data_dir, url)).rstrip('/')}#{database}"


def default_wal_dir(data_dir: Path | None, url: str | None, database: str) -> Path:
    """Where a store's log goes when no --wal-dir is given: beside the data directory, named after
    it (`data` → `data.wal`); for a server, `.clinotel/<host>-<port>.wal`. A database other than
    `clinotel` gets its name in the log's."""
    suffix = "" if database == DEFAULT_DATABASE else f".{database}"
    if url is not None:
        parts = urlsplit(url)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{parts.hostname or 'server'}-{parts.port or 'default'}")
        return (Path(".clinotel") / f"{name}{suffix}.wal").resolve()
    path = (data_dir or DEFAULT_DATA_DIR).resolve()
    return path.with_name(f"{path.name}{suffix}.wal")


def legacy_wal_dir(data_dir: Path | None) -> Path:
    """Where earlier versions put every store's log by default: `wal` beside the data directory,
    named after nothing (so two stores in one folder shared it)."""
    return (data_dir or DEFAULT_DATA_DIR).resolve().parent / "wal"


# -- the embedded store's record of its logs ----------------------------------------------------
def recorded_log(data_dir: Path, database: str) -> Path | None:
    """The log the embedded store at `data_dir` recorded for `database`, if any."""
    try:
        logs = json.loads((data_dir / STORE_RECORD).read_text(encoding="utf-8")).get("logs", {})
    except (OSError, ValueError, AttributeError):
        return None
    value = logs.get(database) if isinstance(logs, dict) else None
    return Path(value) if isinstance(value, str) else None


def record_log(data_dir: Path, database: str, wal_dir: Path) -> None:
    """Record in the embedded store that `wal_dir` is the log of `database`."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    path = data_dir / STORE_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or not isinstance(record.get("logs"), dict):
        record = {"logs": {}}
    record["logs"][database] = str(wal_dir.resolve())
    tmp = data_dir / f".{STORE_RECORD}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- before opening an embedded store -------------------------------------------------------------
def holder_pid(data_dir: Path) -> int | None:
    """The process id of another process running the engine on `data_dir`, or None."""
    status = data_dir / _ENGINE_STATUS
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            match = re.search(rb"PID: (\d+)", os.pread(fd, 256, 0))
            pid = int(match.group(1)) if match else -1
            return None if pid == os.getpid() else pid  # this process's own engine is no obstacle
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_address(data_dir: Path, database: str) -> str | None:
    """The read address a running collector on this store announced in its log's lock."""
    from clinotel.collector.log.wal import holder_of

    log = recorded_log(data_dir, database)
    info = holder_of(log) if log is not None else None
    return info.get("read") if info else None


def _held(path: Path, pid: int) -> StoreError:
    """The refusal of a store another process (`pid`, or -1 when unknown) runs the engine on."""
    who = f"process {pid}" if pid > 0 else "another process"
    return StoreError(
        f"the store {path} is held by {who} (a running collector?): the embedded engine allows one "
        "process per data directory"
    )


def check_embedded(data_dir: Path, database: str, *, reading: bool, held_advice: str | None = None) -> None:
    """Refuse, with what to do instead, an embedded store that cannot be opened now: missing (when
    `reading`: a reader creates nothing), held by another process, or not writable. `held_advice`:
    what a reader should do when a collector holds the store, instead of reading through its port."""
    path = data_dir.resolve()
    if reading:
        if not path.exists():
            raise StoreError(
                f"no clinotel store at {path}: `clinotel serve` or `clinotel schema apply` creates it; or read "
                "a running collector's with --server URL"
            )
        if not (path / "metadata").is_dir():
            raise StoreError(f"{path} is not a clinotel store (no embedded ClickHouse data in it)")
        if not (path / "metadata" / f"{database}.sql").exists():
            raise StoreError(
                f"the store at {path} has no database {database!r} (no clinotel store here yet? "
                "`clinotel serve` or `clinotel schema apply` creates it)"
            )
    elif path.exists() and not path.is_dir():
        raise StoreError(f"{path} is not a directory")
    pid = holder_pid(path) if path.is_dir() else None
    if pid is not None:
        who = f"process {pid}" if pid > 0 else "another process"
        if not reading:
            raise _held(path, pid)
        if held_advice is not None:
            raise StoreError(f"the store {path} is held by {who}, a running collector: {held_advice}")
        read = _read_address(path, database)
        how = f"--server {read}" if read else "--server URL (its --http address)"
        raise StoreError(
            f"the store {path} is held by {who}, a running collector: the embedded engine allows one process "
            f"per data directory, so read through the collector with {how}"
        )
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), None)
    read_only = existing is not None and bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    if existing is not None and (read_only or not os.access(existing, os.W_OK)):
        why = "is on a read-only file system" if read_only else "is not writable"
        remedy = "mount it read-write" if read_only else "give it to this user"
        if existing != path:  # the store is to be created: its nearest existing parent refuses it
            create = (
                "create it on a writable file system" if read_only else "create the directory and give it to this user"
            )
            raise StoreError(
                f"cannot create the store {path}: {existing} {why} (give a --data-dir this user can write, or {create})"
            )
        if not reading:
            raise StoreError(f"the store {path} {why}: the collector writes its data there ({remedy})")
        raise StoreError(
            f"the store {path} {why}: the embedded engine writes to its directory even to read; copy it to a "
            "writable place, or read it through a running collector or server with --server URL"
        )


def connect(
    data_dir: Path | None = None,
    url: str | None = None,
    database: str | None = None,
    *,
    memory_bytes: int = DEFAULT_ENGINE_MEMORY_MB << 20,
    system_logs: bool = False,
    fsync_parts: bool = False,
) -> Any:
    """A clickhouse-connect client: the embedded engine on `data_dir` (created when missing, its
    memory capped at `memory_bytes`, with `system_logs` its `DIAGNOSTIC_LOGS` kept and with
    `fsync_parts` every inserted part synced to disk, when this call starts the process's engine:
    later calls share it as it was started), or the server at `url` with user and password from
    CLICKHOUSE_USER and CLICKHOUSE_PASSWORD; `database` is the current database of its queries."""
    import clickhouse_connect  # lazy: a heavy import, and chDB with it

    dsn = dsn_for(data_dir, url)
    if url is None:
        import_engine()
        path = Path(dsn.removeprefix("chdb://"))
        check_embedded(path, database or DEFAULT_DATABASE, reading=False)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
            config = engine_config(path, system_logs=system_logs, fsync_parts=fsync_parts)
            options = {**engine_options(memory_bytes), "config-file": str(config)}
            return clickhouse_connect.get_client(dsn=dsn, database=database or "", chdb_options=options)
        except Exception as e:
            # two processes past the check at once: the engine's own lock on its status file
            # refuses the later one, with a message that names the engine's options, not the holder
            pid = holder_pid(path)
            if pid is not None:
                raise _held(path, pid) from e
            raise StoreError(f"cannot open the embedded store {path}: {first_line(e)}") from e
    assert url is not None
    return connect_server(url, database)
