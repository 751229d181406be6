"""One way to reach ClickHouse: clickhouse-connect, on the embedded engine or a server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_DATA_DIR", "StoreError", "connect", "dsn_for"]

DEFAULT_DATA_DIR: Final = Path(".clinotel") / "data"
ENV_USER: Final = "CLICKHOUSE_USER"
ENV_PASSWORD: Final = "CLICKHOUSE_PASSWORD"


class StoreError(RuntimeError):
    """The store cannot be reached or opened."""


def dsn_for(data_dir: Path | None = None, url: str | None = None) -> str:
    """`chdb:///abs/path` for the embedded engine, or the server URL as given."""
    if url is not None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise StoreError(f"a ClickHouse server URL starts with http:// or https://, not {scheme or url!r}")
        return url
    path = (data_dir or DEFAULT_DATA_DIR).resolve()
    return f"chdb://{path}"


def connect(data_dir: Path | None = None, url: str | None = None, database: str | None = None) -> Any:
    """A clickhouse-connect client: the embedded engine on `data_dir`, or the server at `url`
    with user and password from CLICKHOUSE_USER and CLICKHOUSE_PASSWORD; `database` is the
    current database of its queries."""
    import clickhouse_connect  # lazy: a heavy import, and chDB with it

    dsn = dsn_for(data_dir, url)
    try:
        if url is None:
            Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=dsn, database=database or "")
        return clickhouse_connect.get_client(
            dsn=dsn,
            database=database or "",
            username=os.environ.get(ENV_USER, "default"),
            password=os.environ.get(ENV_PASSWORD, ""),
        )
    except Exception as e:
        hint = ""
        if url is None and "lock" in str(e).lower():
            hint = " (another process, probably `clinotel serve`, has it open: use --server to read through it)"
        elif "UNKNOWN_DATABASE" in str(e):
            hint = " (no clinotel store here yet: `clinotel serve` or `clinotel schema apply` creates it)"
        raise StoreError(f"cannot open {dsn}: {e}{hint}") from e
