"""`clinotel rollout rehearse`: the default canary kill fired on a copy of a flagd file, the real
flagd provider in file mode follows within its poll interval; the file itself is untouched; bad
input is one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from clinotel.rollout.rollout_cli import rollout

FLAGS = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "triage-model-v4": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "site"}, ["north", "south"]]}, "on", None]},
        }
    },
}


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.flagd.json"
    path.write_text(json.dumps(FLAGS), encoding="utf-8")
    return path


def test_the_canary_kill_is_rehearsed_and_measured(flag_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGD_DEADLINE_MS", "200")  # as a service would set it
    before = flag_file.read_bytes()
    args = ["rehearse", "--flags", str(flag_file), "--rule", "canary_kill_under_triage"]
    result = CliRunner().invoke(rollout, args)
    assert result.exit_code == 0, result.output
    assert "flag triage-model-v4 -> off (site=north)" in result.output
    assert "in scope: on -> off; without the scope: off -> off" in result.output
    found = re.search(r"FOLLOWED after (\d+) ms \(the provider re-checks the file every 200 ms\)", result.output)
    assert found is not None, result.output
    assert int(found.group(1)) < 2000  # within a few checks of the file, not a restart
    assert flag_file.read_bytes() == before  # only the copy changed


def test_a_switch_that_cannot_apply_is_one_line(tmp_path: Path, flag_file: Path) -> None:
    flags = json.loads(flag_file.read_text())
    flags["flags"]["other"] = flags["flags"].pop("triage-model-v4")
    flag_file.write_text(json.dumps(flags))
    result = CliRunner().invoke(rollout, ["rehearse", "--flags", str(flag_file), "--rule", "canary_kill_under_triage"])
    assert result.exit_code == 1
    assert "has no flag 'triage-model-v4'" in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rule", "no_such_rule"], "no rule named"),
        (["--rule", "x'; rm -rf /"], "no rule named"),
        (["--rule", "high_risk_under_triage"], "has no disable_flag action"),
        (["--flags", "/nonexistent.json"], "no such file"),
        (["--flags", "/etc"], "--flags"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--rules", "/nonexistent.yaml"], "No such file"),
    ],
)  # fmt: skip
def test_abuse_is_a_usage_error(flag_file: Path, args: list[str], says: str) -> None:
    base = {"--flags": str(flag_file), "--rule": "canary_kill_under_triage"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["rehearse"] + [x for k, v in {**base, **given}.items() for x in (k, v)]
    result = CliRunner().invoke(rollout, argv)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output


def test_a_broken_flag_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(rollout, ["rehearse", "--flags", str(bad), "--rule", "canary_kill_under_triage"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot read")


def test_a_flagd_environment_the_provider_cannot_use_is_one_line(
    flag_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAGD_DEADLINE_MS", "soon; rm -rf /")
    result = CliRunner().invoke(rollout, ["rehearse", "--flags", str(flag_file), "--rule", "canary_kill_under_triage"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the flagd provider cannot start (check the FLAGD_* environment)")
    assert "Traceback" not in result.output
