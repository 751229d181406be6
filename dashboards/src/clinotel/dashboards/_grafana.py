"""grafanalib for the ClickHouse datasource: the query target, the template variables, and the
fixes that make grafanalib 0.7.1's output what Grafana stores today.

grafanalib has no ClickHouse target (its SqlTarget emits Prometheus fields and a string
`format`), writes `schemaVersion` 12, legacy top-level keys (`rows`, `style`, `hideControls`,
`sharedCrosshair`), nulls, a string `thresholds.steps` on Stat panels, template variables with
a plain-string query, keys Grafana no longer reads (a table's `columns`, `fontSize`, `color`,
`mappings` and `displayMode`; targets, field config and `maxDataPoints: 100` on rows; the time
picker's `time_options`) and `maxDataPoints: 100` on every panel. `finish()` turns its JSON into
what Grafana 12.2 reads: only the fields of its dashboard schema (`Panel`, `RowPanel`,
`FieldConfig`) and of each panel plugin's options, and `maxDataPoints` chosen here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import attr
import grafanalib.core as g

from clinotel.model.grafana import DATASOURCE, DATASOURCE_UID, PLUGIN_TYPE, PLUGIN_VERSION

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "MAX_DATA_POINTS",
    "PLUGIN_TYPE",
    "PLUGIN_VERSION",
    "SCHEMA_VERSION",
    "ClickHouseTarget",
    "Variable",
    "finish",
]

SCHEMA_VERSION: Final = 42
FORMATS: Final = {"timeseries": 0, "table": 1}
MAX_DATA_POINTS: Final = 200
"""Every panel's `maxDataPoints`: the points Grafana asks for, so its interval (the range / 200,
rounded by Grafana's table, `interval.py`) is the same on every screen, and `dashboards check`
and the report run the bucket sizes Grafana runs. Without it Grafana uses the panel's width in
pixels, which only the browser knows."""
_LEGACY_DASHBOARD_KEYS: Final = ("rows", "style", "hideControls", "sharedCrosshair", "__inputs", "gnetId", "id")
# The fields of Grafana's dashboard schema (packages/grafana-schema/src/raw/dashboard/x/
# dashboard_types.gen.ts, stored version 01639dcc, Grafana 12.x) that clinotel may write;
# tests/grafana checks the rest of the tree against the same schema.
_PANEL_KEYS: Final = frozenset({
    "type", "id", "title", "description", "datasource", "gridPos", "targets", "options", "fieldConfig",
    "pluginVersion", "links", "transformations", "transparent", "interval", "maxDataPoints", "timeFrom",
    "timeShift", "hideTimeOverride", "repeat", "repeatDirection", "maxPerRow", "libraryPanel",
})  # fmt: skip
_ROW_KEYS: Final = frozenset({"type", "id", "title", "collapsed", "gridPos", "panels", "repeat", "datasource"})


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
    if panel["type"] == "row":
        return {k: v for k, v in panel.items() if k in _ROW_KEYS and k != "datasource"}
    panel = {k: v for k, v in panel.items() if k in _PANEL_KEYS}
    panel["datasource"] = dict(DATASOURCE)
    panel["pluginVersion"] = "12.2.0"
    panel["maxDataPoints"] = MAX_DATA_POINTS
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    thresholds = defaults.get("thresholds")
    if isinstance(thresholds, dict) and not (isinstance(thresholds.get("steps"), list) and thresholds["steps"]):
        thresholds["steps"] = [{"color": "green", "value": None}]
    if isinstance(thresholds, dict):
        for step in thresholds["steps"]:
            if step.get("value") == "null":
                step["value"] = None
    custom = defaults.get("custom")
    if isinstance(custom, dict):
        custom.pop("displayMode", None)  # the table's pre-10 cell mode; Grafana reads cellOptions
        if not custom:
            defaults.pop("custom")  # a stat panel has no custom field config
    return panel


def finish(
    dashboard: g.Dashboard, variables: list[Variable], annotations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The dashboard as the raw JSON Grafana's file provisioning loads; `annotations`: its
    annotation queries (`clinotel.dashboards.annotations`)."""
    import json

    from grafanalib._gen import DashboardEncoder

    data: dict[str, Any] = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    for key in _LEGACY_DASHBOARD_KEYS:
        data.pop(key, None)
    data["schemaVersion"] = SCHEMA_VERSION
    data.get("timepicker", {}).pop("time_options", None)  # no effect on a provisioned dashboard
    data["panels"] = [_panel(p) for p in data.get("panels", [])]
    data = _drop_nulls(data)
    # thresholds' base step has value null in Grafana's own JSON: put it back after the sweep
    for panel in data["panels"]:
        steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
        if steps and "value" not in steps[0]:
            steps[0]["value"] = None
    data["templating"] = {"list": [v.to_json() for v in variables]}
    data["annotations"] = {"list": list(annotations or [])}
    data["editable"] = False
    data["fiscalYearStartMonth"] = 0
    data["liveNow"] = False
    data["weekStart"] = ""
    return data
