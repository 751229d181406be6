"""Reaching the store from a command that reads it: a ClickHouse server (or a collector's read
port) through clickhouse-connect, or an embedded store's directory through the collector's
read-only path, which is imported only then (it brings chDB).

Errors are one line: what could not be reached or opened, and what to do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import click

from clinotel.model.tables import DEFAULT_DATABASE
from clinotel.model.terminal import printable

__all__ = [
    "DEFAULT_DATA_DIR",
    "ENV_PASSWORD",
    "ENV_USER",
    "StoreError",
    "connect_server",
    "error_line",
    "first_line",
    "open_reading_store",
    "reach_error",
    "reading_store",
    "shown_url",
    "without_credentials",
]

DEFAULT_DATA_DIR: Final = Path(".clinotel") / "data"
"""The embedded store's directory when none is given."""
ENV_USER: Final = "CLICKHOUSE_USER"
ENV_PASSWORD: Final = "CLICKHOUSE_PASSWORD"
_ERRNO: Final = re.compile(r"\[Errno (-?\d+)\] ([^'\"()\]]+)")
_CH_ERROR: Final = re.compile(r"Code: (\d+)\. DB::Exception: ")
_REFUSED_CREDENTIALS: Final = {"516": "AUTHENTICATION_FAILED", "194": "REQUIRED_PASSWORD"}
"""ClickHouse's codes (and their names) for credentials it refused."""


class StoreError(RuntimeError):
    """The store cannot be reached or opened."""


def without_credentials(url: str) -> str:
    """`url` without a user or password in it: what names the server (a log's owner, say)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def shown_url(url: str) -> str:
    """`url` as messages and logs show it: any userinfo in it (a user and password, or a bare
    token as in `https://TOKEN@host/`) replaced whole by `***`. Never raises: a URL that does not
    parse is masked as well (it is shown in the error that refuses it)."""
    if match := _AUTHORITY_USERINFO.match(url):
        return f"{match.group(1)}***@{url[match.end() :]}"
    head = re.split(r"[/?#]", url, maxsplit=1)[0]
    if "//" not in url and "@" in head:  # `user:password@host`, without a scheme
        return "***@" + url[len(head.rpartition("@")[0]) + 1 :]
    return url


_AUTHORITY_USERINFO: Final = re.compile(r"([\x00-\x20]*(?:[A-Za-z][A-Za-z0-9+.-]*:)?//)[^/?#]*@")
"""The start of a URL up to its authority's last `@` (where urlsplit ends the userinfo)."""


def reach_error(url: str, error: Exception) -> str:
    """One line for a server that could not be reached or refused the client (never its password)."""
    url = shown_url(url)
    text = str(error)
    if match := _CH_ERROR.search(text):
        said, name = engine_message(text)
        message = printable(said.splitlines()[0]) if said else ""
        if match.group(1) in _REFUSED_CREDENTIALS or name in _REFUSED_CREDENTIALS.values():
            return f"{url} refused the credentials ({ENV_USER} / {ENV_PASSWORD}): {message[:200]}"
        return f"{url} answered: Code {match.group(1)}: {message[:300]}"
    if match := _ERRNO.search(text):
        return f"cannot reach {url}: {match.group(2).strip().lower()}"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return f"cannot reach {url}: timed out"
    return f"cannot reach {url}: {first_line(error, 200)}"


def first_line(error: Exception, limit: int = 300) -> str:
    """What `error` says, its first line only (at most `limit` characters, controls escaped: an
    engine's error quotes the data it failed on), or its kind."""
    text = str(error).strip()
    return printable(text.splitlines()[0][:limit]) if text else type(error).__name__


_EXCEPTION: Final = "DB::Exception: "


def engine_message(text: str) -> tuple[str, str | None]:
    """(message, NAME) of ClickHouse's `Code: N. DB::Exception: message (NAME) (version V)`, its
    suffixes cut without a pattern anchored at the end: such patterns read a message's runs of
    spaces once from each start, and an error quoting a reader's 20,000 spaces held the read
    port's interpreter 4 s (2026-12-07 review). The message is the text after the first
    `DB::Exception: `, or all of it."""
    start = text.find(_EXCEPTION)  # the first: a later one may be data the error quotes
    message = (text[start + len(_EXCEPTION) :] if start >= 0 else text).strip()
    message = message.removesuffix(".").rstrip()
    cut = message.rfind("(version ")
    if cut >= 0 and message.endswith(")"):
        version = message[cut:]  # `(version 24.8.4.13 (official build))` nests once
        if version.count("(") == version.count(")") <= 2:
            message = message[:cut].rstrip().removesuffix(".").rstrip()
    name = None
    if message.endswith(")"):
        opened = message.rfind("(")
        word = message[opened + 1 : -1]
        if opened >= 0 and word[:1].isupper() and word.replace("_", "").isalnum() and word.isupper():
            name, message = word, message[:opened].rstrip()
    return message.rstrip(". "), name


