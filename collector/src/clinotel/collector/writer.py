"""The writer: sealed log segments into ClickHouse, in order, one INSERT … SELECT each.

A segment leaves the log only after ClickHouse accepted it. Connection failures are retried with
backoff for as long as they last (the log holds the data; its size bound pushes back on clients).
A full store disk is retried the same way. A segment ClickHouse itself refuses is retried a few
times, then moved to the log's quarantine with the reason: set aside for a person, never silently
dropped. When the engine's reader refused one of its requests, it is first split in two halves
that take its place in the log (`WriteAheadLog.split`), and a half refused once is split again,
until that request is alone: only it is set aside, and the other requests of its segment, every
other tenant's among them, are stored.

An embedded engine that stopped after a fatal error of its own (a crash in one of its threads)
refuses everything for the rest of the process: the writer stops (`StoreLostError`), every
segment still in the log, so that the collector stops acknowledging and its restart stores them.

The writer thread never dies quietly: whatever stops it (the log moved or deleted under it, the
engine lost, a bug) is logged and handed to `on_failure`, and the collector stops acknowledging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from clinotel.collector.log.wal import LogLostError, Segment, WriteAheadLog
from clinotel.collector.store.segments import SegmentStore
from clinotel.model.store import first_line
from clinotel.model.threads import guarded

__all__ = ["STALL_ALARM_S", "SegmentWriter", "StoreLostError", "WriterStats"]

logger: Final = logging.getLogger("clinotel.collector")

MAX_REFUSALS: Final = 3
PARTLY_STORED: Final = (
    "The engine writes a segment's tables one after another, so some of them may hold its spans "
    "already (otel_traces first). Once the cause is fixed, stop the collector and move this "
    "segment back into the log directory under its own name: its name is its insert's "
    "deduplication token, so only what is missing is stored. Do it soon: each table remembers "
    "the tokens of its last 10,000 parts, and an insert writes a part for every tenant and day "
    "it holds."
)
"""Written beside a segment set aside: what it may have left in the store, and how to finish it."""
BACKOFF_S: Final = (0.1, 0.5, 1.0, 2.0, 5.0)
DRAIN_DEADLINE_S: Final = 30.0
STOP_WAIT_S: Final = 30.0
"""How long `stop` waits for the thread to end before its drain."""
RELIEVE_AFTER_S: Final = 5.0
"""A segment kept out this long asks the store to free what it can (again at most this often)."""
STALL_ALARM_S: Final = 60.0
"""A segment kept out this long is reported as an error (again at most this often), not a warning."""


class StoreLostError(RuntimeError):
    """The store will take nothing more from this process; what is in the log stays there."""


def store_lost_reason(error: Exception) -> str:
    """Why the collector stops when the embedded engine failed (what `error` said, first line)."""
    return f"the embedded engine stopped after a fatal error of its own ({first_line(error)})"


@dataclass
class WriterStats:
    """What the writer did, for /metrics and the health dashboard."""

    segments: int = 0
    records: int = 0
    retries: int = 0
    quarantined: int = 0
    splits: int = 0
    """Refused segments split in two to find the request refused."""
    insert_seconds: list[float] = field(default_factory=list)
    """Recent inserts' durations (for quantiles); the totals below never shrink."""
    freshness_seconds: list[float] = field(default_factory=list)
    """Per record: from its acknowledgement to the end of the insert that made it queryable."""
    insert_seconds_total: float = 0.0
    freshness_seconds_total: float = 0.0
    stalled_since: float | None = None
    """`time.monotonic()` of the first failed try of the segment in hand, None while inserts work."""
    stalled_by: str = ""
    """The first line of the last error of the segment in hand, while `stalled_since` is set."""
    reliefs: int = 0
    """Times the store was asked to free memory for a segment it kept out."""

    def observe(self, seconds: float, segment: Segment) -> None:
        self.insert_seconds.append(seconds)
        self.insert_seconds_total += seconds
        now = time.time()
        fresh = [now - t for t in segment.acknowledged_at]
        self.freshness_seconds.extend(fresh)
        self.freshness_seconds_total += sum(fresh)
        for samples in (self.insert_seconds, self.freshness_seconds):
            if len(samples) > 100_000:
                del samples[:50_000]


