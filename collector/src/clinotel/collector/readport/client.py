"""Reading an embedded store from the command line, through the read port's own read-only path.

`clinotel query`, `report`, `dashboards check` and the alert evaluator's reads open a store given
by `--data-dir` here: every statement goes through `SqlReader` (ClickHouse's parse checked, a
`readonly = 1` session), exactly as it would through a collector's `--http` port with an operator
token, so `TRUNCATE`, `DROP`, `ALTER … DELETE` or `INSERT` are refused whichever way the store is
opened. `ReadOnlyClient` answers the part of clickhouse-connect's client those commands use:
`query` (rows typed by clickhouse-connect's own Native decoder), `raw_query` and `command`.

Opening checks the directory first and creates nothing: a missing store, one held by a running
collector (read through it with `--server`), one on a read-only mount or one a newer release
migrated is refused with what to do instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from clinotel.collector.readport import guard as read_guard
from clinotel.collector.readport.reader import ClickHouseError, ReadLimits, SqlReader
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import StoreError, check_embedded
from clinotel.model.store import engine_message, first_line

__all__ = ["ReadOnlyClient", "check_read", "open_embedded", "refuse_newer_store"]


class _Source:
    """One answer's bytes as clickhouse-connect's response buffer reads them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.last_message: bytes | None = None
        self.exception_tag: str | None = None

    @property
    def gen(self) -> Iterator[bytes]:
        yield self.data

    def close(self) -> None:
        return None


def _text(value: Any) -> str:
    return str(value)


class ReadOnlyClient:
    """clickhouse-connect's reading calls over a `SqlReader` (every tenant: the operator's view).

    Errors are `sql_reader.ClickHouseError` (code, name, message), as the read port answers them.
    `parameters` are ClickHouse's server-side query parameters (`{name:Type}` in the SQL)."""

    def __init__(self, reader: SqlReader, database: str) -> None:
        self.reader = reader
        self.database = database

    def _read(
        self,
        sql: str,
        fmt: str,
        parameters: Mapping[str, Any] | None,
        settings: Mapping[str, Any] | None,
    ) -> bytes:
        result = self.reader.query(
            sql,
            tenant=None,
            database=self.database,
            default_format=fmt,
            params={k: _text(v) for k, v in (parameters or {}).items()},
            settings={k: _text(v) for k, v in (settings or {}).items()},
        )
        return result.body

    def query(
        self, query: str, parameters: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> Any:
        """A clickhouse-connect `QueryResult`: `result_rows`, `column_names`, `first_row`, …"""
        from clickhouse_connect.driver.ctypes import RespBuffCls
        from clickhouse_connect.driver.query import QueryContext
        from clickhouse_connect.driver.transform import NativeTransform

        body = self._read(query, "Native", parameters, settings)
        source = RespBuffCls(_Source(body))  # type: ignore[no-untyped-call]
        return NativeTransform.parse_response(source, QueryContext())

    def raw_query(
        self,
        query: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        fmt: str | None = None,
    ) -> bytes:
        """The answer's bytes in `fmt` (TabSeparated by default; a FORMAT clause wins)."""
        return self._read(query, fmt or "TabSeparated", parameters, settings)

    def command(
        self, cmd: str, parameters: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> str | int | list[str]:
        """A one-value answer as an int (or text), several values as a list, as clickhouse-connect does."""
        body = self._read(cmd, "TabSeparated", parameters, settings).decode("utf-8", errors="replace")
        first = body.split("\n", 1)[0]
        cells = first.split("\t") if first else []
        if len(cells) == 1:
            try:
                return int(cells[0])
            except ValueError:  # `lstrip("-").isdigit()` here let `--5` and `²` on to a traceback
                return cells[0]
        return cells

    def close(self) -> None:
        self.reader.close()


def open_embedded(
    data_dir: Path, database: str, limits: ReadLimits | None = None, *, held_advice: str | None = None
) -> ReadOnlyClient:
    """A read-only client on the embedded store at `data_dir`; StoreError when it cannot be read
    now (nothing is created either way; `held_advice`: as `check_embedded`'s)."""
    check_embedded(data_dir, database, reading=True, held_advice=held_advice)
    try:
        reader = SqlReader(data_dir.resolve(), database, schema.tenant_tables(), limits or ReadLimits())
    except (RuntimeError, ClickHouseError) as e:
        raise StoreError(f"cannot open the store {data_dir.resolve()}: {first_line(e)}") from e
    refuse_newer_store(reader.own_scalar, database)
    return ReadOnlyClient(reader, database)


def refuse_newer_store(value_of: Callable[[str], object], database: str) -> None:
    """StoreError when a newer release migrated the store `value_of` (one value of a query) reads:
    this release's queries name the tables and columns it knows, and its figures from a store laid
    out otherwise are not to be trusted. Nothing is said where the version cannot be read (no
    version table; a collector's read port, which hides it and refuses such a store itself)."""
    options = schema.SchemaOptions(database=database)
    try:
        stored = value_of(schema.stored_version_sql(options))
    except Exception:  # noqa: BLE001 - any refusal of this one query means: not readable here
        return
    schema.refuse_newer(int(str(stored)) if str(stored).isdigit() else 0, options)


def check_read(client: Any, sql: str) -> None:
    """For a server's client: refuse (ClickHouseError) anything but one read, judged on the
    server's own canonical text of the statement (`formatQuery`, which parses exactly one statement
    and runs nothing) before it runs; so a writer's credentials in CLICKHOUSE_USER do not turn
    `clinotel query` into a way to change the store. A server that will not run `formatQuery` (a
    clinotel collector's read port, which guards every query itself, or a server too old to have
    it) is left to its own permissions."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        canonical = client.raw_query(f"SELECT formatQuery(unhex('{sql.encode().hex()}'))", fmt="TSVRaw")
    except DatabaseError as e:
        code = re.search(r"Code: (\d+)", str(e))
        if code is not None and int(code.group(1)) == read_guard.SYNTAX_ERROR[0]:
            raise ClickHouseError(*read_guard.SYNTAX_ERROR, _engine_message(str(e))) from None
        return
    text = canonical.decode("utf-8", errors="replace").strip()
    words = text.split(None, 1)
    first = words[0].upper().lstrip("(") if words else ""
    if first not in _READ_WORDS or re.search(r"\bINTO\s+OUTFILE\b", text, re.IGNORECASE):
        raise ClickHouseError(*read_guard.READONLY, f"Cannot execute query in readonly mode: {first} is not a read")


_READ_WORDS: Final = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})


def _engine_message(text: str) -> str:
    message, name = engine_message(text)
    shown = f"{message} ({name})" if name else message
    return (shown.strip().splitlines() or [""])[0][:300]
