"""Read-only SQL on the embedded engine, one tenant at a time.

Every query runs on a chDB session prepared before it sees the query: the tenant's
`additional_table_filters` on every readable table, the caller's settings that may change in
read-only mode (capped), the database, and finally `readonly = 1`, after which nothing in the
query can change a setting. `read_guard` checks the query's parse first. Sessions are pooled by
(tenant, database, settings), so a dashboard's repeated queries do not pay for the set-up.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from clinotel.collector import read_guard
from clinotel.collector.read_guard import QueryRefusedError, ReadPolicy
from clinotel.collector.sql import identifier, literal

__all__ = ["DEFAULT_FORMAT", "ClickHouseError", "ReadLimits", "ReadResult", "SqlReader", "content_type"]

DEFAULT_FORMAT: Final = "TabSeparated"
_CHANGEABLE: Final = frozenset(
    {"max_execution_time", "max_result_rows", "max_result_bytes", "result_overflow_mode", "timeout_overflow_mode",
     "max_rows_to_read", "max_bytes_to_read", "read_overflow_mode", "max_threads", "max_block_size",
     "max_memory_usage", "date_time_output_format", "session_timezone", "extremes", "join_use_nulls", "log_comment",
     "prefer_column_name_to_alias", "readonly", "max_rows_to_group_by", "group_by_overflow_mode"}
)  # fmt: skip
"""Settings a reader may set although its session is read-only (ClickHouse's `changeable_in_readonly`)."""
_CHANGEABLE_PREFIXES: Final = ("output_format_", "format_")
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR: Final = re.compile(r"Code: (\d+)\. DB::Exception: ")
_ERROR_NAME: Final = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
_VERSION_SUFFIX: Final = re.compile(r"\s*\(version [^)]*\)\.?\s*$")

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
        message = _VERSION_SUFFIX.sub("", text[last.end() :].strip())
        names = _ERROR_NAME.findall(message)
        name = names[-1] if names else "UNKNOWN_EXCEPTION"
        message = re.sub(rf"\.?\s*\({name}\)\s*$", "", message).rstrip(". ")
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
    max_concurrent: int = 8
    idle_sessions: int = 16


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


class SqlReader:
    """Runs read-only queries on the embedded engine at `path` for one tenant (or all, `None`).

    `tenant_tables` are the tables readers may name; each has a `TenantId` column."""

    def __init__(
        self,
        path: Path,
        database: str,
        tenant_tables: Sequence[str],
        limits: ReadLimits | None = None,
        tenant_column: str = "TenantId",
    ) -> None:
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
        self._catalog: frozenset[tuple[str, str]] = frozenset()
        self._probe = self._connect()
        self._probe_lock = threading.Lock()
        version, tz = self._probe.query("SELECT version(), timezone()", "TSV").bytes().decode().strip().split("\t")
        self.version: str = version
        self.timezone: str = tz
        readable = frozenset((database, t) for t in self._tables)
        self.policy = ReadPolicy(readable, self._exists)

    def close(self) -> None:
        with self._probe_lock:
            self._probe.close()
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
    ) -> ReadResult:
        """Run one read; raises ClickHouseError with the code a ClickHouse server would give."""
        try:
            read_guard.precheck(sql)
            key = (tenant, database or self.database, self._session_settings(settings or {}))
        except QueryRefusedError as e:
            raise ClickHouseError.refused(e) from None
        if not self._slots.acquire(timeout=self.limits.max_execution_time):
            raise ClickHouseError(202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many simultaneous reader queries")
        try:
            with self._session(key) as handle:
                return self._run(handle, key[1], sql, default_format or DEFAULT_FORMAT, dict(params or {}), query_id)
        finally:
            self._slots.release()

    def _run(
        self, handle: Any, database: str, sql: str, fmt: str, params: dict[str, str], query_id: str | None
    ) -> ReadResult:
        try:
            explained = handle.query(f"EXPLAIN AST {sql}", "TSVRaw", params=params).bytes().decode()
        except RuntimeError as e:
            raise ClickHouseError.from_engine(e) from None
        statements = read_guard.parse_ast(explained)
        try:
            read_guard.check(statements, self.policy, database)
        except QueryRefusedError as e:
            raise ClickHouseError.refused(e) from None
        fmt = read_guard.output_format(statements[0]) or fmt
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

    def _session_settings(self, settings: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The caller's settings, checked and capped, merged over the server's limits."""
        lim = self.limits
        out: dict[str, str] = {
            "max_execution_time": str(lim.max_execution_time),
            "max_result_bytes": str(lim.max_result_bytes),
            "max_memory_usage": str(lim.max_memory_usage),
        }
        for name, value in settings.items():
            if not _NAME.match(name):
                raise QueryRefusedError(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            if name == "readonly":
                if value not in ("1", "2"):
                    raise QueryRefusedError(*read_guard.READONLY, "Cannot modify 'readonly' setting in readonly mode")
                continue
            if name not in _CHANGEABLE and not name.startswith(_CHANGEABLE_PREFIXES):
                raise QueryRefusedError(*read_guard.READONLY, f"Cannot modify '{name}' setting in readonly mode")
            if name in ("max_execution_time", "max_result_bytes", "max_memory_usage"):
                cap = int(out[name])
                try:
                    asked = int(float(value))
                except ValueError:
                    raise QueryRefusedError(72, "CANNOT_PARSE_NUMBER", f"Cannot parse {name}={value!r}") from None
                out[name] = str(cap if asked <= 0 else min(asked, cap))
            else:
                out[name] = value
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

    def _open(self, key: _Key) -> Any:
        tenant, database, settings = key
        handle = self._connect()
        try:
            if tenant is not None:
                condition = f"{identifier(self._tenant_column)} = {literal(tenant)}"
                filters = ", ".join(f"{literal(f'{self.database}.{t}')}: {literal(condition)}" for t in self._tables)
                handle.query(f"SET additional_table_filters = {{{filters}}}")
            for name, value in settings:
                handle.query(f"SET {name} = {literal(value)}")
            handle.query(f"USE {identifier(database)}")
            handle.query("SET readonly = 1")
        except RuntimeError as e:
            handle.close()
            raise ClickHouseError.from_engine(e) from None
        return handle

    def _exists(self, database: str, table: str) -> bool:
        """Whether a stored table has this name; the catalogue is re-read on a miss, so a table
        created a moment ago is never taken for a CTE."""
        if (database, table) in self._catalog:
            return True
        with self._probe_lock:
            rows = self._probe.query("SELECT database, name FROM system.tables", "TSVRaw").bytes().decode()
        pairs = (line.split("\t", 1) for line in rows.splitlines())
        self._catalog = frozenset((p[0], p[1]) for p in pairs if len(p) == 2)
        return (database, table) in self._catalog
