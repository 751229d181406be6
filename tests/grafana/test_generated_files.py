"""The Grafana part of the compatibility matrix: every file clinotel writes for Grafana (dashboards,
datasource and dashboard-provider provisioning, alert rules, contact points, notification
policies; by `dashboards build`, `alerts export` and `compose generate`) checked against the field
types Grafana 12.2 and the ClickHouse plugin read it with (`upstream.py`), contact points after
the environment expansion Grafana does with compose's environment, and every Alertmanager
configuration clinotel writes (compose, export, the demo's) through `amtool check-config`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from clinotel.alerts.local_alertmanager import LocalAlertmanager, find_binary
from clinotel.compose import generate
from clinotel.dashboards import DASHBOARDS
from tests.grafana import upstream as up

REPO = Path(__file__).resolve().parents[2]
KEY = "0123456789abcdef0123456789abcdef"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _amtool(path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (Debian's prometheus-alertmanager, installed by scripts/system-packages.sh) is missing")
    done = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _check_rules(data: dict[str, Any]) -> list[str]:
    errors = up.check(data, up.RULES_FILE)
    for group in data.get("groups", []):
        for rule in group["rules"]:
            refs = {q["refId"] for q in rule["data"]}
            if rule["condition"] not in refs:
                errors.append(f"{rule['uid']}: condition {rule['condition']} is no query")
            for q in rule["data"]:
                model = q["model"]
                if q["datasourceUid"] == "__expr__":
                    spec = {"reduce": up.QUERY_MODEL_REDUCE, "threshold": up.QUERY_MODEL_THRESHOLD}[model["type"]]
                    if model["expression"] not in refs:
                        errors.append(f"{rule['uid']}.{q['refId']}: expression {model['expression']} is no query")
                else:
                    spec = up.QUERY_MODEL_CLICKHOUSE
                    if q["relativeTimeRange"] == {"from": 0, "to": 0}:
                        errors.append(f"{rule['uid']}.{q['refId']}: invalid relative time range")
                errors += up.check(model, spec, f"{rule['uid']}.{q['refId']}.model")
    return errors


def _check_grafana_tree(grafana: Path, alerting: Path | None, env: dict[str, str]) -> int:
    """Every Grafana file under `grafana` (and the alerting files under `alerting`); returns how
    many were checked."""
    checked = 0
    errors: list[str] = []
    for path in sorted((grafana / "provisioning" / "datasources").glob("*.yaml")):
        data = _yaml(path)
        errors += up.check(data, up.DATASOURCES_FILE, env=env)
        for ds in data["datasources"]:
            if ds["type"] == "grafana-clickhouse-datasource":
                errors += up.check(ds["jsonData"], up.CLICKHOUSE_JSON_DATA, f"{ds['name']}.jsonData")
                password = up.expand_env(ds["secureJsonData"]["password"], env)
                if not password:
                    errors.append(f"{ds['name']}: the password expands to nothing in Grafana's environment")
        checked += 1
    for path in sorted((grafana / "provisioning" / "dashboards").glob("*.yaml")):
        errors += up.check(_yaml(path), up.PROVIDERS_FILE, env=env)
        checked += 1
    boards = sorted((grafana / "dashboards").rglob("*.json"))
    assert len(boards) == len(DASHBOARDS)
    for path in boards:
        errors += [f"{path.name}: {e}" for e in up.check_dashboard(json.loads(path.read_text(encoding="utf-8")))]
        checked += 1
    if alerting is not None:
        rules = _yaml(alerting / "clinotel-rules.yaml")
        points = _yaml(alerting / "clinotel-contact-points.yaml")
        policies = _yaml(alerting / "clinotel-policies.yaml")
        errors += _check_rules(rules)
        errors += up.check_contact_points(points, env)
        errors += up.check(policies, up.POLICIES_FILE, env=env)
        names = {p["name"] for p in points["contactPoints"]}

        def receivers(route: dict[str, Any]) -> set[str]:
            return {route["receiver"], *(r for sub in route.get("routes", []) for r in receivers(sub))}

        errors += [f"policy receiver {r} is no contact point" for r in receivers(policies["policies"][0]) - names]
        checked += 3
    assert errors == [], "\n".join(errors)
    return checked


def _compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[Path, Any]:
    for name in ("PAGERDUTY_ROUTING_KEY", "CLINOTEL_TICKET_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    shutil.copytree(REPO / "compose", tmp_path / "compose", ignore=shutil.ignore_patterns("generated"))
    return tmp_path / "compose", generate(tmp_path / "compose")


def _grafana_env(compose_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """Grafana's environment in the stack: base.yaml's grafana service with .env's values."""
    from tests.test_compose import _interpolate

    base = yaml.safe_load(_interpolate((compose_dir / "base.yaml").read_text(encoding="utf-8"), env))
    return up.grafana_env(base["services"]["grafana"])


