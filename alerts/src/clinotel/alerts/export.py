"""Grafana alerting file provisioning (the flat rule format Grafana loads, not grafanalib's Ruler
shape), contact points, notification policies, and an Alertmanager configuration.

Each rule becomes A (the ClickHouse query: one point per alert instance at the end of the range,
`format: 0` so the plugin turns the label columns into series labels), B (reduce: last, dropping
non-numbers) and C (threshold). The query is the evaluator's own (`queries.rule_sql`) with the
window ending at Grafana's `$__toTime`, so Grafana and clinotel's evaluator judge the same rows;
its label columns are the evaluator's instance labels, and an instance under its minimum sample
is a NULL value, which Grafana reads as no data for that instance, as the evaluator does. The
threshold is the rule's exact comparison (`gt`, `gte`, `lt`, `lte`; Grafana has had `gte`/`lte`
since early 2025; `outside_range` for a disparity band, inclusive bounds staying clear). A
per-tenant or per-kind override becomes a rule of its own for that scope, and the default rule
leaves the scope out.

A query error never pages: every rule keeps its last state on an error (`execErrState:
KeepLast`: a firing page stays firing and nothing resolves or fires because the store hiccuped;
clinotel's evaluator does the same), and one ticket rule, `grafana_datasource_error`, turns a
datasource Grafana cannot query into a ticket (`execErrState: Error`; the DatasourceError alert
it raises is routed to tickets).

Grafana checks every contact point when it starts and exits on an empty PagerDuty key or webhook
URL, so a receiver is written only when it is configured (`Receivers`); without a PagerDuty key,
pages go to Alertmanager alone.

    OUT/grafana/provisioning/alerting/clinotel-rules.yaml
    OUT/grafana/provisioning/alerting/clinotel-contact-points.yaml
    OUT/grafana/provisioning/alerting/clinotel-policies.yaml
    OUT/alertmanager/alertmanager.yml
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from clinotel.alerts.decision import GRAFANA_THRESHOLD, criterion, grafana_threshold
from clinotel.alerts.queries import Bounds, rule_sql
from clinotel.alerts.rules import RUNBOOK_BASE, Kind, Override, Rule, RulePack, Test
from clinotel.model import clinical
from clinotel.model.grafana import DATASOURCE, DATASOURCE_UID, PLUGIN_VERSION
from clinotel.model.sql import identifier, literal
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = [
    "DATASOURCE_ERROR_RULE",
    "Receivers",
    "alertmanager_config",
    "contact_points",
    "grafana_rules",
    "policies",
    "rule_uid",
    "write",
]

EXPR: Final = {"type": "__expr__", "uid": "__expr__"}
NO_DATA: Final = {"ok": "OK", "keep": "KeepLast", "alerting": "Alerting"}
THRESHOLD: Final = GRAFANA_THRESHOLD
DATASOURCE_ERROR_RULE: Final = "grafana_datasource_error"
PAGERDUTY_KEY_FILE: Final = "/etc/alertmanager/secrets/pagerduty-routing-key"


@dataclass(frozen=True)
class Receivers:
    """Where notifications go, decided when the files are written.

    `pagerduty`: PAGERDUTY_ROUTING_KEY is set where Grafana (from its environment) and
    Alertmanager (from `PAGERDUTY_KEY_FILE`) run. `ticket_url`: the ticket webhook
    (CLINOTEL_TICKET_WEBHOOK_URL; Grafana reads it from its environment, Alertmanager gets it
    written). `alertmanager_url`: an Alertmanager Grafana hands what it has no direct receiver
    for (pages without PagerDuty, tickets without a webhook)."""

    pagerduty: bool = False
    ticket_url: str | None = None
    alertmanager_url: str | None = None

    def __post_init__(self) -> None:
        for what, url in (
            ("CLINOTEL_TICKET_WEBHOOK_URL", self.ticket_url),
            ("the Alertmanager URL", self.alertmanager_url),
        ):
            if url is None:
                continue
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or c < " " for c in url):
                raise ValueError(f"{what} must be an http(s) URL with a host, not {url!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str], alertmanager_url: str | None = None) -> Receivers:
        """From PAGERDUTY_ROUTING_KEY and CLINOTEL_TICKET_WEBHOOK_URL (empty means not set)."""
        return cls(
            pagerduty=bool(env.get("PAGERDUTY_ROUTING_KEY", "").strip()),
            ticket_url=env.get("CLINOTEL_TICKET_WEBHOOK_URL", "").strip() or None,
            alertmanager_url=alertmanager_url or None,
        )

    def pages(self) -> str:
        """Where Grafana sends pages, in words."""
        if self.pagerduty:
            return "PagerDuty (PAGERDUTY_ROUTING_KEY)"
        if self.alertmanager_url:
            return f"Alertmanager alone ({self.alertmanager_url}): no PagerDuty key is configured"
        return "the ticket receiver: no PagerDuty key and no Alertmanager are configured, so nothing pages"

    def tickets(self) -> str:
        """Where Grafana sends tickets, in words."""
        if self.ticket_url:
            return "the ticket webhook (CLINOTEL_TICKET_WEBHOOK_URL)"
        if self.alertmanager_url:
            return f"Alertmanager ({self.alertmanager_url}): no ticket webhook is configured"
        raise ValueError("tickets have nowhere to go: set CLINOTEL_TICKET_WEBHOOK_URL or give an Alertmanager URL")


def _scope_sql(o: Override) -> str:
    parts = []
    if o.tenant is not None:
        parts.append(f"r.tenant = {literal(o.tenant)}")
    if o.kind is not None:
        parts.append(f"r.kind = {literal(o.kind)}")
    return " AND ".join(parts) or "1"


def _labels(rule: Rule) -> list[str]:
    """The SELECT list of the label columns: the evaluator's instance labels (those it leaves
    empty are left out: an empty label is no label to Grafana and Alertmanager)."""
    if rule.kind is Kind.COLLECTOR:
        return [f"r.grp AS {identifier(rule.group_label)}"]
    if rule.kind is Kind.SDK:
        return ["r.tenant AS tenant", f"r.grp AS {identifier(rule.group_label)}"]
    if rule.kind is Kind.DISPARITY:
        return ["r.tenant AS tenant", "r.kind AS kind", "r.cohort AS cohort", "r.version AS model_version",
                f"r.grp AS {identifier(rule.group_label)}"]  # fmt: skip
    if rule.kind is Kind.DRIFT:
        return ["r.tenant AS tenant", "r.kind AS kind", f"r.grp AS {identifier(rule.group_label)}"]
    return ["r.tenant AS tenant", "r.kind AS kind"]


def _query(rule: Rule, database: str, min_sample: int, scope: str) -> str:
    # `$__toTime` is a DateTime; the windows are compared as DateTime64, as the evaluator's are:
    # ClickHouse 26.9 (chDB) answers `key_column < toDateTime(x)` wrongly for a DateTime64 key
    # column with a fractional part (a row at x - 0.7 s is left out).
    inner = rule_sql(rule, database, Bounds("toDateTime64($__toTime, 3)"))
    # the figure the rule decides on (`queries.COLUMNS`: the value, or what the test leaves of it)
    value = f"if(r.n >= {min_sample}, toFloat64(r.decide), NULL) AS value"
    columns = ", ".join(["$__toTime AS time", *_labels(rule), value])
    return f"SELECT {columns}\nFROM (\n{inner}\n) AS r\nWHERE ({scope})\nORDER BY time"


def value_meaning(rule: Rule) -> str:
    """What the exported query's `value` is, in words: Grafana's threshold model compares one
    number, so a tested rule exports the figure its test leaves (the `test` annotation)."""
    test = rule.decided_by
    pct = f"{rule.confidence * 100:g}%"
    if test is Test.NONE:
        return "the observed value (no test)"
    if rule.kind is Kind.THRESHOLD:
        side = "lower" if rule.harm_is_higher else "upper"
        return f"the {side} bound of the rate's {pct} Wilson score interval (not the rate itself)"
    what = {Kind.BASELINE: "the window ÷ the trailing baseline", Kind.CANARY: "the canary ÷ the baseline",
            Kind.DISPARITY: "the group ÷ the reference group"}[rule.kind]  # fmt: skip
    how = f"{pct} confidence sequence" if test is Test.SEQUENTIAL else f"{pct} MOVER-R Wilson interval"
    side = "either side" if rule.page_reference_worse else ("above 1" if rule.harm_is_higher else "below 1")
    return f"{what}, when its {how} excludes 1 ({side}); else 1 (no difference shown)"


def _data(sql: str, lookback: int, evaluator: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "refId": "A",
            "relativeTimeRange": {"from": lookback, "to": 0},
            "datasourceUid": DATASOURCE_UID,
            "model": {
                "refId": "A", "datasource": dict(DATASOURCE), "editorType": "sql", "queryType": "timeseries",
                "format": 0, "pluginVersion": PLUGIN_VERSION, "rawSql": sql,
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
                      "conditions": [{"evaluator": evaluator}], "datasource": dict(EXPR)},
        },
    ]  # fmt: skip


MAX_UID: Final = 40
"""Grafana's longest uid (`MaxUIDLength` in grafana's pkg/util)."""


def rule_uid(name: str, override: int = 0) -> str:
    """The Grafana uid of rule `name` (or of its `override`-th override's rule): at most MAX_UID
    characters of letters, digits, `-` and `_`, the same at every export, and unique. A name
    that fits is used as it is (`name`, `name-o1`); a longer one is cut, and a hash of the whole
    name and the override number appended (no rule name holds a `-`, nor a hash an `o`)."""
    uid = f"{name}-o{override}" if override else name
    if len(uid) <= MAX_UID:
        return uid
    digest = hashlib.sha256(f"{name}/{override}".encode()).hexdigest()[:12]
    return f"{name[: MAX_UID - len(digest) - 1]}-{digest}"


def _rule(rule: Rule, database: str, uid: str, title: str, threshold: float, min_sample: int, scope: str,
          runbook_base: str, paused: bool) -> dict[str, Any]:  # fmt: skip
    lookback = rule.window + (rule.baseline_window or 0)
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": _data(_query(rule, database, min_sample, scope), lookback, grafana_threshold(rule, threshold)),
        "for": f"{rule.for_}s",
        **({"keepFiringFor": f"{rule.keep_firing_for}s"} if rule.keep_firing_for else {}),
        "noDataState": NO_DATA[rule.no_data],
        "execErrState": "KeepLast",
        "labels": {"severity": rule.severity, "rule": rule.name, **rule.labels},
        "annotations": {
            "summary": rule.summary,
            "runbook_url": runbook_base + rule.runbook,
            "test": f"value: {value_meaning(rule)}",
            "criterion": criterion(rule, threshold, min_sample),
        },
        "isPaused": paused,
    }


def _datasource_error_rule(database: str, runbook_base: str, paused: bool) -> dict[str, Any]:
    """A ticket when Grafana cannot query the store: the query reads the clinical view every
    dashboard reads and never breaches; only its error (`execErrState: Error`) raises an alert."""
    table = f"{identifier(database)}.{identifier(clinical.WORKFLOWS)}"
    sql = f"SELECT $__toTime AS time, toFloat64(count()) AS value\nFROM (SELECT 1 FROM {table} LIMIT 1)"
    return {
        "uid": DATASOURCE_ERROR_RULE,
        "title": "Grafana cannot query the clinotel datasource",
        "condition": "C",
        "data": _data(sql, 600, {"type": "lt", "params": [0]}),
        "for": "5m",
        "noDataState": "OK",
        "execErrState": "Error",
        "labels": {"severity": "ticket", "rule": DATASOURCE_ERROR_RULE},
        "annotations": {
            "summary": "Grafana's ClickHouse datasource fails: alert rules keep their last state until it recovers",
            "runbook_url": f"{runbook_base}docs/runbooks/{DATASOURCE_ERROR_RULE}.md",
        },
        "isPaused": paused,
    }


def grafana_rules(
    pack: RulePack, database: str = DEFAULT_DATABASE, runbook_base: str = RUNBOOK_BASE, paused: bool = False
) -> dict[str, Any]:
    """The rule file: one group per severity, evaluated every minute. `paused` provisions the rules
    visible but not evaluated, for a deployment where the clinotel evaluator pages (one evaluator,
    never two pages for one incident). ValueError for a rule Grafana cannot judge as the
    evaluator does."""
    groups: dict[str, list[dict[str, Any]]] = {"page": [], "ticket": []}
    for rule in pack.rules:
        overridden = [o for o in rule.overrides if o.tenant is not None or o.kind is not None]
        if overridden and rule.no_data == "alerting":
            raise ValueError(
                f"{rule.name}: no_data: alerting with tenant or kind overrides has no faithful Grafana export "
                "(each override is a rule of its own there, and one whose scope has no rows would fire)"
            )
        default_scope = " AND ".join(f"NOT ({_scope_sql(o)})" for o in overridden) or "1"
        out = [_rule(rule, database, rule_uid(rule.name), rule.summary, rule.threshold, rule.min_sample, default_scope,
                     runbook_base, paused)]  # fmt: skip
        for n, o in enumerate(overridden, start=1):
            if o.disabled:
                continue
            threshold = o.threshold if o.threshold is not None else rule.threshold
            min_sample = o.min_sample if o.min_sample is not None else rule.min_sample
            where = ", ".join(f"{k} {v}" for k, v in (("tenant", o.tenant), ("kind", o.kind)) if v is not None)
            out.append(_rule(rule, database, rule_uid(rule.name, n), f"{rule.summary} ({where})", threshold,
                             min_sample, _scope_sql(o), runbook_base, paused))  # fmt: skip
        groups[rule.severity].extend(out)
    groups["ticket"].append(_datasource_error_rule(database, runbook_base, paused))
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": f"clinotel-{severity}", "folder": "clinotel", "interval": "1m", "rules": rules}
            for severity, rules in groups.items()
            if rules
        ],
    }


def _alertmanager_receiver(uid: str, url: str) -> dict[str, Any]:
    # Grafana expands $VARIABLES in contact point settings: `$$` keeps a literal `$`
    settings = {"url": url.replace("$", "$$")}
    return {"uid": uid, "type": "prometheus-alertmanager", "disableResolveMessage": False, "settings": settings}


def _page_receiver(r: Receivers) -> dict[str, Any] | None:
    if r.pagerduty:
        return {"uid": "clinotel-pagerduty", "type": "pagerduty", "disableResolveMessage": False,
                "settings": {"integrationKey": "$PAGERDUTY_ROUTING_KEY", "severity": "critical",
                             "class": "clinical-safety", "component": "clinotel"}}  # fmt: skip
    if r.alertmanager_url:
        return _alertmanager_receiver("clinotel-pages-alertmanager", r.alertmanager_url)
    return None


def _ticket_receiver(r: Receivers) -> dict[str, Any]:
    r.tickets()  # refuses when tickets have nowhere to go
    if r.ticket_url:
        return {"uid": "clinotel-tickets", "type": "webhook", "disableResolveMessage": False,
                "settings": {"url": "$CLINOTEL_TICKET_WEBHOOK_URL", "httpMethod": "POST"}}  # fmt: skip
    assert r.alertmanager_url is not None
    return _alertmanager_receiver("clinotel-tickets-alertmanager", r.alertmanager_url)


def contact_points(r: Receivers) -> dict[str, Any]:
    """`clinotel-pages` (PagerDuty, else Alertmanager; absent when neither is configured) and
    `clinotel-tickets` (the webhook, else Alertmanager). Only configured receivers are written:
    Grafana refuses to start on an empty key or URL."""
    points = []
    page = _page_receiver(r)
    if page is not None:
        points.append({"orgId": 1, "name": "clinotel-pages", "receivers": [page]})
    points.append({"orgId": 1, "name": "clinotel-tickets", "receivers": [_ticket_receiver(r)]})
    return {"apiVersion": 1, "contactPoints": points}


def policies(r: Receivers) -> dict[str, Any]:
    """A datasource error to tickets, `severity=page` to the pages contact point (tickets when no
    pager is configured), everything else to tickets; one notification per rule, tenant and kind."""
    pages = "clinotel-pages" if _page_receiver(r) is not None else "clinotel-tickets"
    return {
        "apiVersion": 1,
        "policies": [{
            "orgId": 1, "receiver": "clinotel-tickets", "group_by": ["alertname", "tenant", "kind"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "routes": [
                {"receiver": "clinotel-tickets", "object_matchers": [["alertname", "=", "DatasourceError"]]},
                {"receiver": pages, "object_matchers": [["severity", "=", "page"]], "group_wait": "10s",
                 "repeat_interval": "1h"},
            ],
        }],
    }  # fmt: skip


def alertmanager_config(r: Receivers) -> dict[str, Any]:
    """Alertmanager's routing of clinotel's alerts: `severity=page` to `pages` (PagerDuty, the key
    read from `PAGERDUTY_KEY_FILE`, when a key is configured), the rest to `tickets` (the ticket
    webhook when configured). A receiver with nothing configured keeps its alerts in
    Alertmanager's own view (UI and API) and sends them nowhere."""
    pages: dict[str, Any] = {"name": "pages"}
    if r.pagerduty:
        pages["pagerduty_configs"] = [{
            "routing_key_file": PAGERDUTY_KEY_FILE, "send_resolved": True,
            "severity": "critical", "class": "clinical-safety", "component": "clinotel",
        }]  # fmt: skip
    tickets: dict[str, Any] = {"name": "tickets"}
    if r.ticket_url:
        tickets["webhook_configs"] = [{"url": r.ticket_url, "send_resolved": True}]
    return {
        "route": {
            "receiver": "tickets",
            "group_by": ["alertname", "tenant", "kind"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "routes": [{"receiver": "pages", "matchers": ['severity="page"'], "group_wait": "10s",
                        "repeat_interval": "1h"}],
        },
        "receivers": [pages, tickets],
    }  # fmt: skip


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Multi-line strings (the SQL) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write(
    out: Path, pack: RulePack, receivers: Receivers, database: str = DEFAULT_DATABASE, paused: bool = False,
    runbook_base: str = RUNBOOK_BASE,
) -> list[Path]:  # fmt: skip
    """Write the Grafana provisioning files and the Alertmanager configuration under `out`."""
    alerting = out / "grafana" / "provisioning" / "alerting"
    files = {
        alerting / "clinotel-rules.yaml": grafana_rules(pack, database, runbook_base, paused),
        alerting / "clinotel-contact-points.yaml": contact_points(receivers),
        alerting / "clinotel-policies.yaml": policies(receivers),
        out / "alertmanager" / "alertmanager.yml": alertmanager_config(receivers),
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.dump(content, Dumper=_Dumper, sort_keys=False, width=200), encoding="utf-8")
    return list(files)
