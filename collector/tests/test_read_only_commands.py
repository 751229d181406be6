"""Every reading command is read-only whichever store it opens: `--data-dir` goes through the read
port's own read-only path, refuses anything but a read, and creates nothing; a store it cannot
open now is one line saying what to do instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinotel.cli import main
from clinotel.collector.readport.client import open_embedded
from clinotel.collector.readport.reader import ClickHouseError
from clinotel.collector.store import schema
from clinotel.model import clinical
from clinotel.model.sql import literal
from tests.net import free_port

DESTRUCTIVE = (
    "TRUNCATE TABLE otel_traces",
    "DROP TABLE clinical_workflows",
    "ALTER TABLE clinical_workflows DELETE WHERE 1",
    "INSERT INTO clinotel_alert_events (Rule) VALUES ('x')",
    "OPTIMIZE TABLE otel_traces FINAL",
    "RENAME TABLE clinical_workflows TO gone",
    "CREATE TABLE t (a UInt8) ENGINE = Memory",
    "SELECT 1; DROP TABLE clinical_workflows",
    "SYSTEM DROP MARK CACHE",
)


def _workflows(client: Any, options: schema.SchemaOptions, n: int = 3) -> None:
    now = datetime.now(UTC)
    rows = [("st-marys", "triage", uuid.uuid4().hex, now - timedelta(minutes=i), now) for i in range(n)]
    columns = ["TenantId", "WorkflowKind", "TraceId", "StartTime", "EndTime"]
    client.insert(options.name(clinical.WORKFLOWS), rows, column_names=columns)


def test_the_read_only_client_refuses_every_write_and_reads_as_clickhouse_connect_does(
    client: Any, engine_dir: Path, options: schema.SchemaOptions
) -> None:
    _workflows(client, options)
    reader = open_embedded(engine_dir / "data", options.database)
    try:
        for sql in DESTRUCTIVE:
            with pytest.raises(ClickHouseError):
                reader.query(sql)
            with pytest.raises(ClickHouseError):
                reader.raw_query(sql)
            with pytest.raises(ClickHouseError):
                reader.command(sql)
        table = options.name(clinical.WORKFLOWS)
        sql = f"SELECT TenantId, StartTime, WorkflowKind FROM {table} FINAL ORDER BY StartTime"
        assert reader.query(sql).result_rows == client.query(sql).result_rows
        assert reader.query(sql).column_names == ("TenantId", "StartTime", "WorkflowKind")
        assert reader.command(f"SELECT count() FROM {options.name(clinical.WORKFLOWS)}") == 3
        assert reader.raw_query("SELECT 1 AS one", fmt="CSVWithNames") == b'"one"\n1\n'
        # a one-value answer is a number exactly when clickhouse-connect's is (`²` is a digit to
        # isdigit() and not to int(); `١٢` is 12 to both)
        for value in ("-7", "²", "--5", "١٢", " 5", "1_000", "x"):
            sql = f"SELECT {literal(value)}"
            assert reader.command(sql) == client.command(sql), value
    finally:
        reader.close()
    assert client.command(f"SELECT count() FROM {options.name(clinical.WORKFLOWS)}") == 3
    assert client.command(f"EXISTS TABLE {options.name(schema.TRACES)}") == 1


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store with a few rows, made by a process of its own (one engine per process)."""
    data = tmp_path_factory.mktemp("store") / "data"
    code = (
        "import uuid, clickhouse_connect\n"
        "from datetime import UTC, datetime\n"
        "from clinotel.collector.store import schema\n"
        "from clinotel.model import clinical\n"
        f"c = clickhouse_connect.get_client(dsn='chdb://{data}')\n"
        "o = schema.SchemaOptions()\n"
        "schema.apply(c, o)\n"
        "rows = [('st-marys', 'triage', uuid.uuid4().hex, datetime.now(UTC), datetime.now(UTC)) for _ in range(3)]\n"
        "c.insert(o.name(clinical.WORKFLOWS), rows, column_names=['TenantId', 'WorkflowKind', 'TraceId', "
        "'StartTime', 'EndTime'])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
    return data


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clinotel.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        check=False,
    )  # fmt: skip


