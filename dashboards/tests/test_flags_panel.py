"""The rollout dashboard's flags panel, known answers: exposure per flag, variant and scope from the
decide stages' `feature_flag.*` attributes, and the inventory's expired-but-live, unlisted and
stale flags; through the panel's own SQL with the macros expanded as the plugin does."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import clinotel.instrumentation as ct
from clinotel.collector.service import Collector
from clinotel.dashboards import build_all
from clinotel.dashboards.check import panel_range
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.dashboards.rollout import EXPIRED, LISTED, NO_INVENTORY, STALE, UNLISTED
from clinotel.demo.hospital import SimClock
from collector.tests.fixtures import WRITE_TOKEN
from dashboards.tests.demo_data import exporting_to

TITLE = "Flags: exposure per variant and scope, expired and stale"
TODAY = date.today()
INVENTORY = (
    ("triage-model-v4", TODAY + timedelta(days=90)),
    ("old-banner", TODAY - timedelta(days=3)),
    ("retired-ranker", TODAY + timedelta(days=30)),
)
EVALUATIONS = (
    # (flag, variant, site, workflows)
    ("triage-model-v4", "on", "north", 30),
    ("triage-model-v4", "off", "north", 10),
    ("triage-model-v4", "off", "south", 25),
    ("old-banner", "shown", "east", 7),
    ("shadow-ranker", "on", "south", 4),
)


def _send(collector: Collector) -> None:
    clock = SimClock(base_ns=time.time_ns() - 2 * 3600 * 10**9)
    n = sum(count for *_, count in EVALUATIONS)
    with exporting_to(collector, WRITE_TOKEN, clock, n * 8):
        i = 0
        for key, variant, site, count in EVALUATIONS:
            for _ in range(count):
                clock.at(i * 60_000)
                i += 1
                with (
                    ct.workflow("triage", identifier=f"ENC-F{i}", site=site, department="ed"),
                    ct.stage("decide") as st,
                ):
                    clock.advance(20)
                    st.record_flag(key, variant, provider="flagd", reason="targeting_match")
                    st.record_decision(source="model", value="ESI-3", model_version="3.2.0")
        # a workflow that evaluated no flag is not exposure
        with (
            ct.workflow("triage", identifier="ENC-F-none", site="north", department="ed"),
            ct.stage("decide") as st,
        ):
            st.record_decision(source="model", value="ESI-3", model_version="3.2.0")


def _rows(c: Collector, inventory: tuple[tuple[str, date], ...]) -> list[dict[str, Any]]:
    boards = build_all(c.options.database, inventory)
    [panel] = [p for p in boards["rollout"]["panels"] if p.get("title") == TITLE]
    end = datetime.now(UTC) + timedelta(minutes=1)
    names = tuple(v["name"] for v in boards["rollout"]["templating"]["list"])
    sql = expand(panel["targets"][0]["rawSql"], panel_range(panel, names, TimeRange(end - timedelta(hours=5), end)))
    return list(c.client.query(sql).named_results())


def test_the_flags_panel_shows_exposure_expired_unlisted_and_stale_flags(collector: Collector) -> None:
    _send(collector)
    rows = _rows(collector, INVENTORY)
    got = {(r["Flag"], r["Variant"], r["Site"]): r for r in rows}
    assert set(got) == {(k, v, s) for k, v, s, _ in EVALUATIONS} | {("retired-ranker", "", "")}
    for key, variant, site, count in EVALUATIONS:
        row = got[(key, variant, site)]
        assert row["Evaluations"] == count
        there = sum(n for k, _, s, n in EVALUATIONS if (k, s) == (key, site))
        assert abs(row["Share of the flag there"] - round(count / there, 4)) < 1e-9
        assert row["Tenant"] == "st-marys"
        assert row["Workflow kind"] == "triage"
        assert row["Last evaluated"] is not None
    expiry = dict(INVENTORY)
    assert got[("triage-model-v4", "on", "north")]["Status"] == LISTED
    assert got[("triage-model-v4", "on", "north")]["Expiry"] == expiry["triage-model-v4"]
    assert got[("old-banner", "shown", "east")]["Status"] == EXPIRED, "expired in flags.yaml, evaluated in the range"
    assert got[("shadow-ranker", "on", "south")]["Status"] == UNLISTED
    assert got[("shadow-ranker", "on", "south")]["Expiry"] is None
    stale = got[("retired-ranker", "", "")]
    assert (stale["Status"], stale["Evaluations"], stale["Expiry"]) == (STALE, 0, expiry["retired-ranker"])

    # without an inventory: the same exposure, and the status says what is missing
    plain = _rows(collector, ())
    assert {(r["Flag"], r["Variant"], r["Site"]): r["Evaluations"] for r in plain} == {
        (k, v, s): n for k, v, s, n in EVALUATIONS
    }
    assert {r["Status"] for r in plain} == {NO_INVENTORY}


def test_an_inventory_key_cannot_inject_sql(collector: Collector) -> None:
    hostile = (("x') OR 1=1 --", TODAY), ("y'; DROP TABLE otel_traces; --", TODAY))
    rows = _rows(collector, hostile)
    assert {r["Status"] for r in rows} == {STALE}
    assert {r["Flag"] for r in rows} == {k for k, _ in hostile}


def test_dashboards_build_reads_the_inventory_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from clinotel.dashboards.cli import dashboards

    good = tmp_path / "flags.yaml"
    good.write_text(
        "flags:\n  - key: triage-model-v4\n    owner: triage-ml-team\n    created: 2026-01-10\n"
        "    expiry: 2026-06-30\n    kill_criteria: [canary_kill_under_triage]\n",
        encoding="utf-8",
    )
    done = CliRunner().invoke(dashboards, ["build", "--out", str(tmp_path / "g"), "--flags", str(good)])
    assert done.exit_code == 0, done.output
    board = (tmp_path / "g" / "dashboards" / "clinotel" / "rollout.json").read_text(encoding="utf-8")
    assert "toDate('2026-06-30')" in board
    for bad, says in (("flags: [{key: 'x y'}]", "bad.yaml"), ("{{{", "not valid YAML")):
        path = tmp_path / "bad.yaml"
        path.write_text(bad, encoding="utf-8")
        done = CliRunner().invoke(dashboards, ["build", "--out", str(tmp_path / "h"), "--flags", str(path)])
        assert done.exit_code == 2, done.output
        assert says in done.output
        assert "Traceback" not in done.output
        assert not (tmp_path / "h").exists()
