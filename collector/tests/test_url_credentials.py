"""A ClickHouse server URL with credentials in it (`http://user:password@host:8123`): the password
is never written to the log's directory, never printed, and a changed password does not orphan
the log (its owner is the server's address)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import StoreError, store_id
from clinotel.collector.tokens import Tokens
from clinotel.model.store import reach_error, shown_url, without_credentials
from collector.tests.otlp_clients import send_workflows

SECRET = "s3cret-pw-7f2"


def _collector(client: Any, options: schema.SchemaOptions, tokens: Tokens, wal: Path, password: str) -> Collector:
    config = CollectorConfig(
        clickhouse_url=f"http://writer:{password}@clickhouse.invalid:8123",
        database=options.database,
        wal_dir=wal,
        otlp_http=("127.0.0.1", 0),
        otlp_grpc=None,
        http=None,
        tokens=tokens,
    )
    return Collector(config, client=client)


@pytest.fixture
def started(client: Any, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path) -> Iterator[Collector]:
    c = _collector(client, options, tokens, tmp_path / "wal", SECRET)
    c.start()
    yield c
    c.stop()


def test_the_password_is_not_written_to_the_log_directory(started: Collector, tmp_path: Path) -> None:
    assert started.http is not None
    send_workflows(f"http://127.0.0.1:{started.http.port}", "http/protobuf", 3)
    files = [p for p in (tmp_path / "wal").rglob("*") if p.is_file()]
    assert files, "the log directory holds its owner record"
    leaked = [p.name for p in files if SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_a_changed_password_still_owns_the_same_log(
    client: Any, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    first = _collector(client, options, tokens, tmp_path / "wal", SECRET)
    first.start()
    first.stop()
    rotated = _collector(client, options, tokens, tmp_path / "wal", "rotated-pw-0c1")
    rotated.start()  # LogOwnedError if the owner were the URL with its password
    rotated.stop()


@pytest.mark.parametrize(
    "url",
    [
        f"http://writer:{SECRET}@127.0.0.1:9",
        f"https://writer:{SECRET}@[::1]:8443/path?x=1",
        f"http://:{SECRET}@127.0.0.1:9",
    ],
)
def test_messages_never_carry_the_password(url: str) -> None:
    assert SECRET not in shown_url(url)
    assert "***" in shown_url(url)
    assert SECRET not in without_credentials(url)
    assert "writer" not in without_credentials(url)
    assert SECRET not in store_id(None, url, "clinotel")
    assert SECRET not in reach_error(url, ConnectionRefusedError(111, "Connection refused"))


def test_an_unreachable_server_with_credentials_is_refused_without_them(tmp_path: Path) -> None:
    from clinotel.collector.store.embedded import connect

    with pytest.raises(StoreError) as refused:
        connect(url=f"http://writer:{SECRET}@127.0.0.1:9")
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        f"//writer:{SECRET}@127.0.0.1:9",  # the scheme left out: the whole text was shown
        f"writer:{SECRET}@127.0.0.1:9",
        f"{SECRET}@127.0.0.1:9",
        f"ftp://writer:{SECRET}@127.0.0.1:9",
    ],
)
def test_a_url_without_a_server_scheme_is_refused_without_its_credentials(url: str) -> None:
    from clinotel.collector.store.embedded import dsn_for

    with pytest.raises(StoreError, match="http:// or https://") as refused:
        dsn_for(url=url)
    assert SECRET not in str(refused.value)


def test_a_log_owned_with_credentials_by_an_earlier_version_is_kept_and_cleaned(
    client: Any, options: schema.SchemaOptions, tokens: Tokens, tmp_path: Path
) -> None:
    import json

    from clinotel.collector.log.wal import OWNER_FILE

    wal = tmp_path / "wal"
    wal.mkdir()
    legacy = f"http://writer:{SECRET}@clickhouse.invalid:8123#{options.database}"
    (wal / OWNER_FILE).write_text(json.dumps({"store": legacy}), encoding="utf-8")
    c = _collector(client, options, tokens, wal, SECRET)
    c.start()  # LogOwnedError if the old owner's credentials made it another store
    c.stop()
    assert SECRET not in (wal / OWNER_FILE).read_text(encoding="utf-8")


@pytest.mark.parametrize("password", ["", "wrong-token-0123456789abcdef"])
def test_a_refused_password_is_one_line_naming_the_variables(
    module_collector: Any, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    """`--server` (and `--clickhouse-url`) refused by the server: one line saying the credentials
    were refused, through clickhouse-connect against a real read port. A change to the engine
    error's pattern left `reach_error` reading a group that was gone: every refused password was
    an IndexError traceback (an upgrade review)."""
    from clinotel.model.store import ENV_PASSWORD, open_reading_store

    assert module_collector.admin is not None
    monkeypatch.setenv(ENV_PASSWORD, password)
    url = f"http://127.0.0.1:{module_collector.admin.port}"
    with pytest.raises(click.ClickException) as refused:
        open_reading_store(url, None)
    message = refused.value.format_message()
    assert "refused the credentials (CLICKHOUSE_USER / CLICKHOUSE_PASSWORD)" in message, message
    assert "\n" not in message
    assert password == "" or password not in message
