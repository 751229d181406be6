"""grafanalib for the ClickHouse datasource: the query target, the template variables, and the
fixes that make grafanalib 0.7.1's output what Grafana stores today.

grafanalib has no ClickHouse target (its SqlTarget emits Prometheus fields and a string
`format`), writes `schemaVersion` 12, legacy top-level keys (`rows`, `style`, `hideControls`,
`sharedCrosshair`), nulls, a string `thresholds.steps` on Stat panels, and template variables with
a plain-string query. `finish()` turns its JSON into the modern shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import attr
import grafanalib.core as g

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "PLUGIN_TYPE",
    "PLUGIN_VERSION",
    "SCHEMA_VERSION",
    "ClickHouseTarget",
    "Variable",
    "finish",
]

PLUGIN_TYPE: Final = "grafana-clickhouse-datasource"
PLUGIN_VERSION: Final = "4.20.0"
DATASOURCE_UID: Final = "clinotel-clickhouse"
DATASOURCE: Final = {"type": PLUGIN_TYPE, "uid": DATASOURCE_UID}
SCHEMA_VERSION: Final = 42
FORMATS: Final = {"timeseries": 0, "table": 1}
_LEGACY_DASHBOARD_KEYS: Final = ("rows", "style", "hideControls", "sharedCrosshair", "__inputs", "gnetId", "id")
_LEGACY_PANEL_KEYS: Final = ("error", "height", "minSpan", "span", "editable", "cacheTimeout", "hideTimeOverride")


@attr.s
class ClickHouseTarget:
    """A saved query of the ClickHouse plugin (SQL editor), as the plugin itself saves it."""

    raw_sql: str = attr.ib()
    query_type: str = attr.ib(default="timeseries")
    ref_id: str = attr.ib(default="A")

    def to_json_data(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": dict(DATASOURCE),
            "pluginVersion": PLUGIN_VERSION,
            "editorType": "sql",
            "queryType": self.query_type,
            "format": FORMATS[self.query_type],
            "rawSql": self.raw_sql,
        }


@dataclass(frozen=True)
class Variable:
    """A query variable over the ClickHouse datasource; multi-valued with All (`$__all`)."""

    name: str
    label: str
    sql: str

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "query",
            "name": self.name,
            "label": self.label,
            "datasource": dict(DATASOURCE),
            "query": {"editorType": "sql", "rawSql": self.sql},
            "definition": self.sql,
            "refresh": 2,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "hide": 0,
            "regex": "",
            "skipUrlSync": False,
        }


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _panel(panel: dict[str, Any]) -> dict[str, Any]:
    for key in _LEGACY_PANEL_KEYS:
        panel.pop(key, None)
    panel["datasource"] = dict(DATASOURCE)
    panel["pluginVersion"] = "12.2.0"
    thresholds = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds")
    if isinstance(thresholds, dict) and not (isinstance(thresholds.get("steps"), list) and thresholds["steps"]):
        thresholds["steps"] = [{"color": "green", "value": None}]
    if isinstance(thresholds, dict):
        for step in thresholds["steps"]:
            if step.get("value") == "null":
                step["value"] = None
    return panel


def finish(dashboard: g.Dashboard, variables: list[Variable]) -> dict[str, Any]:
    """The dashboard as the raw JSON Grafana's file provisioning loads."""
    import json

    from grafanalib._gen import DashboardEncoder

    data: dict[str, Any] = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    for key in _LEGACY_DASHBOARD_KEYS:
        data.pop(key, None)
    data["schemaVersion"] = SCHEMA_VERSION
    data["panels"] = [_panel(p) for p in data.get("panels", [])]
    data = _drop_nulls(data)
    # thresholds' base step has value null in Grafana's own JSON: put it back after the sweep
    for panel in data["panels"]:
        steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
        if steps and "value" not in steps[0]:
            steps[0]["value"] = None
    data["templating"] = {"list": [v.to_json() for v in variables]}
    data["annotations"] = {"list": []}
    data["editable"] = False
    data["fiscalYearStartMonth"] = 0
    data["liveNow"] = False
    data["weekStart"] = ""
    return data
