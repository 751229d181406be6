"""Which store errors are a segment's fault (retried a few times, then set aside) and which are
not (retried for as long as they last, or, for an embedded engine that failed, the writer
stops). Each message as ClickHouse words it, with the code the driver reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from clinotel.collector.store.segments import READERS_WAIT_S, EmbeddedSegments, ServerSegments, engine_failed

FATAL = DatabaseError("Code: 236. DB::Exception: The server is shutting down due to a fatal error. (ABORTED)", code=236)
SHUTTING_DOWN = DatabaseError("Code: 236. DB::Exception: Server shutdown is called. (ABORTED)", code=236)
BAD_SEGMENT = DatabaseError(
    "Code: 444. DB::Exception: Protobuf messages are corrupted. (UNKNOWN_PROTOBUF_FORMAT)", code=444
)
ENGINE_FULL = DatabaseError(
    "Code: 241. DB::Exception: (total) memory limit exceeded: would use 770 MiB. (MEMORY_LIMIT_EXCEEDED)", code=241
)
NO_SPACE = DatabaseError(
    "Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)", code=243
)
UNREACHABLE = OperationalError("Error HTTPConnectionPool: connection refused")

STORES = [EmbeddedSegments(None, None, "p.proto"), ServerSegments(None, None, None)]  # type: ignore[arg-type]


@pytest.mark.parametrize("store", STORES, ids=["embedded", "server"])
@pytest.mark.parametrize(
    ("error", "refused"),
    [(BAD_SEGMENT, True), (FATAL, False), (SHUTTING_DOWN, False), (ENGINE_FULL, False), (NO_SPACE, False),
     (UNREACHABLE, False)],
    ids=["bad segment", "engine failed", "shutting down", "engine full", "disk full", "unreachable"],
)  # fmt: skip
def test_only_a_segment_at_fault_is_a_refusal(store: object, error: Exception, refused: bool) -> None:
    assert store.is_refusal(error) is refused  # type: ignore[attr-defined]


def test_only_an_embedded_engine_that_failed_is_lost() -> None:
    embedded, server = STORES
    assert engine_failed(FATAL)
    assert embedded.is_lost(FATAL)
    assert not server.is_lost(FATAL), "a server is restarted by its operator: the writer waits for it"
    for other in (SHUTTING_DOWN, BAD_SEGMENT, ENGINE_FULL, NO_SPACE, UNREACHABLE):
        assert not embedded.is_lost(other), other


@pytest.mark.parametrize(
    ("error", "embedded_hint", "server_hint"),
    [
        (ENGINE_FULL, "raise --memory-mb", "max_server_memory_usage"),
        (NO_SPACE, "free space on the embedded store's disk", "free space on the ClickHouse server's disk"),
        (SHUTTING_DOWN, "shutting down", "shutting down"),
        (UNREACHABLE, "cannot be reached", "cannot be reached"),
        (BAD_SEGMENT, "refused the insert", "refused the insert"),
    ],
    ids=["memory", "disk full", "shutting down", "unreachable", "refused"],
)
def test_a_stuck_segment_is_told_with_what_to_do_about_that_store(
    error: Exception, embedded_hint: str, server_hint: str
) -> None:
    """The writer's alarm for a segment kept out says what to do about the store it writes to: a
    server's memory is its own setting, not the embedded engine's flag."""
    embedded, server = STORES
    assert embedded_hint in embedded.stuck_hint(error)
    assert server_hint in server.stuck_hint(error)
    assert "--memory-mb" not in server.stuck_hint(error).split("(")[0], "a server is not capped by --memory-mb"


class _Client:
    """Records the statements it is given; fails those named in `failing`."""

    def __init__(self, *failing: str) -> None:
        self.failing = set(failing)
        self.seen: list[str] = []

    def command(self, sql: str) -> None:
        name = sql if sql.startswith("SYSTEM") else "INSERT"
        self.seen.append(name)
        if name in self.failing:
            raise DatabaseError(f"Code: 1. DB::Exception: {name} failed", code=1)


class _Pipeline:
    def insert_from_file(self, path: str, token: str, proto_file: str) -> str:
        return f"INSERT {token}"


class _Segment:
    path = Path("segment.wal")
    token = "t"


def _store(client: _Client) -> EmbeddedSegments:
    return EmbeddedSegments(client, _Pipeline(), "p.proto", 1 << 30)  # type: ignore[arg-type]


def test_after_a_relief_one_try_runs_with_the_merges_paused_and_a_full_engine_then_is_a_refusal() -> None:
    client = _Client()
    store = _store(client)
    store.insert(_Segment())  # type: ignore[arg-type]
    assert client.seen == ["INSERT"]
    assert store.is_refusal(ENGINE_FULL) is False, "an engine full beside merges is retried"
    assert store.relieve(ENGINE_FULL) is not None
    client.seen.clear()
    store.insert(_Segment())  # type: ignore[arg-type]
    assert client.seen[-3:] == ["SYSTEM STOP MERGES", "INSERT", "SYSTEM START MERGES"]
    assert store.is_refusal(ENGINE_FULL) is True, "alone and still over the engine's cap: the segment's fault"
    client.seen.clear()
    store.insert(_Segment())  # type: ignore[arg-type]
    assert client.seen == ["INSERT"], "one try alone per relief"
    assert store.is_refusal(ENGINE_FULL) is False


def test_merges_that_cannot_be_paused_or_restarted_do_not_make_a_refusal_or_stay_stopped() -> None:
    client = _Client("SYSTEM STOP MERGES")
    store = _store(client)
    store.relieve(ENGINE_FULL)
    store.insert(_Segment())  # type: ignore[arg-type]
    assert "INSERT" in client.seen
    assert store.is_refusal(ENGINE_FULL) is False, "not alone after all: retried, not refused"

    client = _Client("SYSTEM START MERGES")
    store = _store(client)
    store.relieve(ENGINE_FULL)
    store.insert(_Segment())  # type: ignore[arg-type]
    client.failing.clear()
    client.seen.clear()
    store.insert(_Segment())  # type: ignore[arg-type]
    assert client.seen == ["INSERT", "SYSTEM START MERGES"], "starting the merges is tried again"


READER_REFUSED = DatabaseError(
    "Code: 32. DB::Exception: Attempt to read after eof: (in file/uri /log/a.wal): While executing "
    "ProtobufRowInputFormat: While executing File. (ATTEMPT_TO_READ_AFTER_EOF)",
    code=32,
)
READER_OUT_OF_MEMORY = DatabaseError(
    "Code: 241. DB::Exception: (total) memory limit exceeded: would use 470 MiB: While executing "
    "ProtobufRowInputFormat. (MEMORY_LIMIT_EXCEEDED)",
    code=241,
)
READER_LOGICAL_ERROR = DatabaseError(
    "Code: 49. DB::Exception: Cannot pop 262128 rows from Float64: there are only 262127 rows: While executing "
    "ProtobufRowInputFormat. (LOGICAL_ERROR)",
    code=49,
)
ACCESS_DENIED = DatabaseError("Code: 497. DB::Exception: default: Not enough privileges. (ACCESS_DENIED)", code=497)


@pytest.mark.parametrize("store", STORES, ids=["embedded", "server"])
@pytest.mark.parametrize(
    ("error", "halved"),
    [(READER_REFUSED, True), (BAD_SEGMENT, False), (READER_OUT_OF_MEMORY, False), (READER_LOGICAL_ERROR, False),
     (ACCESS_DENIED, False), (ENGINE_FULL, False)],
    ids=["reader refused", "no reader named", "reader out of memory", "logical error", "access denied", "engine full"],
)  # fmt: skip
def test_only_a_request_the_reader_refuses_has_its_segment_halved(
    store: object, error: Exception, halved: bool
) -> None:
    """Halving finds a request the engine cannot read; a refusal of every insert would refuse
    every half alike, and a request that cannot fit is tried at the engine's cap at every level."""
    assert store.is_request_fault(error) is halved  # type: ignore[attr-defined]


