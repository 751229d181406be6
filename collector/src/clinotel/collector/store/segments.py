"""How a log segment reaches ClickHouse: a `SegmentStore` per kind of store. The writer owns the
order, the retries and the quarantine; a store owns the INSERT and says which failures are
ClickHouse refusing the segment (retried a few times, then set aside) rather than ClickHouse
being out of reach (retried for as long as it lasts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final, Protocol

from clinotel.collector.log.wal import Segment
from clinotel.collector.store.pipeline import EarlierPipeline, Pipeline
from clinotel.model.store import first_line

__all__ = [
    "EmbeddedSegments",
    "SegmentStore",
    "ServerSegments",
    "engine_failed",
    "engine_full",
    "memory_limit_exceeded",
    "out_of_space",
    "request_fault",
]

logger: Final = logging.getLogger("clinotel.collector")


class SegmentStore(Protocol):
    def insert(self, segment: Segment) -> None:
        """Store one sealed segment (deduplicated by its token); raise what ClickHouse raised."""

    def is_refusal(self, error: Exception) -> bool:
        """True when ClickHouse ran the insert and refused it, False when it could not be reached."""

    def is_request_fault(self, error: Exception) -> bool:
        """True when a refusal comes from one of the segment's requests (the engine's Protobuf
        reader could not read it), so halving the segment finds the request; False for a refusal
        of any insert (access, a missing table, too many parts) and for memory (`request_fault`)."""

    def relieve(self, error: Exception) -> str | None:
        """After `error` kept a segment out for a while: free what the store can (caches, memory
        its allocator holds) so the next try can fit; says what it did, or None (nothing to do)."""

    def is_lost(self, error: Exception) -> bool:
        """True when `error` says this store will take nothing more from this process (the
        embedded engine stopped after a fatal error of its own): retrying cannot help."""

    def stuck_hint(self, error: Exception) -> str:
        """What an operator can do about `error` when it has kept a segment out for a while."""


_MEMORY_LIMIT_EXCEEDED: Final = 241
READERS_WAIT_S: Final = 65.0
"""How long the try alone waits for the read port's queries to end: their own time limit (60 s)
and a margin, so that a query begun just before the wait has ended when it does."""
_ENGINE_FULL: Final = "(total) memory limit exceeded"


def memory_limit_exceeded(error: Exception) -> bool:
    """A query went past its own memory cap or the engine's (MEMORY_LIMIT_EXCEEDED)."""
    return getattr(error, "code", None) == _MEMORY_LIMIT_EXCEEDED


def engine_full(error: Exception) -> bool:
    """The engine as a whole was at its memory cap (not this insert over its own)."""
    return memory_limit_exceeded(error) and _ENGINE_FULL in str(error)


_RELIEF: Final = (
    "SYSTEM DROP MARK CACHE",
    "SYSTEM DROP INDEX MARK CACHE",
    "SYSTEM DROP PRIMARY INDEX CACHE",
    "SYSTEM JEMALLOC PURGE",
)
"""What an embedded engine at its cap can give back without losing data: its caches (rebuilt by
the next reads), and the pages its allocator keeps after freeing them (counted against the cap)."""


_ABORTED: Final = 236
_FATAL: Final = "due to a fatal error"


def _shutting_down(error: Exception) -> bool:
    """ABORTED: a server restarting, or an engine after a fatal error."""
    return getattr(error, "code", None) == _ABORTED


def engine_failed(error: Exception) -> bool:
    """The engine is shutting down after a fatal error of its own (a crash in one of its threads):
    it refuses every query from then on, whatever the query."""
    return _shutting_down(error) and _FATAL in str(error)


_NOT_ENOUGH_SPACE: Final = 243
_NO_SPACE_LEFT: Final = "No space left on device"


def out_of_space(error: Exception) -> bool:
    """The store's disk is full: ClickHouse could not reserve room for the new parts, or a write
    met ENOSPC. Not the segment's fault: it passes once space returns."""
    return getattr(error, "code", None) == _NOT_ENOUGH_SPACE or _NO_SPACE_LEFT in str(error)


_INPUT_FORMAT: Final = "ProtobufRowInputFormat"
"""Where the engine's error says it was reading the segment's requests when it failed."""
_LOGICAL_ERROR: Final = 49