class SegmentWriter:
    """Moves sealed segments from the log into `otel_traces`."""

    def __init__(
        self, wal: WriteAheadLog, store: SegmentStore, on_failure: Callable[[str], None] | None = None
    ) -> None:
        """`store` says how a segment reaches ClickHouse (`clinotel.collector.store.segments`);
        `on_failure` hears why the thread stopped, if it ever stops by itself."""
        self.wal = wal
        self.store = store
        self.stats = WriterStats()
        self._stop = threading.Event()
        # One segment in flight at a time, whoever writes it (the thread or a drain): a segment
        # is taken, written and released under this lock, so none is written twice at once.
        self._turn = threading.Lock()
        self._thread: threading.Thread | None = None
        self._on_failure = on_failure
        self.failure: str | None = None
        """Why the thread stopped by itself; None while it runs (or was stopped)."""
        self.store_lost = False
        """The store said it will take nothing more from this process (`StoreLostError`)."""

    def write(self, segment: Segment) -> None:
        """Insert one segment; raises what ClickHouse raised."""
        started = time.perf_counter()
        self.store.insert(segment)
        self.stats.observe(time.perf_counter() - started, segment)
        self.stats.segments += 1
        self.stats.records += segment.records

    def drain(self, give_up_after_s: float = DRAIN_DEADLINE_S) -> int:
        """Write every sealed segment now (tests, shutdown), retrying failures until the
        deadline; returns how many were written. What is left stays in the log for next time."""
        self.wal.flush()
        deadline = time.monotonic() + give_up_after_s
        written = 0
        while (outcome := self._next(0.0, deadline)) is not None and outcome:
            written += 1
        return written

    def _next(self, timeout: float, deadline: float | None = None) -> bool | None:
        """Write the oldest sealed segment: None when there is none, else whether it left the log."""
        segment = self.wal.next_segment(timeout)
        if segment is None:
            return None
        # a drain waits for the thread's insert no longer than its deadline: an insert in a
        # failed engine may never end
        if not self._turn.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            return False
        try:
            if not self.wal.is_pending(segment):
                return True  # written by the other caller meanwhile
            return self._write_with_retries(segment, deadline)
        finally:
            self._turn.release()

    def _write_with_retries(self, segment: Segment, deadline: float | None = None) -> bool:
        """Insert until it works; the thread gives up when stopped, a drain at its deadline."""
        refusals = attempt = 0
        relieved_at = alarmed_at = None

        def keep_trying() -> bool:
            return time.monotonic() < deadline if deadline is not None else not self._stop.is_set()

        while keep_trying():
            try:
                self.write(segment)
            except Exception as e:  # every failure is retried or quarantined
                self.stats.retries += 1
                if not segment.path.exists():
                    raise LogLostError(
                        f"segment {segment.path} vanished before it was stored: the log directory changed under "
                        "this collector"
                    ) from e
                if self.store.is_lost(e):
                    self.store_lost = True
                    raise StoreLostError(
                        f"{store_lost_reason(e)}; segment {segment.token} and every later one stay in the log, and "
                        "the collector's next start stores them"
                    ) from e
                if self.store.is_refusal(e):
                    refusals += 1
                    # a half's refusal is its parent's, already tried: once is enough
                    if refusals >= (1 if segment.is_half else MAX_REFUSALS):
                        if segment.records > 1 and self.store.is_request_fault(e) and self._split(segment, e):
                            return True
                        target = self.wal.quarantine(segment, f"{type(e).__name__}: {e}\n\n{PARTLY_STORED}")
                        self.stats.quarantined += 1
                        self.stats.stalled_since = None
                        logger.error("segment %s refused %d times, moved to %s", segment.token, refusals, target)
                        return True
                now = time.monotonic()
                since = self.stats.stalled_since = self.stats.stalled_since or now
                self.stats.stalled_by = first_line(e)
                if now - since >= RELIEVE_AFTER_S and (relieved_at is None or now - relieved_at >= RELIEVE_AFTER_S):
                    relieved_at = now
                    freed = self.store.relieve(e)
                    if freed is not None:
                        self.stats.reliefs += 1
                        logger.warning("segment %s kept out for %.0f s: freed %s", segment.token, now - since, freed)
                if now - since >= STALL_ALARM_S and (alarmed_at is None or now - alarmed_at >= STALL_ALARM_S):
                    alarmed_at = now
                    logger.error(
                        "segment %s not stored for %.0f s, still retrying (%s): acknowledged spans wait in the "
                        "log, which refuses new ones when full; %s",
                        segment.token,
                        now - since,
                        first_line(e),
                        self.store.stuck_hint(e),
                    )
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                logger.warning("insert of segment %s failed (%s); retrying in %.1f s", segment.token, e, delay)
                time.sleep(delay) if deadline is not None else self._stop.wait(delay)
                continue
            self.stats.stalled_since = None
            self.wal.done(segment)
            return True
        return False

    def _split(self, segment: Segment, error: Exception) -> bool:
        """Replace a refused segment by its halves in the log; False when the log could not (it is
        then set aside whole, as before halving was tried)."""
        try:
            halves = self.wal.split(segment)
        except OSError as e:
            logger.error("segment %s could not be split (%s): it is set aside whole", segment.token, e)
            return False
        self.stats.splits += 1
        logger.error(
            "segment %s (%d requests) refused (%s): split into %s and %s, each stored or set aside on its own",
            segment.token, segment.records, first_line(error), *(h.token for h in halves),
        )  # fmt: skip
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wal.verify()
            self._next(timeout=0.2)

    def _died(self, reason: str) -> None:
        self.failure = reason
        if self._on_failure is not None:
            self._on_failure(reason)

    @property
    def alive(self) -> bool:
        """The thread runs (or has not been started)."""
        return self.failure is None and (self._thread is None or self._thread.is_alive() or self._stop.is_set())

    def start(self) -> None:
        self._thread = guarded(self._run, "clinotel-writer", self._died, expected=(LogLostError, StoreLostError))
        self._thread.start()

    def stop(self, drain: bool = True, wait: bool = True) -> None:
        """Stop the thread; with `drain`, write what the log holds first. Without `wait`, the
        thread is not waited for (a lost engine: its insert in flight may never end)."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=STOP_WAIT_S)
        if drain:
            # an insert of the thread's still in flight is waited for up to the drain's deadline
            self.drain(DRAIN_DEADLINE_S)
            if self.wal.pending_bytes:  # a full disk, an engine refusing: said, not left to be guessed
                logger.warning(
                    "stopped with %d bytes of acknowledged spans not stored (%s): they stay in the log %s, "
                    "and the next start stores them",
                    self.wal.pending_bytes,
                    self.stats.stalled_by if self.stats.stalled_since is not None else "the drain's deadline passed",
                    self.wal.directory,
                )
