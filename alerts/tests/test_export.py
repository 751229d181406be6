"""The export: Grafana's flat alert-rule provisioning whose queries run on the store, contact
points and policies, and an Alertmanager configuration Alertmanager's own checker accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from clinotel.alerts import default_rules_path
from clinotel.alerts.export import grafana_rules
from clinotel.alerts.rules import load
from clinotel.dashboards.macros import TimeRange, expand
from collector.tests.fixtures import WRITE_TOKEN
from dashboards.tests.demo_data import load_demo

REPO = Path(__file__).resolve().parents[2]
FLAT_KEYS = {"uid", "title", "condition", "data", "for", "noDataState", "execErrState", "labels", "annotations"}


def test_export_writes_grafana_provisioning_and_an_alertmanager_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinotel.alerts.cli import alerts

    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("CLINOTEL_TICKET_WEBHOOK_URL", "http://127.0.0.1:9/tickets")
    result = CliRunner().invoke(alerts, ["export", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "pages go to PagerDuty" in result.output
    alerting = tmp_path / "grafana" / "provisioning" / "alerting"
    rules = yaml.safe_load((alerting / "clinotel-rules.yaml").read_text())
    assert rules["apiVersion"] == 1
    pack = load(default_rules_path())
    exported = [r for g in rules["groups"] for r in g["rules"]]
    assert {r["uid"] for r in exported} >= {r.name for r in pack.rules}
    for group in rules["groups"]:
        assert {"orgId", "name", "folder", "interval", "rules"} <= set(group)
    for r in exported:
        assert set(r) >= FLAT_KEYS, "the flat file-provisioning shape, not grafanalib's Ruler shape"
        assert "grafana_alert" not in r
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", r["uid"])
        a, b, c = r["data"]
        assert a["model"]["format"] == 0
        assert a["relativeTimeRange"]["from"] > 0
        assert (b["model"]["type"], c["model"]["type"], r["condition"]) == ("reduce", "threshold", "C")
        assert r["annotations"]["runbook_url"].endswith(f"docs/runbooks/{r['labels']['rule']}.md")
        rule = next((p for p in pack.rules if p.name == r["labels"]["rule"]), None)
        if rule is not None:  # the threshold in words, for whoever is paged
            assert r["annotations"]["criterion"].startswith(rule.metric), r["annotations"]
        kept = rule.keep_firing_for if rule is not None else 0
        assert r.get("keepFiringFor") == (f"{kept}s" if kept else None), "keep_firing_for as Grafana's keepFiringFor"
        assert (REPO / "docs" / "runbooks" / f"{r['labels']['rule']}.md").is_file()
    points = yaml.safe_load((alerting / "clinotel-contact-points.yaml").read_text())
    assert {p["receivers"][0]["type"] for p in points["contactPoints"]} == {"pagerduty", "webhook"}
    policy = yaml.safe_load((alerting / "clinotel-policies.yaml").read_text())["policies"][0]
    assert [r["object_matchers"] for r in policy["routes"]] == [
        [["alertname", "=", "DatasourceError"]], [["severity", "=", "page"]]]  # fmt: skip
    assert [r["receiver"] for r in policy["routes"]] == ["clinotel-tickets", "clinotel-pages"]

    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")
    check = subprocess.run([amtool, "check-config", str(tmp_path / "alertmanager" / "alertmanager.yml")],
                           capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_override_becomes_a_scoped_rule_and_leaves_the_default(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {name: model_fallback, metric: fallback_rate, threshold: 0.2, window: 15m, severity: page,\n"
        "     summary: Decisions fall back, overrides: [{tenant: st-marys, threshold: 0.3}]}\n",
        encoding="utf-8",
    )
    rules = [r for g in grafana_rules(load(path))["groups"] for r in g["rules"]]
    assert [r["uid"] for r in rules] == ["model_fallback", "model_fallback-o1", "grafana_datasource_error"]
    assert "NOT (r.tenant = 'st-marys')" in rules[0]["data"][0]["model"]["rawSql"]
    assert "WHERE (r.tenant = 'st-marys')" in rules[1]["data"][0]["model"]["rawSql"]
    assert rules[1]["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [0.3]}


def test_every_exported_query_runs_on_the_store_as_grafana_would_send_it(collector: Any) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)
    rules = grafana_rules(load(default_rules_path()), collector.options.database)
    end = datetime.now(UTC) + timedelta(minutes=1)
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        a = rule["data"][0]
        tr = TimeRange(end - timedelta(seconds=a["relativeTimeRange"]["from"]), end)
        sql = expand(a["model"]["rawSql"], tr)
        collector.client.query(sql)
        columns = [row[0] for row in collector.client.query(f"DESCRIBE ({sql})").result_rows]
        assert columns[0] == "time"
        assert columns[-1] == "value"
        types = dict(collector.client.query(f"DESCRIBE ({sql})").result_rows[i][:2] for i in range(len(columns)))
        assert types["value"] in ("Nullable(Float64)", "Float64")
        # strings (the plugin's converters read LowCardinality(T) as T): series labels for LongToWide
        assert all(types[c] in ("String", "LowCardinality(String)") for c in columns[1:-1]), types


def test_grafana_uids_are_short_valid_stable_and_unique(tmp_path: Path) -> None:
    """The uid was the rule name (Grafana allows 40 characters), and an override's
    `name[:36]-o{n}` was the same for two rules sharing their first 36 characters."""
    north = "fallback_rate_for_the_emergency_department_triage_north"
    south = north.removesuffix("north") + "south"
    rules = "rules:\n" + "".join(
        f"  - {{name: {name}, metric: fallback_rate, threshold: 0.2, window: 15m, severity: page, summary: Falls back,"
        " overrides: [{tenant: a, threshold: 0.3}, {tenant: b, threshold: 0.4}]}\n"
        for name in (north, south, "model_fallback")
    )
    path = tmp_path / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    pack = load(path)
    uids = [r["uid"] for g in grafana_rules(pack)["groups"] for r in g["rules"]]
    assert len(uids) == 10
    assert len(set(uids)) == len(uids), uids
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", u) for u in uids), uids
    assert uids == [r["uid"] for g in grafana_rules(load(path))["groups"] for r in g["rules"]], "stable"
    assert {"model_fallback", "model_fallback-o1", "model_fallback-o2"} <= set(uids), "short names as before"
    assert all(u.startswith("fallback_rate_for_the_eme") for u in uids[:6]), "a readable prefix"


def test_runbooks_published_elsewhere_are_linked_from_every_rule(tmp_path: Path) -> None:
    """A hospital publishes its own runbooks: `--runbook-base` (or CLINOTEL_RUNBOOK_BASE)."""
    from clinotel.alerts.cli import alerts

    env = {"CLINOTEL_RUNBOOK_BASE": "https://wiki.hospital.example/clinotel"}
    am = ["--alertmanager", "http://127.0.0.1:9093"]
    result = CliRunner().invoke(alerts, ["export", "--out", str(tmp_path), *am], env=env)
    assert result.exit_code == 0, result.output
    rules = yaml.safe_load((tmp_path / "grafana/provisioning/alerting/clinotel-rules.yaml").read_text())
    links = [r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]]
    assert links
    assert all(u.startswith("https://wiki.hospital.example/clinotel/docs/runbooks/") for u in links)
    for bad in (
        "javascript:alert(1)",
        "https://wiki example/x",
        "file:///etc/passwd",
        "https://ops:pw@wiki.example/x",
        "https://user%3Apw%40wiki.example.org/",
        "https://wiki.example.org;token=abc/run",
        "https://wiki.example.org/run;token=abc",
        "https://wiki.exa\u2024mple.org/",
        "https://wiki.example/display?space=CLIN",
        "https://wiki.example/x#",
        "https://wiki.example/x?",
    ):
        refused = CliRunner().invoke(alerts, ["export", "--out", str(tmp_path / "x"), *am, "--runbook-base", bad])
        assert refused.exit_code == 2, (bad, refused.output)
        assert "--runbook-base" in refused.output