def request_fault(error: Exception) -> bool:
    """The engine's Protobuf reader could not read a request of the segment. Not when it ran out
    of memory while reading (nor the engine's own error that can follow that, LOGICAL_ERROR): a
    request that cannot fit is set aside with its whole segment, as before halving, because each
    try of it is one more allocation at the engine's cap, and halving tries it again at every
    level (tests saw the embedded engine abort or crash after a dozen such tries)."""
    return (
        _INPUT_FORMAT in str(error)
        and not memory_limit_exceeded(error)
        and getattr(error, "code", None) != _LOGICAL_ERROR
    )


def _stuck_hint(error: Exception, where: str, memory: str) -> str:
    """The writer's advice for a segment kept out by `error`, about `where` the store is: its disk,
    its memory (`memory`: which cap an operator raises), a restart, reaching it, or its error."""
    if out_of_space(error):
        return f"free space on {where}'s disk"
    if memory_limit_exceeded(error):
        return memory
    if _shutting_down(error):
        return f"{where} is shutting down: it takes the segment once it is back"
    if _unanswered(error):
        return f"{where} cannot be reached: check that it runs and answers on its address"
    return f"{where} refused the insert with that error"


def _unanswered(error: Exception) -> bool:
    """ClickHouse did not answer the insert (not reached, or the connection failed): the driver's
    error is not a database's error, or is its operational kind."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    return not isinstance(error, DatabaseError) or isinstance(error, OperationalError)


def _clickhouse_refused(error: Exception) -> bool:
    """ClickHouse ran the insert and refused it. Not when the engine as a whole was out of memory
    (merges or readers held it), its disk was full, or it was shutting down (ABORTED: a server
    restarting, an engine after a fatal error): those are not the segment's fault, and it is
    retried (it waits in the log, whose bound then pushes back on clients). A segment over its
    own insert's cap is refused like any other."""
    if _unanswered(error):
        return False
    return not (engine_full(error) or out_of_space(error) or _shutting_down(error))