def test_the_try_alone_holds_the_readers_back_and_is_no_refusal_while_they_run() -> None:
    """Readers at their caps can hold the whole engine: a segment that failed beside them was set
    aside in the quarantine (an attacker's four queries had another tenant's acknowledged spans
    quarantined). The try alone holds the read port's queries back first; if some still run when
    the wait ends, an engine full is retried, never the segment's fault."""
    held: list[float] = []
    readers_idle = [False]

    @contextmanager
    def quiesce(timeout_s: float) -> Iterator[bool]:
        held.append(timeout_s)
        yield readers_idle[0]

    client = _Client()
    store = _store(client)
    store.quiesce = quiesce
    store.insert(_Segment())  # type: ignore[arg-type]
    assert held == [], "only the try alone holds the readers"
    store.relieve(ENGINE_FULL)
    store.insert(_Segment())  # type: ignore[arg-type]
    assert held == [READERS_WAIT_S]
    assert store.is_refusal(ENGINE_FULL) is False, "readers still ran: the engine's total says nothing of the segment"
    readers_idle[0] = True
    store.relieve(ENGINE_FULL)
    client.seen.clear()
    store.insert(_Segment())  # type: ignore[arg-type]
    assert client.seen[-3:] == ["SYSTEM STOP MERGES", "INSERT", "SYSTEM START MERGES"]
    assert store.is_refusal(ENGINE_FULL) is True, "alone with no reader and still over: the segment's fault"