@pytest.mark.parametrize(
    ("settings", "pages", "tickets"),
    [({}, "prometheus-alertmanager", "prometheus-alertmanager"),
     ({"PAGERDUTY_ROUTING_KEY": KEY}, "pagerduty", "prometheus-alertmanager"),
     ({"PAGERDUTY_ROUTING_KEY": KEY, "CLINOTEL_TICKET_WEBHOOK_URL": "http://tickets.example:8080/hook"},
      "pagerduty", "webhook")],
    ids=["defaults", "pagerduty", "pagerduty-and-webhook"],
)  # fmt: skip
def test_compose_generates_what_grafana_and_alertmanager_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], pages: str, tickets: str
) -> None:
    compose_dir, result = _compose(tmp_path, monkeypatch, **settings)
    generated = compose_dir / "generated"
    env = _grafana_env(compose_dir, result.env)
    assert env.get("PAGERDUTY_ROUTING_KEY", "") == settings.get("PAGERDUTY_ROUTING_KEY", "")
    alerting = generated / "grafana" / "provisioning" / "alerting"
    assert _check_grafana_tree(generated / "grafana", alerting, env) == 2 + len(DASHBOARDS) + 3
    points = {
        p["name"]: p["receivers"][0]["type"] for p in _yaml(alerting / "clinotel-contact-points.yaml")["contactPoints"]
    }
    assert points == {"clinotel-pages": pages, "clinotel-tickets": tickets}
    am = _yaml(generated / "alertmanager" / "alertmanager.yml")
    by_name = {r["name"]: r for r in am["receivers"]}
    assert ("pagerduty_configs" in by_name["pages"]) == ("PAGERDUTY_ROUTING_KEY" in settings)
    ticket_url = settings.get("CLINOTEL_TICKET_WEBHOOK_URL")
    assert [c["url"] for c in by_name["tickets"].get("webhook_configs", [])] == ([ticket_url] if ticket_url else [])
    assert "ticket-bridge" not in (generated / "alertmanager" / "alertmanager.yml").read_text()
    _amtool(generated / "alertmanager" / "alertmanager.yml")


