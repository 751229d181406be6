"""The generated dashboards: the JSON Grafana stores today, the plugin's query model, Grafana's
provisioning layout, the plugin's macro expansion, and every panel's SQL run on demo data."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import clinotel.instrumentation as ct
from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from clinotel.dashboards import build_all
from clinotel.dashboards._grafana import DATASOURCE_UID, PLUGIN_TYPE, SCHEMA_VERSION
from clinotel.dashboards.check import panel_queries, run
from clinotel.dashboards.macros import TimeRange
from clinotel.demo.hospital import SimClock
from collector.tests.fixtures import OPERATOR_TOKEN, WRITE_TOKEN
from dashboards.tests.demo_data import exporting_to, load_demo

BOARDS = build_all("clinotel")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def _nulls(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_json_is_what_grafana_stores(name: str) -> None:
    d = BOARDS[name]
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", d["uid"])
    assert d["title"]
    assert d["schemaVersion"] == SCHEMA_VERSION
    assert not {"rows", "style", "hideControls", "sharedCrosshair", "__inputs"} & set(d)
    assert "time_options" not in d["timepicker"]
    assert {"templating", "annotations", "panels", "time"} <= set(d)
    # nulls only where Grafana itself writes them: the base threshold step
    assert all(p.endswith("steps[0].value") for p in _nulls(d)), _nulls(d)

    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        pos = p["gridPos"]
        assert pos["h"] > 0
        assert 1 <= pos["w"] <= 24
        assert pos["x"] >= 0
        assert pos["x"] + pos["w"] <= 24
        assert pos["y"] >= 0
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            assert p["panels"] == []
            assert pos["w"] == 24
            assert pos["h"] == 1
            continue
        assert p["datasource"] == {"type": PLUGIN_TYPE, "uid": DATASOURCE_UID}
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DATASOURCE_UID
            assert t["editorType"] == "sql"
            assert tuple(int(x) for x in t["pluginVersion"].split(".")) >= (4, 0, 0)
            assert (t["queryType"], t["format"]) in (("timeseries", 0), ("table", 1))
            assert isinstance(t["format"], int)
    defined = {v["name"] for v in d["templating"]["list"]}
    assert defined == {"tenant", "kind", "site", "department", "model_version", "cohort"}
    for v in d["templating"]["list"]:
        assert v["query"] == {"editorType": "sql", "rawSql": v["definition"]}
    for q in panel_queries({name: d}):
        used = {a or b for a, b in _VARIABLE.findall(q.sql)} - {""}
        assert {u for u in used if not u.startswith("__")} <= defined, q.panel


def test_build_writes_grafana_provisioning(tmp_path: Path) -> None:
    from clinotel.dashboards.cli import dashboards

    result = CliRunner().invoke(dashboards, ["build", "--out", str(tmp_path), "--clickhouse-url", "http://ch:8123"])
    assert result.exit_code == 0, result.output
    for name, data in BOARDS.items():
        assert json.loads((tmp_path / "dashboards" / "clinotel" / f"{name}.json").read_text()) == data
    ds = yaml.safe_load((tmp_path / "provisioning" / "datasources" / "clinotel-clickhouse.yaml").read_text())
    source = ds["datasources"][0]
    assert (source["type"], source["uid"]) == (PLUGIN_TYPE, DATASOURCE_UID)
    assert source["jsonData"]["host"] == "ch"
    assert (source["jsonData"]["port"], source["jsonData"]["protocol"]) == (8123, "http")
    assert source["secureJsonData"]["password"].startswith("${")
    provider = yaml.safe_load((tmp_path / "provisioning" / "dashboards" / "clinotel.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


def test_every_panel_runs_and_returns_rows_on_demo_data(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=2000)
    end = datetime.now(UTC) + timedelta(minutes=1)
    tr = TimeRange(end - timedelta(hours=7), end)
    boards = build_all(collector.options.database)
    results = list(run(collector.client, list(panel_queries(boards)), tr))
    assert len(results) > 60
    errors = [(r.query.dashboard, r.query.panel, r.error) for r in results if r.error]
    assert errors == []
    empty = [(r.query.dashboard, r.query.panel) for r in results if r.rows == 0]
    assert empty == []


def test_dashboards_check_through_a_running_collector(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    from clinotel.dashboards.cli import dashboards

    load_demo(collector, WRITE_TOKEN, workflows=300)
    assert collector.admin is not None
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", OPERATOR_TOKEN)
    args = ["check", "--server", f"http://127.0.0.1:{collector.admin.port}", "--database", collector.options.database]
    result = CliRunner().invoke(dashboards, args)
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output


def test_what_the_sdk_gate_drops_reaches_the_health_dashboard(collector: Collector) -> None:
    """Each service's gate counts what it drops and redacts and sends the counts as a
    clinotel.telemetry span; the collector files them in clinotel_sdk_telemetry, the health panel
    reads that table."""
    clock = SimClock(time.time_ns() - 60 * 10**9)
    with exporting_to(collector, WRITE_TOKEN, clock, 1000):
        for i in range(3):
            with ct.workflow("triage", identifier=f"ENC-{i}"), ct.stage("ingest") as st:
                clock.advance(5)
                st.set("patient.name", "Jane Doe")  # type: ignore[arg-type]  # not registered: dropped
    db = collector.options.database
    counts = collector.client.query(
        f"SELECT sum(Unregistered), sum(Phi), uniqExact(ServiceName) FROM {db}.{schema.SDK_TELEMETRY}"
    ).result_rows
    assert counts == [(3, 0, 1)]
    panel = next(q for q in panel_queries(build_all(db)) if q.panel.startswith("Attributes dropped"))
    end = datetime.now(UTC) + timedelta(minutes=1)
    [result] = run(collector.client, [panel], TimeRange(end - timedelta(hours=1), end))
    assert result.error is None
    assert result.rows >= 1
