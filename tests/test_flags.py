"""The flag inventory and `clinotel flags check`: what CI refuses, with and without telemetry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from clinotel.collector.service import Collector
from clinotel.rollout.flags_cli import evaluated_flags, flags
from clinotel.rollout.inventory import InventoryError, check, load
from collector.tests.fixtures import READ_TOKEN, WRITE_TOKEN

GOOD = """flags:
  - key: triage-model-v4
    owner: triage-ml-team
    created: 2026-01-10
    expiry: {expiry}
    exposure: {{tenant: st-marys, site: north, workflow_step: decide}}
    kill_criteria: [canary_kill_under_triage]
    retirement: full rollout for 30 days without a kill criterion firing
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flags.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_inventory_passes(tmp_path: Path) -> None:
    path = _file(tmp_path, GOOD.format(expiry=date.today() + timedelta(days=30)))
    result = CliRunner().invoke(flags, ["check", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 flags: 0 problem(s)" in result.output


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("expiry: {expiry}", "expiry: 2020-01-01"), "expired on 2020-01-01"),
        (("owner: triage-ml-team", "owner: ''"), "has no owner"),
        (("kill_criteria: [canary_kill_under_triage]", "kill_criteria: []"), "has no kill criteria"),
        (("[canary_kill_under_triage]", "[no_such_rule]"), "kill criterion 'no_such_rule' is not an alert rule"),
    ],
)
def test_ci_fails_on_each_problem(tmp_path: Path, change: tuple[str, str], says: str) -> None:
    text = GOOD.replace(*change).format(expiry=date.today() + timedelta(days=30))
    result = CliRunner().invoke(flags, ["check", "--file", str(_file(tmp_path, text))])
    assert result.exit_code == 1
    assert f"FAIL triage-model-v4: {says}" in result.output


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("flags: [{key: x}]", "flags.0.created"),
        ("flags:\n  - {key: 'a b; rm -rf', owner: t, created: 2026-01-01, expiry: 2026-02-01}", "flags.0.key"),
        ("flags:\n  - {key: x, owner: Dr Jane Smith, created: 2026-01-01, expiry: 2026-02-01}", "flags.0.owner"),
        ("flags:\n  - {key: x, owner: t1, created: 2026-01-01, expiry: 2026-02-01, exposure: {ward: 3}}",
         "exposure.ward"),
        ("flags: [", "not valid YAML"),
        ("- just a list", "(top)"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_clear_error(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(InventoryError, match=r"flags\.yaml") as raised:
        load(_file(tmp_path, text))
    assert says in str(raised.value)
    result = CliRunner().invoke(flags, ["check", "--file", str(tmp_path / "flags.yaml")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_telemetry_finds_unlisted_stale_and_expired_but_live_flags() -> None:
    from clinotel.rollout.inventory import Flag, Inventory

    now = datetime(2026, 3, 1, tzinfo=UTC)
    inventory = Inventory(flags=(
        Flag(key="live", owner="t1", created=date(2026, 1, 1), expiry=date(2026, 6, 1), kill_criteria=("r",)),
        Flag(key="stale", owner="t1", created=date(2026, 1, 1), expiry=date(2026, 6, 1), kill_criteria=("r",)),
        Flag(key="old", owner="t1", created=date(2025, 1, 1), expiry=date(2026, 2, 1), kill_criteria=("r",)),
    ))  # fmt: skip
    evaluated = {"live": now, "old": now, "stale": now - timedelta(days=20), "rogue": now}
    found = {str(p) for p in check(inventory, now.date(), ["r"], evaluated, 14, now)}
    assert found == {
        "old: expired on 2026-02-01 and still evaluated",
        "rogue: is evaluated in telemetry but not in the inventory",
        "stale: not evaluated for 14 days (last on 2026-02-09): retire it",
    }


def test_flags_check_against_the_store(collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboards.tests.demo_data import load_demo

    load_demo(collector, WRITE_TOKEN, workflows=300)
    seen = evaluated_flags(collector.client, collector.options.database, datetime.now(UTC) - timedelta(days=1))
    assert set(seen) == {"triage-model-v4"}
    empty = _file(tmp_path, "flags: []\n")
    assert collector.admin is not None
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", READ_TOKEN)
    args = ["check", "--file", str(empty), "--server", f"http://127.0.0.1:{collector.admin.port}",
            "--database", collector.options.database]  # fmt: skip
    result = CliRunner().invoke(flags, args)
    assert result.exit_code == 1
    assert "FAIL triage-model-v4: is evaluated in telemetry but not in the inventory" in result.output