class EmbeddedSegments:
    """The embedded engine reads the segment's file itself, with the .proto from a file beside the
    log. An insert is capped at the engine's whole memory (`memory_bytes`): one that cannot fit
    even alone is refused (and quarantined after a few tries); one that does not fit beside merges
    and readers fails on the engine's total and is retried.

    Past the cap, the engine may report its total rather than the insert's own, whatever holds the
    rest: so after a relief the next try runs with the merges paused and the read port's queries
    held back (`quiesce`), and a segment that still fails on the engine's total then is refused
    like one over its own cap. Without this, one request of millions of tiny attributes was retried
    without end, with every tenant's later spans waiting behind it in the log; and without the
    readers held back, one tenant's readers at their caps had other tenants' acknowledged
    segments set aside in the quarantine."""

    def __init__(self, client: Any, pipeline: Pipeline, proto_file: str, memory_bytes: int | None = None) -> None:
        self.client = client
        self.pipeline = pipeline
        self.proto_file = proto_file
        self.max_memory_usage = memory_bytes
        self._alone_next = False
        self._last_alone = False
        self._merges_stopped = False
        self.quiesce: Callable[[float], AbstractContextManager[bool]] | None = None
        """Holds the read port's queries back for a while and says whether none runs
        (`SqlReader.paused`): the try with the merges paused is then alone with the engine."""
        self.earlier: EarlierPipeline | None = None
        """The pipeline of the release that last ran on the log, when another's (`earlier_pipeline`)."""
        self.left_by_earlier: set[str] = set()
        """The names of the segments that release left in the log: inserted through its pipeline."""

    def insert(self, segment: Segment) -> None:
        path = str(segment.path.resolve())
        if self.earlier is not None and segment.path.name in self.left_by_earlier:
            settings = self.pipeline.settings(segment.token, self.proto_file)
            try:
                self._insert(self.earlier.insert_from_file(path, settings))
            except Exception as e:
                if memory_limit_exceeded(e) or not _clickhouse_refused(e):
                    raise  # tried again as any insert, through the same pipeline
                # its view no longer fits the tables (a release long gone): stored through this
                # release's, as if its pipeline had been dropped
                logger.warning(
                    "a segment the release before left in the log could not go through its ingest view (%s): "
                    "stored through this release's, and if that release had stored it before it stopped, twice",
                    first_line(e),
                )
            else:
                self.left_by_earlier.discard(segment.path.name)
                return
            self.left_by_earlier.discard(segment.path.name)
        self._insert(self.pipeline.insert_from_file(path, segment.token, self.proto_file))

    def _insert(self, sql: str) -> None:
        if self.max_memory_usage is not None:
            sql += f", max_memory_usage = {self.max_memory_usage}"
        alone, self._alone_next = self._alone_next, False
        # readers at their caps can hold the whole engine: a try that failed beside them says
        # nothing of the segment, so it is refused only after one alone (readers held back)
        readers = self.quiesce(READERS_WAIT_S) if alone and self.quiesce is not None else nullcontext(True)
        with readers as no_readers:
            # running merges are cancelled, their parts kept
            self._last_alone = alone and no_readers and self._merges("STOP")
            try:
                self.client.command(sql)
            finally:
                if self._merges_stopped:  # by this try, or left stopped by an earlier one
                    self._merges("START")

    def _merges(self, verb: str) -> bool:
        """SYSTEM STOP or START MERGES; whether it worked (a failure is logged: the insert is then
        not counted as alone, and starting the merges is tried again at the next insert)."""
        try:
            self.client.command(f"SYSTEM {verb} MERGES")
        except Exception as e:  # noqa: BLE001 - the insert goes ahead; its failure is judged as usual
            logger.error("SYSTEM %s MERGES failed: %s", verb, first_line(e))
            return False  # the flag stays as it was: a failed START leaves the merges counted as stopped
        self._merges_stopped = verb == "STOP"
        return True

    def is_refusal(self, error: Exception) -> bool:
        if self._last_alone and engine_full(error):
            logger.error(
                "a segment's insert does not fit in the engine's memory cap even with the merges paused "
                "(%s): it is refused, and set aside after a few tries; a larger --memory-mb stores it",
                first_line(error),
            )
            return True
        return _clickhouse_refused(error)

    def is_request_fault(self, error: Exception) -> bool:
        return request_fault(error)

    def relieve(self, error: Exception) -> str | None:
        if not engine_full(error):
            return None
        done = []
        for statement in _RELIEF:
            try:
                self.client.command(statement)
                done.append(statement.removeprefix("SYSTEM ").lower())
            except Exception as e:  # noqa: BLE001 (an engine without one of them: the others still help)
                logger.debug("%s failed: %s", statement, e)
        self._alone_next = True
        return ", ".join([*done, "the next try with the merges paused"])

    def is_lost(self, error: Exception) -> bool:
        return engine_failed(error)

    def stuck_hint(self, error: Exception) -> str:
        return _stuck_hint(error, "the embedded store", "the engine is at its memory cap: raise --memory-mb")


class ServerSegments:
    """A server gets the segment's bytes as the INSERT's body, with the .proto inline (`proto_name`
    None) or named in its format_schemas directory."""

    def __init__(self, client: Any, pipeline: Pipeline, proto_name: str | None) -> None:
        self.client = client
        self.pipeline = pipeline
        self.proto_name = proto_name

    def insert(self, segment: Segment) -> None:
        settings = self.pipeline.settings(segment.token, self.proto_name)
        with segment.path.open("rb") as body:
            self.client.raw_insert(self.pipeline.table, None, body, settings=settings, fmt="Protobuf")

    def is_refusal(self, error: Exception) -> bool:
        return _clickhouse_refused(error)

    def is_request_fault(self, error: Exception) -> bool:
        return request_fault(error)

    def relieve(self, error: Exception) -> str | None:
        return None  # a server's memory is its operator's: the writer only says it is stuck

    def is_lost(self, error: Exception) -> bool:
        return False  # a server that failed is restarted by its operator: the writer waits for it

    def stuck_hint(self, error: Exception) -> str:
        return _stuck_hint(
            error,
            "the ClickHouse server",
            "the ClickHouse server is at its memory cap: give it more memory (its max_server_memory_usage) or "
            "less other work (--memory-mb is the embedded engine's, not a server's)",
        )