def _error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.slow
def test_destructive_sql_through_data_dir_is_refused_and_changes_nothing(store: Path) -> None:
    for sql in DESTRUCTIVE[:3]:
        line = _error(_cli("query", "--data-dir", str(store), sql))
        assert line.startswith("Error: READONLY (164): "), line
    done = _cli("query", "--data-dir", str(store), "--format", "TSV", "SELECT count() FROM clinical_workflows FINAL")
    assert (done.returncode, done.stdout) == (0, "3\n"), done.stderr
    done = _cli("query", "--data-dir", str(store), "--format", "TSV", "EXISTS TABLE otel_traces")
    assert done.stdout == "1\n"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "SELECT 1"],
        ["report", "--out", "r.html"],
        ["dashboards", "check"],
        ["alerts", "evaluate", "--once"],
        ["query", "--data-dir", "nowhere/data", "SELECT 1"],
        ["report", "--data-dir", "nowhere/data"],
    ],
)
def test_reading_commands_create_nothing(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _run(argv, capsys)
    assert code == 1
    assert err.startswith("Error: no clinotel store at ")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [], "a reading command left something behind"


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, err = _run(["query", "--server", f"http://127.0.0.1:{port}", "SELECT 1"], capsys)
    assert code == 1
    assert err == f"Error: cannot reach http://127.0.0.1:{port}: connection refused\n"


@pytest.fixture
def read_only_copy(store: Path) -> Iterator[tuple[Path, list[str]]]:
    """A copy of the store that cannot be written: a read-only bind mount where the machine allows
    one, else a directory an unprivileged user cannot write. Yields it and how to run as reader."""
    base = Path(tempfile.mkdtemp(prefix="clinotel-ro-"))
    copy = base / "data"
    shutil.copytree(store, copy)
    mounted = base / "mounted"
    mounted.mkdir()
    try:
        if os.geteuid() == 0 and shutil.which("mount"):
            bind = ["mount", "--bind", "-o", "ro", str(copy), str(mounted)]
            bound = subprocess.run(bind, check=False, capture_output=True)
            if bound.returncode == 0:
                try:
                    yield mounted, []
                finally:
                    subprocess.run(["umount", str(mounted)], check=True)
                return
        if os.geteuid() == 0 and shutil.which("setpriv"):
            for path in (base, copy, *copy.rglob("*")):
                path.chmod(0o755 if path.is_dir() else 0o644)
            yield copy, ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
            return
        pytest.skip("neither a read-only mount nor another user is available here")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_a_store_on_a_read_only_mount_says_so_and_suggests_a_server(read_only_copy: tuple[Path, list[str]]) -> None:
    path, run_as = read_only_copy
    done = subprocess.run(
        [*run_as, sys.executable, "-m", "clinotel.cli", "query", "--data-dir", str(path), "SELECT 1"],
        capture_output=True, text=True, timeout=120, check=False, cwd="/",
    )  # fmt: skip
    line = _error(done)
    assert line.startswith(f"Error: the store {path} is ")
    assert "read-only file system" in line or "is not writable" in line
    assert "--server URL" in line
    # serve's advice fits the cause: a read-only mount is mounted read-write, not given to a user
    # (it said "give it to this user" for both: an operator's fault injection)
    done = subprocess.run(
        [*run_as, sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(path), "--insecure-no-auth",
         "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=120, check=False, cwd="/",
    )  # fmt: skip
    line = _error(done)
    expected = "(mount it read-write)" if "read-only file system" in line else "(give it to this user)"
    assert line.startswith(f"Error: the store {path} is "), line
    assert line.endswith(expected), line


def test_query_through_a_server_refuses_writes_even_with_a_writer_s_credentials(
    client: Any, options: schema.SchemaOptions
) -> None:
    from clinotel.collector.readport.client import check_read

    _workflows(client, options)
    table = options.name(clinical.WORKFLOWS)
    for sql in (f"TRUNCATE TABLE {table}", f"DROP TABLE {table}", f"ALTER TABLE {table} DELETE WHERE 1",
                f"INSERT INTO {table} (TenantId) VALUES ('x')", f"SELECT 1; DROP TABLE {table}"):  # fmt: skip
        with pytest.raises(ClickHouseError) as refused:
            check_read(client, sql)  # a client with every right, as a writer's credentials give
        assert refused.value.name in ("READONLY", "SYNTAX_ERROR")
    check_read(client, f"SELECT count() FROM {table}")
    check_read(client, f"DESCRIBE TABLE {table}")
    assert client.command(f"SELECT count() FROM {table}") == 3


def test_serve_on_a_store_it_cannot_create_says_so() -> None:
    """`serve --data-dir` under a directory the user cannot write said the read side's advice (copy
    the store, read it with --server), which means nothing to a collector (operator review)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs another user (setpriv as root) to meet a directory it cannot write")
    base = Path(tempfile.mkdtemp(prefix="clinotel-ro-", dir="/tmp"))  # pytest's own is 0700: nobody could not look
    parent = base / "root-owned"
    parent.mkdir()
    for p in (base, parent):
        p.chmod(0o755)
    target = parent / "missing" / "store"
    try:
        done = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", sys.executable, "-m",
             "clinotel.cli", "serve", "--data-dir", str(target), "--insecure-no-auth", "--otlp-http", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=120, check=False, cwd="/",
        )  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
    line = _error(done)
    assert line.startswith(f"Error: cannot create the store {target}: {parent} is not writable"), line
    assert "--server" not in line


def test_query_on_a_terminal_shows_control_characters_as_escapes(store: Path) -> None:
    """A tenant's stored text printed to an operator's terminal cleared it, set its title and
    forged lines (2026-12-07 review): on a terminal every control character is written as an
    escape, line breaks of the table kept; into a pipe the bytes are the engine's, untouched."""
    import pty
    import select

    sql = "SELECT concat('svc', char(27), '[2J', char(27), ']0;T', char(7), 'x') AS s"
    argv = [sys.executable, "-m", "clinotel.cli", "query", "--data-dir", str(store), sql]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the pty closes with the process
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        proc.wait(timeout=120)
    assert proc.returncode == 0, shown
    assert b"\x1b" not in shown, shown
    assert b"\x07" not in shown, shown
    assert b"svc\\x1b[2J\\x1b]0;T\\x07x" in shown, shown
    assert shown.count(b"\n") >= 3, "the table's lines kept"
    piped = subprocess.run([*argv, "--format", "TSVRaw"], capture_output=True, timeout=120, check=True)
    assert piped.stdout == b"svc\x1b[2J\x1b]0;T\x07x\n"


def test_a_store_a_newer_release_migrated_is_refused_to_readers(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a rollback, the older release's readers (`query`, `report`, `alerts evaluate`,
    `dashboards check`) named tables and columns the newer one had changed, and gave their figures
    as if nothing had: refused in one line, as `serve` and `schema apply` are; through --data-dir,
    and through --server (no server runs here: the embedded engine stands in as its client)."""
    import click

    from clinotel.model import store
    from clinotel.model.store import StoreError

    o = schema.SchemaOptions(database=f"newer_{uuid.uuid4().hex[:10]}")
    try:
        schema.apply(client, o)
        open_embedded(engine_dir / "data", o.database).close()  # this release's own store opens
        newer = schema.SCHEMA_VERSION + 1
        client.command(f"INSERT INTO {o.name(schema.VERSIONS)} (Version, Description) VALUES ({newer}, 'next')")
        with pytest.raises(StoreError) as refused:
            open_embedded(engine_dir / "data", o.database)
        assert f"schema version {newer}, newer than this clinotel knows ({schema.SCHEMA_VERSION})" in str(refused.value)
        assert "\n" not in str(refused.value)
        monkeypatch.setattr(store, "connect_server", lambda url, database=None: client)
        with pytest.raises(click.ClickException, match=f"schema version {newer}, newer than"):
            store.open_reading_store("http://clickhouse.invalid:8123", None, o.database)
        assert store.open_reading_store("http://clickhouse.invalid:8123", None, options.database) is client
    finally:
        client.command(f"DROP DATABASE IF EXISTS {o.database}")
