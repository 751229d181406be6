"""Grafana alerting file provisioning (the flat rule format Grafana loads, not grafanalib's Ruler
shape), contact points, notification policies, and an Alertmanager configuration example.

Each rule becomes A (the ClickHouse query: one point per alert instance at the end of the range,
`format: 0` so the plugin turns tenant and kind into series labels), B (reduce: last) and C
(threshold). The query is the evaluator's own (`queries.rule_sql`) with the window ending at
Grafana's `$__toTime`, so Grafana and clinotel's evaluator judge the same rows. A per-tenant or
per-kind override becomes a rule of its own for that scope, and the default rule leaves the
scope out.

    OUT/grafana/provisioning/alerting/clinotel-rules.yaml
    OUT/grafana/provisioning/alerting/clinotel-contact-points.yaml
    OUT/grafana/provisioning/alerting/clinotel-policies.yaml
    OUT/alertmanager/alertmanager.yml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from clinotel.alerts.queries import Bounds, rule_sql
from clinotel.alerts.rules import Comparison, Kind, Override, Rule, RulePack
from clinotel.collector.sql import literal

__all__ = ["alertmanager_config", "contact_points", "grafana_rules", "policies", "write"]

DATASOURCE_UID: Final = "clinotel-clickhouse"
PLUGIN: Final = {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID}
EXPR: Final = {"type": "__expr__", "uid": "__expr__"}
NO_DATA: Final = {"ok": "OK", "keep": "KeepLast", "alerting": "Alerting"}
RUNBOOK_BASE: Final = "https://github.com/clinotel/clinotel/blob/main/"


def _scope_sql(o: Override) -> str:
    parts = []
    if o.tenant is not None:
        parts.append(f"tenant = {literal(o.tenant)}")
    if o.kind is not None:
        parts.append(f"kind = {literal(o.kind)}")
    return " AND ".join(parts) or "1"


def _query(rule: Rule, database: str, min_sample: int, scope: str) -> str:
    inner = rule_sql(rule, database, Bounds("$__toTime"))
    labels = "tenant, kind, grp" if rule.kind in (Kind.DISPARITY, Kind.SDK) else "tenant, kind"
    return (
        f"SELECT $__toTime AS time, {labels}, value\nFROM (\n{inner}\n)\n"
        f"WHERE n >= {min_sample} AND value IS NOT NULL AND ({scope})\nORDER BY time"
    )


def _threshold(rule: Rule, threshold: float) -> dict[str, Any]:
    if rule.kind is Kind.DISPARITY:
        return {"type": "outside_range", "params": list(rule.band)}
    above = rule.comparison in (Comparison.GT, Comparison.GE)
    return {"type": "gt" if above else "lt", "params": [threshold]}


def _rule(rule: Rule, database: str, uid: str, title: str, threshold: float, min_sample: int, scope: str,
          runbook_base: str, paused: bool) -> dict[str, Any]:  # fmt: skip
    lookback = rule.window + (rule.baseline_window or 0)
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": lookback, "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": {
                    "refId": "A", "datasource": dict(PLUGIN), "editorType": "sql", "queryType": "timeseries",
                    "format": 0, "pluginVersion": "4.20.0", "rawSql": _query(rule, database, min_sample, scope),
                },
            },
            {
                "refId": "B",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": "__expr__",
                "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                          "settings": {"mode": "dropNN"}, "datasource": dict(EXPR)},
            },
            {
                "refId": "C",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": "__expr__",
                "model": {"refId": "C", "type": "threshold", "expression": "B",
                          "conditions": [{"evaluator": _threshold(rule, threshold)}], "datasource": dict(EXPR)},
            },
        ],
        "for": f"{rule.for_}s",
        "noDataState": NO_DATA[rule.no_data],
        "execErrState": "Error",
        "labels": {"severity": rule.severity, "rule": rule.name, **rule.labels},
        "annotations": {"summary": rule.summary, "runbook_url": runbook_base + rule.runbook},
        "isPaused": paused,
    }  # fmt: skip


def grafana_rules(
    pack: RulePack, database: str = "clinotel", runbook_base: str = RUNBOOK_BASE, paused: bool = False
) -> dict[str, Any]:
    """The rule file: one group per severity, evaluated every minute. `paused` provisions the rules
    visible but not evaluated, for a deployment where the clinotel evaluator pages (one evaluator,
    never two pages for one incident)."""
    groups: dict[str, list[dict[str, Any]]] = {"page": [], "ticket": []}
    for rule in pack.rules:
        overridden = [o for o in rule.overrides if o.tenant is not None or o.kind is not None]
        default_scope = " AND ".join(f"NOT ({_scope_sql(o)})" for o in overridden) or "1"
        out = [_rule(rule, database, rule.name, rule.summary, rule.threshold, rule.min_sample, default_scope,
                     runbook_base, paused)]  # fmt: skip
        for n, o in enumerate(overridden, start=1):
            if o.disabled:
                continue
            threshold = o.threshold if o.threshold is not None else rule.threshold
            min_sample = o.min_sample if o.min_sample is not None else rule.min_sample
            where = ", ".join(f"{k} {v}" for k, v in (("tenant", o.tenant), ("kind", o.kind)) if v is not None)
            out.append(_rule(rule, database, f"{rule.name[:36]}-o{n}", f"{rule.summary} ({where})", threshold,
                             min_sample, _scope_sql(o), runbook_base, paused))  # fmt: skip
        groups[rule.severity].extend(out)
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": f"clinotel-{severity}", "folder": "clinotel", "interval": "1m", "rules": rules}
            for severity, rules in groups.items()
            if rules
        ],
    }


def contact_points() -> dict[str, Any]:
    """PagerDuty for pages (the routing key from Grafana's environment), a webhook for tickets."""
    return {
        "apiVersion": 1,
        "contactPoints": [
            {"orgId": 1, "name": "clinotel-pagerduty", "receivers": [{
                "uid": "clinotel-pagerduty", "type": "pagerduty", "disableResolveMessage": False,
                "settings": {"integrationKey": "$PAGERDUTY_ROUTING_KEY", "severity": "critical",
                             "class": "clinical-safety", "component": "clinotel"}}]},
            {"orgId": 1, "name": "clinotel-tickets", "receivers": [{
                "uid": "clinotel-tickets", "type": "webhook", "disableResolveMessage": False,
                "settings": {"url": "$CLINOTEL_TICKET_WEBHOOK_URL", "httpMethod": "POST"}}]},
        ],
    }  # fmt: skip


def policies() -> dict[str, Any]:
    """`severity=page` to PagerDuty, everything else to the ticket webhook; one notification per
    tenant, kind and rule."""
    return {
        "apiVersion": 1,
        "policies": [{
            "orgId": 1, "receiver": "clinotel-tickets", "group_by": ["alertname", "tenant", "kind"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "routes": [{"receiver": "clinotel-pagerduty", "object_matchers": [["severity", "=", "page"]],
                        "group_wait": "10s", "repeat_interval": "1h"}],
        }],
    }  # fmt: skip


def alertmanager_config() -> dict[str, Any]:
    """An Alertmanager configuration routing clinotel's `severity=page` alerts to PagerDuty and the
    rest to a ticket webhook (the routing key read from a file, which Alertmanager supports)."""
    return {
        "route": {
            "receiver": "tickets",
            "group_by": ["alertname", "tenant", "kind"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "routes": [{"receiver": "pagerduty", "matchers": ['severity="page"'], "group_wait": "10s",
                        "repeat_interval": "1h"}],
        },
        "receivers": [
            {"name": "pagerduty", "pagerduty_configs": [{
                "routing_key_file": "/etc/alertmanager/secrets/pagerduty-routing-key", "send_resolved": True,
                "severity": "critical", "class": "clinical-safety", "component": "clinotel"}]},
            {"name": "tickets", "webhook_configs": [{"url": "http://ticket-bridge:8080/clinotel",
                                                      "send_resolved": True}]},
        ],
    }  # fmt: skip


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Multi-line strings (the SQL) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write(out: Path, pack: RulePack, database: str = "clinotel", paused: bool = False) -> list[Path]:
    """Write the Grafana provisioning files and the Alertmanager example under `out`."""
    alerting = out / "grafana" / "provisioning" / "alerting"
    files = {
        alerting / "clinotel-rules.yaml": grafana_rules(pack, database, paused=paused),
        alerting / "clinotel-contact-points.yaml": contact_points(),
        alerting / "clinotel-policies.yaml": policies(),
        out / "alertmanager" / "alertmanager.yml": alertmanager_config(),
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.dump(content, Dumper=_Dumper, sort_keys=False, width=200), encoding="utf-8")
    return list(files)
