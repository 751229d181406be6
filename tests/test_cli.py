"""The `clinotel` command: subcommands registered by components, help, semconv tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from clinotel.cli import cli
from clinotel.model.tables import ROLLUP_TABLES
from clinotel.semconv import REGISTRY, render_markdown
from clinotel.semconv.attributes import GROUPS

COMMANDS = ("demo", "semconv", "schema", "serve", "query", "dashboards", "report", "alerts")


def test_help_lists_the_registered_subcommands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.output
    assert "unavailable" not in result.output


def test_every_subcommand_has_help() -> None:
    for name in COMMANDS:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_serve_and_alerts_evaluate_share_the_alerting_options() -> None:
    """One set of alerting options: the same names, defaults and kinds on both commands."""
    from clinotel.alerts.cli import evaluate
    from clinotel.cli._serve import serve

    def alerting(command: click.Command) -> dict[str, tuple[object, ...]]:
        names = ("rules", "every", "alertmanager", "pagerduty", "pagerduty_url", "webhook", "sinks", "flagd_file",
                 "flag_webhook", "dry_run")  # fmt: skip
        return {
            p.name: (tuple(p.opts), p.default, p.multiple, getattr(p, "is_flag", False), p.type.name)
            for p in command.params
            if p.name in names
        }

    assert alerting(serve) == alerting(evaluate)
    assert len(alerting(serve)) == 10
    assert alerting(serve)["every"][:2] == (("--every", "--evaluate-every"), "30s")


def test_serve_fsync_parts_reaches_the_collector_and_is_refused_with_a_server(tmp_path: Path) -> None:
    """`--fsync-parts` is a `serve` option; with --clickhouse-url it stops before anything is bound
    or created, with one line that says what to set on the server instead."""
    shown = CliRunner().invoke(cli, ["serve", "--help"])
    assert shown.exit_code == 0
    assert "--fsync-parts" in shown.output
    wal = tmp_path / "wal"
    server = ["--clickhouse-url", "http://127.0.0.1:9", "--insecure-no-auth"]
    refused = CliRunner().invoke(cli, ["serve", *server, "--fsync-parts", "--wal-dir", str(wal)])
    assert refused.exit_code == 1
    assert "--fsync-parts is for the embedded store" in refused.output
    assert "fsync_after_insert" in refused.output
    assert not wal.exists()


def test_reading_an_empty_data_dir_says_what_to_do(tmp_path: Path) -> None:
    # a separate process: chDB opens one data directory per process
    done = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "dashboards", "check", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "`clinotel schema apply` creates it" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == [], "a reading command creates nothing"


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("clinotel, version")


def test_semconv_docs_renders_the_registry() -> None:
    result = CliRunner().invoke(cli, ["semconv", "docs"])
    assert result.exit_code == 0
    assert result.output == render_markdown(REGISTRY, GROUPS)


def test_semconv_scrub_reads_arguments_and_stdin() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["semconv", "scrub", "call 555-123-4567"]).output == "call [REDACTED]\n"
    out = runner.invoke(cli, ["semconv", "scrub"], input="Dr Smith\nESI-2\n").output
    assert out == "[REDACTED]\nESI-2\n"


ROLLUP_SETTINGS = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store.embedded import PACKED_PART_SETTING, connect
from clinotel.model.tables import ROLLUP_TABLES
client = connect(Path(sys.argv[1]))
rows = client.query(f"SELECT name, engine_full FROM system.tables WHERE name IN {tuple(ROLLUP_TABLES)}").result_rows
print(json.dumps({name: f"{PACKED_PART_SETTING} = 0" in engine for name, engine in rows}))
"""


AT_VERSION = r"""
import sys
from pathlib import Path
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import connect
schema.apply(connect(Path(sys.argv[1])), schema.SchemaOptions(), until=int(sys.argv[2]))
"""


def test_a_refresh_of_a_store_from_before_its_rollups_says_to_migrate_first(tmp_path: Path) -> None:
    """A store at version 18 has every rollup but the change events' (19): a refresh (a `--every`
    service restarted on a new clinotel before `schema apply`) says what is missing and what to
    run, instead of the engine's error halfway through."""
    data = str(tmp_path / "data")
    subprocess.run([sys.executable, "-c", AT_VERSION, data, "18"], capture_output=True, timeout=120, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "schema", "refresh-rollups", "--data-dir", data],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: clinotel has no clinotel_changes yet (a store from before this clinotel): run `clinotel schema "
        "apply` first"
    )


def test_schema_refresh_rollups_recomputes_an_embedded_store(tmp_path: Path) -> None:
    def clinotel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clinotel.cli", *args], capture_output=True, text=True, timeout=300, check=False
        )

    data = str(tmp_path / "data")
    refused = clinotel("schema", "refresh-rollups", "--data-dir", data)
    assert refused.returncode == 1
    assert "no clinotel store at" in refused.stderr
    assert not (tmp_path / "data").exists(), "a refresh creates no store"
    assert clinotel("schema", "apply", "--data-dir", data).returncode == 0
    settings = subprocess.run(
        [sys.executable, "-c", ROLLUP_SETTINGS, data], capture_output=True, text=True, timeout=120, check=True
    )  # fmt: skip
    unpacked = json.loads(settings.stdout.strip().splitlines()[-1])
    assert unpacked == dict.fromkeys(ROLLUP_TABLES, True), "the rollups write full parts, as under `serve`"
    done = clinotel("schema", "refresh-rollups", "--data-dir", data)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refreshed 0 tenant-month(s) from the first: 0 rollup rows in "), done.stdout
    window = clinotel("schema", "refresh-rollups", "--data-dir", data, "--since", "2026-11-01")
    assert window.returncode == 0, window.stderr
    assert "from 2026-11-01" in window.stdout
    far = clinotel("schema", "refresh-rollups", "--data-dir", data, "--since", "1900-01-01")
    assert far.returncode == 2
    assert "a refresh starts on a day from 1970-01-02 to 2105-12-31" in far.stderr


def test_schema_refresh_rollups_every_keeps_refreshing_until_sigterm(tmp_path: Path) -> None:
    """Where no clinotel collector runs (the contrib stack, a cluster's shard) the command keeps the
    rollups fresh itself, and stops cleanly on SIGTERM."""
    import signal
    import time

    data = str(tmp_path / "data")
    cli = [sys.executable, "-m", "clinotel.cli", "schema"]
    applied = subprocess.run([*cli, "apply", "--data-dir", data], capture_output=True, timeout=300, check=False)
    assert applied.returncode == 0
    both = subprocess.run(
        [*cli, "refresh-rollups", "--data-dir", data, "--every", "1", "--since", "2026-01-01"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert both.returncode == 2
    assert "--since is for one refresh" in both.stderr
    proc = subprocess.Popen(
        [*cli, "refresh-rollups", "--data-dir", data, "--every", "1", "--window-days", "3"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        first = [proc.stderr.readline(), proc.stderr.readline()]
        assert first[0].startswith("refreshing the rollups of clinotel every 1 s (the last 3 days"), first
        assert first[1].startswith("refreshed 0 tenant-month(s) from the first"), "everything at start"
        time.sleep(3)  # an unchanged store is not recomputed (nor printed) at each interval
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        rest = proc.stderr.read() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()
    assert code == 0
    assert "refreshed" not in rest, rest
