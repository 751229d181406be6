"""The kill switch's command-line options (`clinotel alerts evaluate`, `clinotel serve --rules`):
`--flagd-file`, `--flag-webhook`, `--dry-run`, and what they refuse before anything is opened."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from clinotel.alerts.actions import FlagdFile, Webhook
from clinotel.alerts.cli import alerts
from clinotel.alerts.config import AlertingConfig
from clinotel.alerts.options import FLAGD_DIR_ENV, alerting_config
from clinotel.alerts.wiring import build_switch
from clinotel.cli._serve import serve

FLAGS = {"flags": {"triage-model-v4": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                       "defaultVariant": "off"}}}  # fmt: skip


def _config(
    flagd: Path | None = None, webhook: str | None = None, dry_run: bool = False, allowed: Path | None = None
) -> AlertingConfig:
    env = {FLAGD_DIR_ENV: str(allowed)} if allowed is not None else {}
    return alerting_config(None, "30s", (), False, None, (), (), flagd, webhook, dry_run, env=env)


@pytest.fixture
def flag_dir(tmp_path: Path) -> Path:
    d = tmp_path / "flags"
    d.mkdir()
    (d / "flags.flagd.json").write_text(json.dumps(FLAGS), encoding="utf-8")
    return d


def test_a_flagd_file_inside_the_allowed_directory_is_the_switch(flag_dir: Path) -> None:
    config = _config(flag_dir / "flags.flagd.json", dry_run=True, allowed=flag_dir)
    assert config.flagd_file == flag_dir / "flags.flagd.json"
    assert config.dry_run
    switch = build_switch(config)
    assert isinstance(switch, FlagdFile)
    assert switch.path == flag_dir / "flags.flagd.json"


def test_the_allowed_directory_defaults_to_the_working_directory(
    flag_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(flag_dir)
    assert _config(Path("flags.flagd.json")).flagd_file == flag_dir / "flags.flagd.json"
    monkeypatch.chdir(flag_dir.parent)
    assert _config(Path("flags/flags.flagd.json")).flagd_file == flag_dir / "flags.flagd.json"
    monkeypatch.chdir(flag_dir / "..")
    with pytest.raises(click.BadParameter, match="outside"):
        _config(Path("/etc/hosts"))


def test_a_flag_webhook_on_loopback_is_the_switch() -> None:
    switch = build_switch(_config(webhook="http://127.0.0.1:9/flags"))
    assert isinstance(switch, Webhook)
    assert switch.url == "http://127.0.0.1:9/flags"


def _abuse(flag_dir: Path, name: str) -> Path:
    """A file the kill switch must refuse to rewrite, by name."""
    outside = flag_dir.parent / "outside.flagd.json"
    outside.write_text(json.dumps(FLAGS), encoding="utf-8")
    target = flag_dir / "flags.flagd.json"
    made = {
        "outside": outside,
        "dotdot": flag_dir / ".." / "outside.flagd.json",
        "symlink": flag_dir / "link.flagd.json",
        "symlinked_dir": flag_dir / "linkdir" / "flags.flagd.json",
        "directory": flag_dir,
        "missing": flag_dir / "missing.json",
        "not_json": flag_dir / "rules.yaml",
        "not_flagd": flag_dir / "other.json",
        "flags_not_object": flag_dir / "list.json",
        "fifo": flag_dir / "fifo",
        "huge": flag_dir / "huge.json",
        "deep": flag_dir / "deep.json",
    }
    (flag_dir / "link.flagd.json").symlink_to(target)
    (flag_dir / "linkdir").symlink_to(flag_dir)
    (flag_dir / "rules.yaml").write_text("rules: []\n", encoding="utf-8")
    (flag_dir / "other.json").write_text(json.dumps({"flags": {"x": {"state": "ENABLED"}}}), encoding="utf-8")
    (flag_dir / "list.json").write_text(json.dumps({"flags": ["x"]}), encoding="utf-8")
    os.mkfifo(flag_dir / "fifo")
    (flag_dir / "huge.json").write_text(" " * (5 << 20), encoding="utf-8")
    (flag_dir / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    return made[name]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("outside", "is outside"),
        ("dotdot", "is outside"),
        ("symlink", "symlink"),
        ("symlinked_dir", "symlink"),
        ("directory", "not a regular file"),
        ("missing", "cannot read"),
        ("not_json", "is not JSON"),
        ("not_flagd", "not a flagd flag-definition file"),
        ("flags_not_object", "not a flagd flag-definition file"),
        ("fifo", "not a regular file"),
        ("huge", "over 4 MiB"),
        ("deep", "is not JSON"),
    ],
)
def test_a_flagd_file_the_switch_must_not_rewrite_is_refused(flag_dir: Path, name: str, says: str) -> None:
    path = _abuse(flag_dir, name)
    before = {p: p.read_bytes() for p in flag_dir.parent.rglob("*.json") if p.is_file() and not p.is_symlink()}
    with pytest.raises(click.BadParameter, match=says) as caught:
        _config(path, allowed=flag_dir)
    assert caught.value.param_hint == "--flagd-file"
    assert "\n" not in caught.value.format_message()
    after = {p: p.read_bytes() for p in before}
    assert after == before, "nothing is written"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.1/x", "http://", "127.0.0.1:9", "http://127.0.0.1:9/\nx", "gopher://x"],
)
def test_a_flag_webhook_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(click.BadParameter) as caught:
        _config(webhook=url)
    assert caught.value.param_hint == "--flag-webhook"


def test_two_switches_are_refused(flag_dir: Path) -> None:
    with pytest.raises(click.UsageError, match="two kill switches"):
        _config(flag_dir / "flags.flagd.json", "http://127.0.0.1:9/flags", allowed=flag_dir)


@pytest.mark.parametrize(
    ("command", "base"),
    [(alerts, ["evaluate", "--once", "--data-dir", "{tmp}/store"]), (serve, ["--data-dir", "{tmp}/store", "--rules",
                                                                            "{tmp}/rules.yaml"])],
)  # fmt: skip
def test_the_commands_refuse_a_bad_switch_in_one_line_before_opening_anything(
    tmp_path: Path, command: click.Command, base: list[str]
) -> None:
    (tmp_path / "flags.json").write_text("{not json", encoding="utf-8")
    argv = [a.format(tmp=tmp_path) for a in base] + ["--flagd-file", str(tmp_path / "flags.json")]
    result = CliRunner().invoke(command, argv, env={FLAGD_DIR_ENV: str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert "--flagd-file" in result.output
    assert "is not JSON" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "store").exists(), "nothing opened or created"


def test_serve_refuses_switch_options_without_rules(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path / "store"), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "give --rules FILE too" in result.output
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("argv", [["evaluate", "--help"]])
def test_help_names_the_switch_options(argv: list[str]) -> None:
    for command, args in ((alerts, argv), (serve, ["--help"])):
        text = " ".join(CliRunner().invoke(command, args).output.split())
        for option in ("--flagd-file", "--flag-webhook", "--dry-run", FLAGD_DIR_ENV):
            assert option in text, (command.name, option)


def test_serve_without_rules_ignores_the_ticket_webhooks_variable(tmp_path: Path) -> None:
    """CLINOTEL_TICKET_WEBHOOK_URL, set on a host for its evaluator, stopped a plain collector at
    start as if `--webhook` were given without `--rules` (a review); given on the command line it
    still does."""
    env = {"CLINOTEL_TICKET_WEBHOOK_URL": "https://tickets.example.org/hook/SECRET"}
    missing = str(tmp_path / "no-such-tokens.toml")
    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path / "store"), "--tokens", missing], env=env)
    assert "give --rules FILE too" not in result.output, result.output
    assert "no-such-tokens.toml" in result.output, result.output
    given = CliRunner().invoke(
        serve, ["--data-dir", str(tmp_path / "store"), "--webhook", env["CLINOTEL_TICKET_WEBHOOK_URL"]]
    )
    assert given.exit_code == 2
    assert "give --rules FILE too" in given.output


def test_serve_refuses_a_runbook_base_without_rules(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path / "store"), "--runbook-base", "https://wiki.x/rb"])
    assert result.exit_code == 2, result.output
    assert "--runbook-base links the pages of --rules" in result.output