def error_line(error: Exception) -> str:
    """A query error as one line: `NAME (code): message`, from the read-only path or a server,
    its controls escaped (an engine's error quotes the data it failed on)."""
    return printable(_error_line(error))


def _error_line(error: Exception) -> str:
    name, code, message = (getattr(error, attr, None) for attr in ("name", "code", "message"))
    if isinstance(name, str) and isinstance(code, int) and isinstance(message, str):  # the read port's own
        return f"{name} ({code}): {message.strip().splitlines()[0] if message.strip() else ''}"
    text = str(error).strip()
    if match := _CH_ERROR.search(text):
        message, found = engine_message(text[match.start() :])
        if found:
            return f"{found} ({match.group(1)}): {message.splitlines()[0] if message else ''}"
        return f"Code {match.group(1)}: {message.splitlines()[0] if message else ''}"
    return first_line(error, 500)


def connect_server(url: str, database: str | None = None) -> Any:
    """A clickhouse-connect client for the server (or read port) at `url`, with user and password
    from CLICKHOUSE_USER and CLICKHOUSE_PASSWORD; `database` is the current database."""
    import logging
    from urllib.parse import urlsplit

    import clickhouse_connect

    # clickhouse-connect sets urllib3 to WARNING on import: its retry warnings would repeat, with a
    # traceback's worth of detail, the one-line error this raises
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise StoreError(f"a ClickHouse server URL starts with http:// or https://, not {scheme or url!r}")
    try:
        return clickhouse_connect.get_client(
            dsn=url,
            database=database or "",
            username=os.environ.get(ENV_USER, "default"),
            password=os.environ.get(ENV_PASSWORD, ""),
        )
    except Exception as e:
        hint = ""
        if "UNKNOWN_DATABASE" in str(e):
            hint = " (no clinotel store here yet: `clinotel serve` or `clinotel schema apply` creates it)"
        raise StoreError(f"{reach_error(url, e)}{hint}") from e


def reading_store(f: Callable[..., Any]) -> Callable[..., Any]:
    """`--server URL | --data-dir DIR` for a command that reads the store; see `open_reading_store`."""
    f = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Read the embedded engine's data directory directly [default: ./.clinotel/data].",
    )(f)
    return click.option(
        "--server",
        metavar="URL",
        help="Read through a running `clinotel serve` (its --http address) or any ClickHouse server; "
        "the read token (or password) from CLICKHOUSE_PASSWORD.",
    )(f)


def open_reading_store(
    server: str | None, data_dir: Path | None, database: str | None = None, *, held_advice: str | None = None
) -> Any:
    """A client for `--server` (clickhouse-connect) or `--data-dir` (the collector's read-only
    path, as its read port reads), or a ClickException saying why not. Creates nothing.
    `held_advice`: what to do when a running collector holds the data directory, for a command
    its read port cannot serve (by default: read through that port with --server)."""
    if server is not None and data_dir is not None:
        raise click.UsageError("give --server or --data-dir, not both")
    try:
        if server is not None:
            client = connect_server(server, database)
            try:
                from clinotel.collector.readport.client import refuse_newer_store
            except ImportError:  # the readers alone: a server's store is read as it is
                return client
            refuse_newer_store(client.command, database or DEFAULT_DATABASE)
            return client
        try:
            from clinotel.collector.readport.client import open_embedded
        except ImportError:
            raise StoreError(
                "reading a data directory needs clinotel-collector installed (or read through --server URL)"
            ) from None
        path = data_dir if data_dir is not None else DEFAULT_DATA_DIR
        return open_embedded(path, database or DEFAULT_DATABASE, held_advice=held_advice)
    except StoreError as e:
        raise click.ClickException(str(e)) from None