def test_the_old_contact_point_is_what_grafana_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a PagerDuty receiver with compose's empty default key (what `alerts
    export` wrote before) is refused, as Grafana refuses it at start."""
    compose_dir, result = _compose(tmp_path, monkeypatch)
    env = _grafana_env(compose_dir, result.env)
    old = {"apiVersion": 1, "contactPoints": [{"orgId": 1, "name": "clinotel-pagerduty", "receivers": [{
        "uid": "clinotel-pagerduty", "type": "pagerduty",
        "settings": {"integrationKey": "$PAGERDUTY_ROUTING_KEY"}}]}]}  # fmt: skip
    assert any("integrationKey: must not be empty" in e for e in up.check_contact_points(old, env))
    webhook = {"apiVersion": 1, "contactPoints": [{"name": "t", "receivers": [{
        "uid": "t", "type": "webhook", "settings": {"url": "${CLINOTEL_TICKET_WEBHOOK_URL}"}}]}]}  # fmt: skip
    assert any("url: must not be empty" in e for e in up.check_contact_points(webhook, env))


def test_grafanalib_leftovers_and_wrong_types_are_caught() -> None:
    from clinotel.dashboards import build_all

    board = build_all("clinotel")["operations"]
    assert up.check_dashboard(board) == []
    table = next(i for i, p in enumerate(board["panels"]) if p["type"] == "table")
    broken = json.loads(json.dumps(board))
    broken["panels"][table]["fontSize"] = "100%"
    broken["panels"][table]["fieldConfig"]["defaults"]["custom"]["align"] = "middle"
    broken["panels"][0]["targets"] = []
    broken["timepicker"]["time_options"] = ["5m"]
    broken["panels"][table]["targets"][0]["format"] = "table"
    found = "\n".join(up.check_dashboard(broken))
    for expected in ("fontSize: not a field", "align: 'middle'", "panels[0].targets: not a field", "time_options",
                     "format: 'table'"):  # fmt: skip
        assert expected in found


@pytest.mark.parametrize("url", ["http://ch:8123", "https://ch.internal:8443/"])
def test_dashboards_build_writes_what_grafana_reads(tmp_path: Path, url: str) -> None:
    from clinotel.dashboards.cli import dashboards

    result = CliRunner().invoke(dashboards, ["build", "--out", str(tmp_path), "--clickhouse-url", url])
    assert result.exit_code == 0, result.output
    env = {"CLINOTEL_GRAFANA_READ_TOKEN": "a-read-token"}
    assert _check_grafana_tree(tmp_path, None, env) == 2 + len(DASHBOARDS)
    with pytest.raises(AssertionError, match="expands to nothing"):
        _check_grafana_tree(tmp_path, None, {})


@pytest.mark.parametrize(
    ("env", "args", "pages"),
    [({"PAGERDUTY_ROUTING_KEY": KEY, "CLINOTEL_TICKET_WEBHOOK_URL": "http://127.0.0.1:9/t"}, [], "pagerduty"),
     ({}, ["--alertmanager", "http://127.0.0.1:9093"], "prometheus-alertmanager"),
     ({"CLINOTEL_TICKET_WEBHOOK_URL": "http://127.0.0.1:9/t"}, [], None)],
    ids=["pagerduty-webhook", "alertmanager", "webhook-only"],
)  # fmt: skip
def test_alerts_export_writes_what_grafana_and_alertmanager_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], pages: str | None
) -> None:
    from clinotel.alerts.cli import alerts

    for name in ("PAGERDUTY_ROUTING_KEY", "CLINOTEL_TICKET_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(alerts, ["export", "--out", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    alerting = tmp_path / "grafana" / "provisioning" / "alerting"
    points = _yaml(alerting / "clinotel-contact-points.yaml")
    assert up.check_contact_points(points, env) == []
    assert _check_rules(_yaml(alerting / "clinotel-rules.yaml")) == []
    assert up.check(_yaml(alerting / "clinotel-policies.yaml"), up.POLICIES_FILE) == []
    types = {p["name"]: p["receivers"][0]["type"] for p in points["contactPoints"]}
    assert types.get("clinotel-pages") == pages
    if pages is None:
        assert "nothing pages" in result.output
    _amtool(tmp_path / "alertmanager" / "alertmanager.yml")


def test_alerts_export_refuses_when_tickets_have_nowhere_to_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clinotel.alerts.cli import alerts

    for name in ("PAGERDUTY_ROUTING_KEY", "CLINOTEL_TICKET_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(alerts, ["export", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "tickets have nowhere to go" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists(), "nothing written"


def test_the_demos_alertmanager_configuration_passes_amtool(tmp_path: Path) -> None:
    binary = find_binary()
    if binary is None:
        pytest.skip("prometheus-alertmanager (installed by scripts/system-packages.sh) is missing")
    am = LocalAlertmanager(binary, "http://127.0.0.1:9/sink", tmp_path / "am")
    am.start()
    try:
        _amtool(tmp_path / "am" / "alertmanager.yml")
    finally:
        am.stop()


@pytest.mark.parametrize(
    "url",
    ["ftp://am:9093", "am:9093", "http://", "http://am:9093/\nreceivers: []", "http://am :9093", "javascript:alert(1)"],
)
def test_a_url_that_is_not_one_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    from clinotel.alerts.cli import alerts
    from clinotel.compose.cli import compose

    monkeypatch.setenv("CLINOTEL_TICKET_WEBHOOK_URL", "http://127.0.0.1:9/t")
    result = CliRunner().invoke(alerts, ["export", "--out", str(tmp_path / "out"), "--alertmanager", url])
    assert result.exit_code == 2
    assert "must be an http(s) URL" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    # the same URL as compose's ticket webhook: refused before anything is written
    monkeypatch.setenv("CLINOTEL_TICKET_WEBHOOK_URL", url)
    shutil.copytree(REPO / "compose", tmp_path / "compose", ignore=shutil.ignore_patterns("generated"))
    result = CliRunner().invoke(compose, ["generate", "--dir", str(tmp_path / "compose")])
    assert result.exit_code == 2
    assert "CLINOTEL_TICKET_WEBHOOK_URL must be an http(s) URL" in result.output
    assert not (tmp_path / "compose" / "generated").exists()


def test_a_dollar_in_the_alertmanager_url_reaches_grafana_unexpanded(tmp_path: Path) -> None:
    from clinotel.alerts.export import Receivers, contact_points

    url = "http://am.internal:9093/$HOME/x"
    points = contact_points(Receivers(alertmanager_url=url))
    assert up.check_contact_points(points, {"HOME": "/root"}) == []
    settings = points["contactPoints"][0]["receivers"][0]["settings"]
    assert up.expand_env(settings["url"], {"HOME": "/root"}) == url
