"""Read-only SQL on the embedded engine, one tenant at a time.

A query is first checked and canonicalised by `read_guard` (ClickHouse's parser, allowlists);
only the canonical text runs, on a chDB session prepared before it sees the query: the tenant's
`additional_table_filters` on every readable table (whose partition key leads with `TenantId`,
so other tenants' parts are pruned before any reader expression is evaluated), the caller's
allowed settings (capped), the database, a low OS thread priority (ingest comes first), and
finally `readonly = 1`. Sessions are pooled by (tenant, database, settings), so a dashboard's
repeated queries do not pay for the set-up. Each tenant has its own share of the reader slots.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from clinotel.collector.readport import allowlist as read_allowlist
from clinotel.collector.readport import guard as read_guard
from clinotel.collector.readport.guard import Catalog, Guard, QueryRefusedError, ReadPolicy
from clinotel.collector.store.embedded import PLANNER_SETTINGS
from clinotel.collector.store.engine_import import import_engine
from clinotel.model.sql import identifier, literal
from clinotel.model.store import engine_message

__all__ = ["DEFAULT_FORMAT", "ClickHouseError", "ReadLimits", "ReadResult", "SqlReader", "content_type"]

DEFAULT_FORMAT: Final = "TabSeparated"
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR: Final = re.compile(r"Code: (\d+)\. DB::Exception: ")
_ERROR_NAME: Final = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
MAX_READER_QUERY: Final = 256 << 10
"""The longest query text a reader may send (ClickHouse's own default max_query_size)."""
MAX_QUERY_SIZE: Final = 4 * MAX_READER_QUERY
"""The engine's max_query_size for our parse calls (the query's hex, twice its size, inside ours)
and for the canonical text."""
MAX_PARSER_DEPTH: Final = 200
"""Nesting the parser accepts in a reader's query (ClickHouse's default is 1000; its JSON tree must
also stay within Python's recursion limit)."""
NO_JIT: Final = {"compile_expressions": "0", "compile_aggregate_expressions": "0", "compile_sort_description": "0"}
"""Every reader query runs without the engine's JIT compilation. The engine compiles an expression
the third time it sees one, in the query that sees it: 80 to 150 ms more in that query (a 20 ms
efficiency table took 116 ms once), while the compiled code saved 2 % over the 136 dashboard queries
at 10M spans (benchmarks/dashboard_queries.py, docs/dashboards.md): a latency spike for no gain."""
READER_WORKLOAD: Final = "clinotel_readers"
READER_NICE: Final = 19
"""`os_thread_priority` of reader queries: the writer's inserts run at the process's own priority."""

_STATUS_BY_NAME: Final = {
    "REQUIRED_PASSWORD": 401,
    "AUTHENTICATION_FAILED": 403,
    "ACCESS_DENIED": 403,
    "READONLY": 403,
    "UNKNOWN_TABLE": 404,
    "UNKNOWN_DATABASE": 404,
    "UNKNOWN_FUNCTION": 404,
    "UNKNOWN_IDENTIFIER": 404,
    "UNKNOWN_FORMAT": 404,
    "UNKNOWN_TYPE": 404,
    "SYNTAX_ERROR": 400,
    "UNKNOWN_SETTING": 400,
    "UNKNOWN_QUERY_PARAMETER": 400,
    "BAD_QUERY_PARAMETER": 400,
    "BAD_ARGUMENTS": 400,
    "TYPE_MISMATCH": 400,
    "ILLEGAL_TYPE_OF_ARGUMENT": 400,
    "NUMBER_OF_ARGUMENTS_DOESNT_MATCH": 400,
    "CANNOT_PARSE_TEXT": 400,
    "TIMEOUT_EXCEEDED": 408,
    "TOO_MANY_SIMULTANEOUS_QUERIES": 503,
    "NOT_IMPLEMENTED": 501,
    "QUERY_IS_TOO_LARGE": 413,
    "HTTP_LENGTH_REQUIRED": 411,
}
"""HTTP statuses by error name, as ClickHouse's HTTP handler answers them; others are 500."""


class ClickHouseError(Exception):
    """A query error in ClickHouse's terms: code, name, message and the HTTP status it gets."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message

    @property
    def http_status(self) -> int:
        return _STATUS_BY_NAME.get(self.name, 500)

    def body(self, version: str) -> str:
        """The error text as ClickHouse writes it."""
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name}) (version {version})\n"

    @classmethod
    def from_engine(cls, exc: Exception) -> ClickHouseError:
        text = str(exc)
        matches = list(_ERROR.finditer(text))
        if not matches:
            return cls(1001, "STD_EXCEPTION", text.strip())
        last = matches[-1]
        message, name = engine_message(text[last.start() :])
        if name is None:  # the name within the message, as the engine writes a nested one
            names = _ERROR_NAME.findall(message)
            name = names[-1] if names else "UNKNOWN_EXCEPTION"
        return cls(int(last.group(1)), name, message)

    @classmethod
    def refused(cls, refusal: QueryRefusedError) -> ClickHouseError:
        return cls(refusal.code, refusal.name, refusal.message)


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse answers for an output format."""
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "withnames" in f else "absent")
    if f in {"jsoneachrow", "jsonlines", "ndjson"}:
        return "application/x-ndjson; charset=UTF-8"
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f.startswith(("pretty", "vertical", "markdown", "values")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


@dataclass(frozen=True)
class ReadLimits:
    """Server-side caps every reader query runs under; a caller may lower them, not raise them."""

    max_execution_time: int = 60
    max_result_bytes: int = 128 << 20
    max_memory_usage: int = 1 << 30
    max_threads: int = 2
    max_block_size: int = 65536
    max_concurrent: int = 8
    max_concurrent_per_tenant: int = 4
    """One tenant's share of `max_concurrent`, so one reader's slow queries cannot starve another."""
    idle_sessions: int = 16
    reader_threads: int = max(1, (os.cpu_count() or 2) - 1)
    """CPU threads all reader queries share (the engine's workload scheduler): one core is left
    to the writer."""

    def caps(self) -> dict[str, int]:
        """The capped settings and their caps (`max_result_rows` has none: 0, unlimited)."""
        return {
            "max_execution_time": self.max_execution_time,
            "max_result_bytes": self.max_result_bytes,
            "max_memory_usage": self.max_memory_usage,
            "max_threads": self.max_threads,
            "max_block_size": self.max_block_size,
        }


@dataclass(frozen=True)
class ReadResult:
    body: bytes
    format: str
    query_id: str
    result_rows: int
    read_rows: int
    read_bytes: int
    elapsed_s: float

    def summary(self) -> dict[str, str]:
        """The `X-ClickHouse-Summary` figures (ClickHouse sends every number as a string)."""
        return {
            "read_rows": str(self.read_rows),
            "read_bytes": str(self.read_bytes),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": str(self.read_rows),
            "result_rows": str(self.result_rows),
            "result_bytes": str(len(self.body)),
            "elapsed_ns": str(int(self.elapsed_s * 1e9)),
        }


_Key = tuple[str | None, str, tuple[tuple[str, str], ...]]


def _refusal(exc: Exception) -> QueryRefusedError:
    error = ClickHouseError.from_engine(exc)
    return QueryRefusedError(error.code, error.name, error.message)


class SqlReader:
    """Runs read-only queries on the embedded engine at `path` for one tenant (or all, `None`).

    `tenant_tables` are the tables of `database` readers may name; each has a `TenantId` column
    leading its partition key."""

    def __init__(
        self,
        path: Path,
        database: str,
        tenant_tables: Sequence[str],
        limits: ReadLimits | None = None,
        tenant_column: str = "TenantId",
    ) -> None:
        import_engine()
        import chdb  # lazy: heavy

        def connect() -> Any:
            return chdb.connect(str(path))  # type: ignore[no-untyped-call]

        self._connect: Callable[[], Any] = connect
        self.database = database
        self.limits = limits or ReadLimits()
        self._tables = tuple(tenant_tables)
        self._tenant_column = tenant_column
        self._idle: dict[_Key, list[Any]] = {}
        self._idle_order: list[_Key] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.limits.max_concurrent)
        self._tenant_slots: dict[str | None, threading.BoundedSemaphore] = {}
        self._admission = threading.Condition()
        self._running = 0
        """Reader queries admitted and not yet ended (`paused` waits for none)."""
        self._paused = 0
        """Holders of `paused`: while any, new reader queries wait."""
        self._parsers: queue.LifoQueue[Any] = queue.LifoQueue()
        first = self._new_parser()
        self._parsers.put(first)
        self._reader_workload(first, path)
        version, tz = self._scalar("SELECT concat(version(), '\t', timezone())").split("\t")
        self.version: str = version
        self.timezone: str = tz
        self._stored: frozenset[tuple[str, str]] = frozenset()
        self.policy = ReadPolicy(
            database, frozenset(self._tables), self._catalog(), self._system_columns(), self._exists
        )
        self._guard = Guard(self._scalar, self.policy)

    def _new_parser(self) -> Any:
        """A session for our own small queries (parse, format, catalogue), one per concurrent reader:
        a tenant's parse waits for nobody else's."""
        handle = self._connect()
        handle.query(f"SET max_query_size = {MAX_QUERY_SIZE}")
        handle.query(f"SET max_parser_depth = {MAX_PARSER_DEPTH}")
        handle.query(f"SET os_thread_priority = {READER_NICE}")
        return handle

    def _reader_workload(self, parser: Any, path: Path) -> None:
        """Readers share `reader_threads` CPU threads among them, in a ClickHouse workload, so
        the writer always has the rest of the machine (ingest first)."""
        loaded = parser.query("SELECT count() FROM system.workloads WHERE name = 'all'", "TSVRaw")
        if loaded.bytes().strip() == b"0":
            # chDB (4.4) writes workload entities under the store but does not load them when it
            # opens it again, and then refuses to create them anew: start from no files.
            for name in ("resource_cpu.sql", "workload_all.sql", f"workload_{READER_WORKLOAD}.sql"):
                (path / "workload" / name).unlink(missing_ok=True)
            parser.query("CREATE RESOURCE IF NOT EXISTS cpu (MASTER THREAD, WORKER THREAD)")
            parser.query("CREATE WORKLOAD IF NOT EXISTS all")
        parser.query(
            f"CREATE OR REPLACE WORKLOAD {READER_WORKLOAD} IN all SETTINGS max_concurrent_threads = "
            f"{self.limits.reader_threads}"
        )

    def own_scalar(self, sql: str) -> str:
        """One value of a query of clinotel's own (not a reader's: no tenant's guard), on a parser
        session of the pool; ClickHouseError when the engine refuses it."""
        return self._scalar(sql)

    def _scalar(self, sql: str) -> str:
        """One value of one of our own queries, on a parser session of the pool."""
        try:
            handle = self._parsers.get_nowait()
        except queue.Empty:
            handle = self._new_parser()
        try:
            return str(handle.query(sql, "TSVRaw").bytes().decode("utf-8")).removesuffix("\n")
        except RuntimeError as e:
            raise _refusal(e) from None
        finally:
            self._parsers.put(handle)

    def _rows(self, sql: str) -> list[list[str]]:
        return [line.split("\t") for line in self._scalar(sql).splitlines() if line]

    def _catalog(self) -> Catalog:
        canonical: dict[str, str] = {}
        insensitive: dict[str, str] = {}
        aggregates = set()
        for name, alias_to, case_insensitive, aggregate in self._rows(
            "SELECT name, alias_to, case_insensitive, is_aggregate FROM system.functions"
        ):
            target = alias_to or name
            canonical[name] = target
            if case_insensitive == "1":
                insensitive[name.lower()] = target
            if aggregate == "1":
                aggregates.add(target)
        combinators = sorted(
            (row[0] for row in self._rows("SELECT name FROM system.aggregate_function_combinators")),
            key=len,
            reverse=True,
        )
        return Catalog(canonical, insensitive, frozenset(aggregates), tuple(combinators))

    def _system_columns(self) -> dict[str, frozenset[str]]:
        names = ", ".join(literal(t) for t in read_allowlist.RESTRICTED_SYSTEM_COLUMNS)
        columns: dict[str, set[str]] = {}
        for table, name in self._rows(
            f"SELECT table, name FROM system.columns WHERE database = 'system' AND table IN ({names})"
        ):
            columns.setdefault(table, set()).add(name)
        return {table: frozenset(names) for table, names in columns.items()}

    def close(self) -> None:
        while not self._parsers.empty():
            self._parsers.get_nowait().close()
        with self._lock:
            for handles in self._idle.values():
                for h in handles:
                    h.close()
            self._idle.clear()
            self._idle_order.clear()

    def query(
        self,
        sql: str,
        *,
        tenant: str | None,
        database: str | None = None,
        default_format: str | None = None,
        params: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
        query_id: str | None = None,
        slot_held: bool = False,
    ) -> ReadResult:
        """Run one read; raises ClickHouseError with the code a ClickHouse server would give.
        `slot_held`: the caller holds the tenant's slot already (`slot`), to keep it while it
        writes the answer out."""
        try:
            database = self._database(database)
            if len(sql.encode("utf-8")) > MAX_READER_QUERY:
                raise QueryRefusedError(62, "SYNTAX_ERROR", f"Max query size exceeded ({MAX_READER_QUERY:,} bytes)")
        except QueryRefusedError as e:
            raise ClickHouseError.refused(e) from None
        with nullcontext() if slot_held else self.slot(tenant), self._admitted():
            _lower_thread_priority()  # parsing is the reader's work too
            try:
                # a parameter's value meets the checks a literal in its place would, whoever calls
                read_guard.check_parameters(self.policy, {f"param_{k}": v for k, v in (params or {}).items()})
                checked = self._guard.check(sql, database)
                key = (tenant, database, self._session_settings({**(settings or {}), **checked.settings}))
                fmt = checked.format or read_guard_format(default_format)
            except QueryRefusedError as e:
                raise ClickHouseError.refused(e) from None
            with self._session(key) as handle:
                return self._run(handle, checked.sql, fmt, dict(params or {}), query_id)

    @contextmanager
    def paused(self, timeout_s: float) -> Iterator[bool]:
        """Hold new reader queries back and wait up to `timeout_s` for the running ones to end;
        yields whether none runs. The writer's insert of acknowledged spans comes first: when it
        keeps failing on the engine's whole memory, it tries once more with the readers held
        here, so that what readers hold is never taken for the segment's own size (readers at
        their caps had segments set aside in the quarantine)."""
        with self._admission:
            self._paused += 1
            deadline = time.monotonic() + timeout_s
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._admission.wait(left)
            idle = self._running == 0
        try:
            yield idle
        finally:
            with self._admission:
                self._paused -= 1
                self._admission.notify_all()

    @contextmanager
    def _admitted(self) -> Iterator[None]:
        """Run a reader query unless `paused` holds them: then wait for it to let go, up to
        max_execution_time."""
        with self._admission:
            deadline = time.monotonic() + self.limits.max_execution_time
            while self._paused:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ClickHouseError(
                        202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Reader queries wait while the writer stores spans"
                    )
                self._admission.wait(left)
            self._running += 1
        try:
            yield
        finally:
            with self._admission:
                self._running -= 1
                self._admission.notify_all()

    @contextmanager
    def slot(self, tenant: str | None) -> Iterator[None]:
        """A reader slot within the tenant's share, for a query and the writing of its answer (an
        answer, up to max_result_bytes and more once rewritten for an old client, is held in memory
        until its client has read it, so a slow client holds its slot meanwhile: ten slow clients
        of one tenant held ten answers, 1.4 GB, past every slot); waits up to max_execution_time."""
        with self._lock:
            share = self._tenant_slots.get(tenant)
            if share is None:
                share = self._tenant_slots[tenant] = threading.BoundedSemaphore(
                    min(self.limits.max_concurrent_per_tenant, self.limits.max_concurrent)
                )
        deadline = time.monotonic() + self.limits.max_execution_time
        if not share.acquire(timeout=self.limits.max_execution_time):
            raise ClickHouseError(
                202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many simultaneous queries for this tenant's readers"
            )
        try:
            if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise ClickHouseError(202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many simultaneous reader queries")
            try:
                yield
            finally:
                self._slots.release()
        finally:
            share.release()

    def _run(self, handle: Any, sql: str, fmt: str, params: dict[str, str], query_id: str | None) -> ReadResult:
        _lower_thread_priority()
        start = time.perf_counter()
        try:
            result = handle.query(sql, fmt, params=params)
        except RuntimeError as e:
            raise ClickHouseError.from_engine(e) from None
        return ReadResult(
            body=result.bytes() or b"",
            format=fmt,
            query_id=query_id or str(uuid.uuid4()),
            result_rows=int(result.rows_read()),
            read_rows=int(result.storage_rows_read()),
            read_bytes=int(result.storage_bytes_read()),
            elapsed_s=time.perf_counter() - start,
        )

    def _exists(self, database: str, table: str) -> bool:
        """Whether a stored table has this name (the catalogue is re-read on a miss)."""
        if (database, table) not in self._stored:
            self._stored = frozenset((row[0], row[1]) for row in self._rows("SELECT database, name FROM system.tables"))
        return (database, table) in self._stored

    def _database(self, database: str | None) -> str:
        """The database unqualified names resolve in: the store's, `system` or `default`."""
        if not database:
            return self.database
        if not _NAME.match(database) or database not in self._databases():
            raise QueryRefusedError(81, "UNKNOWN_DATABASE", f"Database {database[:80]!r} does not exist")
        if database not in (self.database, "system", "default"):
            raise QueryRefusedError(
                *read_guard.ACCESS_DENIED, f"readers use the database {self.database} (or system, default)"
            )
        return database

    def _databases(self) -> set[str]:
        return {row[0] for row in self._rows("SELECT name FROM system.databases")}

    def _session_settings(self, settings: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The caller's settings, checked against the allowlist and capped, over the server's caps."""
        caps = self.limits.caps()
        out: dict[str, str] = {name: str(cap) for name, cap in caps.items()}
        for name, value in settings.items():
            if name == "readonly":
                if value not in read_allowlist.READONLY_VALUES:
                    raise QueryRefusedError(*read_guard.READONLY, "Cannot modify 'readonly' setting in readonly mode")
                continue
            rule = read_allowlist.SETTINGS.get(name)
            if rule is None:
                if not _NAME.match(name):
                    raise QueryRefusedError(115, "UNKNOWN_SETTING", f"Unknown setting {name[:80]!r}")
                raise QueryRefusedError(*read_guard.READONLY, f"Cannot modify '{name}' setting in readonly mode")
            try:
                out[name] = rule.check(value, caps.get(name) if rule.capped else None)
            except ValueError as e:
                raise QueryRefusedError(36, "BAD_ARGUMENTS", f"Setting {name}: {e}") from None
        return tuple(sorted(out.items()))

    @contextmanager
    def _session(self, key: _Key) -> Iterator[Any]:
        with self._lock:
            idle = self._idle.get(key)
            handle = idle.pop() if idle else None
        if handle is None:
            handle = self._open(key)
        try:
            yield handle
        except BaseException:
            handle.close()
            raise
        with self._lock:
            self._idle.setdefault(key, []).append(handle)
            if key in self._idle_order:
                self._idle_order.remove(key)
            self._idle_order.append(key)
            while sum(len(v) for v in self._idle.values()) > self.limits.idle_sessions:
                oldest = self._idle_order[0]
                handles = self._idle[oldest]
                handles.pop(0).close()
                if not handles:
                    del self._idle[oldest]
                    self._idle_order.pop(0)

    def _reader_filters(self, tenant: str | None) -> str:
        """The `additional_table_filters` map of a reader's session: a tenant's rows of each
        readable table (none for the operator's `*`), and in the catalog (`system.tables`,
        `system.columns`, and so `SHOW TABLES` and `DESC`'s listing) only the store's tables a
        reader may read. Grafana's ClickHouse plugin looks for `otel_traces_trace_id_ts` there
        and, finding it, asked for a table without `TenantId` that readers are refused: its trace
        view failed."""
        filters = []
        if tenant is not None:
            condition = f"{identifier(self._tenant_column)} = {literal(tenant)}"
            filters = [f"{literal(f'{self.database}.{t}')}: {literal(condition)}" for t in self._tables]
        names = ", ".join(literal(t) for t in self._tables)
        for table, column in (("tables", "name"), ("columns", "table")):
            listed = f"database != {literal(self.database)} OR {column} IN ({names})"
            filters.append(f"{literal(f'system.{table}')}: {literal(listed)}")
        return ", ".join(filters)

    def _open(self, key: _Key) -> Any:
        tenant, database, settings = key
        handle = self._connect()
        try:
            handle.query(f"SET additional_table_filters = {{{self._reader_filters(tenant)}}}")
            for name, value in (*NO_JIT.items(), *PLANNER_SETTINGS.items(), *settings):
                handle.query(f"SET {identifier(name)} = {literal(value)}")
            handle.query(f"SET max_query_size = {MAX_QUERY_SIZE}")
            handle.query(f"SET os_thread_priority = {READER_NICE}")
            handle.query(f"SET workload = {literal(READER_WORKLOAD)}")
            handle.query(f"USE {identifier(database)}")
            handle.query("SET readonly = 1")
        except RuntimeError as e:
            handle.close()
            raise ClickHouseError.from_engine(e) from None
        return handle


def _lower_thread_priority() -> None:
    """The calling thread runs part of each query itself: it gets the readers' low priority too
    (the engine lowers only its own pipeline threads). Raising a nice value needs no privilege;
    reader threads (one per HTTP connection) never need it back."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < READER_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, READER_NICE)
    except OSError:
        pass  # a sandbox that forbids it: readers then compete at the process's priority


def read_guard_format(name: str | None) -> str:
    """The output format a reader asked for with `default_format`, checked like a FORMAT clause."""
    if not name:
        return DEFAULT_FORMAT
    if name not in read_allowlist.OUTPUT_FORMATS:
        raise QueryRefusedError(
            *read_guard.UNKNOWN_FORMAT, f"The output format {name} is not served by clinotel's read port"
        )
    return name
