"""The field types Grafana 12.2, the ClickHouse plugin 4.20.0 and grafana/alerting read clinotel's
generated files with, written for these tests from the upstream Go structs and schemas (not
copied). Versions compared (grafana/grafana stored versions of each file, the 12.x line; Grafana
12.2.0's own tree could not be fetched here, its repository is over the size limit):

- alert rules: pkg/services/provisioning/alerting/rules_types.go @ 0085cf86 (AlertRuleGroupV1,
  AlertRuleV1, QueryV1, values.*), models.ErrStateFromString / NoDataStateFromString;
- contact points: contact_point_types.go (ContactPointV1, ReceiverV1; settings interpolated since
  9.1.7, grafana#55666) and grafana/alerting @ a8ee2509 (2025-09-15) receivers/pagerduty,
  receivers/webhook, receivers/alertmanager `NewConfig` (what each refuses);
- notification policies: notification_policy_types.go @ 031be638 into grafana/alerting
  definition.Route (alertmanager.go) @ a8ee2509;
- datasources: pkg/services/provisioning/datasources/types.go @ 01c83423
  (upsertDataSourceFromConfigV1), the plugin's jsonData from grafana/clickhouse-datasource
  v4.20.0 pkg/plugin/settings.go (LoadSettings) and src/types/config.ts;
- dashboard providers: pkg/services/provisioning/dashboards (configs, with allowUiUpdates);
- dashboards: packages/grafana-schema/src/raw/dashboard/x/dashboard_types.gen.ts @ 01639dcc
  (Dashboard, Panel, RowPanel, FieldConfig, GridPos, VariableModel, TimePickerConfig), the
  panel plugins' options from their panelcfg.cue (via grafana-foundation-sdk's jsonschema for
  stat, timeseries, table) and the plugin's saved query (src/types/sql.ts, CHSqlQuery);
- values.*: pkg/services/provisioning/values/values.go @ 03d9862a (os.ExpandEnv, `$$` a `$`).

A spec is a Python type (or a tuple of them), `Obj` (named fields; a key it does not name is an
error: Grafana would ignore it silently), `ListOf`, `MapOf`, `OneOf` (enumerated values) or one
of the Grafana value kinds below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Any]
    required: frozenset[str] = field(default_factory=frozenset)
    open: bool = False
    """Unknown keys allowed (a map the reader passes on, such as a query model)."""


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    value: Any


@dataclass(frozen=True)
class OneOf:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Value:
    """A provisioning `values.*` type: a YAML scalar, env-expanded, then parsed."""

    kind: str  # "string", "int64", "bool"


@dataclass(frozen=True)
class Check:
    """A predicate on a value, with its reason."""

    test: Callable[[Any], bool]
    reason: str
    base: Any = object


ANY: Final = object()
STR: Final = Value("string")
INT: Final = Value("int64")
BOOL: Final = Value("bool")
_VAR: Final = re.compile(r"\$(\{[^}]*\}|[A-Za-z0-9_]+|[*#$@!?-])")


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """values.interpolateValue: `$$` is a literal `$`, the rest through Go's os.ExpandEnv (an
    unset variable is empty)."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        name = name[1:-1] if name.startswith("{") else name
        return env.get(name, "")

    return "$".join(_VAR.sub(one, part) for part in text.split("$$"))


def _value(v: Any, kind: str, path: str, env: Mapping[str, str] | None) -> list[str]:
    if isinstance(v, dict | list):
        return [f"{path}: a {kind} value, not {type(v).__name__}"]
    text = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    if env is not None:
        text = expand_env(text, env)
    if kind == "int64" and text and not re.fullmatch(r"[+-]?\d+", text):
        return [f"{path}: {text!r} is not an int64"]
    if kind == "bool" and text not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
        return [f"{path}: {text!r} is not a bool (strconv.ParseBool)"]
    return []


def check(value: Any, spec: Any, path: str = "$", env: Mapping[str, str] | None = None) -> list[str]:
    """Every way `value` departs from `spec` (empty: Grafana reads it as meant)."""
    if spec is ANY:
        return []
    if isinstance(spec, Value):
        return _value(value, spec.kind, path, env)
    if isinstance(spec, Check):
        errors = check(value, spec.base, path, env) if spec.base is not object else []
        return errors or ([] if spec.test(value) else [f"{path}: {spec.reason} (got {value!r})"])
    if isinstance(spec, OneOf):
        return [] if value in spec.values else [f"{path}: {value!r} is not one of {list(spec.values)}"]
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return [f"{path}: a list, not {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in check(v, spec.item, f"{path}[{i}]", env)]
    if isinstance(spec, MapOf):
        if not isinstance(value, dict):
            return [f"{path}: a map, not {type(value).__name__}"]
        return [e for k, v in value.items() for e in check(v, spec.value, f"{path}.{k}", env)]
    if isinstance(spec, Obj):
        if not isinstance(value, dict):
            return [f"{path}: an object, not {type(value).__name__}"]
        errors = [f"{path}: {k} is required" for k in sorted(spec.required - set(value))]
        for k, v in value.items():
            if k in spec.fields:
                errors += check(v, spec.fields[k], f"{path}.{k}", env)
            elif not spec.open:
                errors.append(f"{path}.{k}: not a field Grafana reads here (it would be ignored)")
        return errors
    types = spec if isinstance(spec, tuple) else (spec,)
    if (bool in types or not isinstance(value, bool)) and isinstance(value, types):
        return []
    return [f"{path}: {'/'.join(t.__name__ for t in types)}, not {type(value).__name__} {value!r}"]


NUM: Final = (int, float)
_DURATION: Final = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
DURATION: Final = Check(lambda v: bool(_DURATION.fullmatch(str(v))), "a Prometheus duration (model.ParseDuration)", STR)

# ---------------------------------------------------------------- alerting: rules
QUERY_MODEL_CLICKHOUSE: Final = Obj(
    {"refId": str, "datasource": Obj({"type": str, "uid": str}), "editorType": OneOf(("sql", "builder")),
     "queryType": OneOf(("table", "timeseries", "logs", "traces")), "format": OneOf((0, 1, 2, 3, 4)),
     "pluginVersion": str, "rawSql": str, "meta": dict, "expand": bool, "builderOptions": dict,
     "intervalMs": NUM, "maxDataPoints": NUM},
    frozenset({"refId", "rawSql", "format", "editorType"}),
)  # fmt: skip
REDUCERS: Final = ("sum", "mean", "min", "max", "count", "last", "median")
THRESHOLD_TYPES: Final = ("gt", "lt", "eq", "ne", "gte", "lte", "within_range", "outside_range",
                          "within_range_included", "outside_range_included")  # fmt: skip
EXPR_DS: Final = Obj({"type": OneOf(("__expr__",)), "uid": OneOf(("__expr__",))})
QUERY_MODEL_REDUCE: Final = Obj(
    {"refId": str, "type": OneOf(("reduce",)), "expression": str, "reducer": OneOf(REDUCERS), "datasource": EXPR_DS,
     "settings": Obj({"mode": OneOf(("", "dropNN", "replaceNN")), "replaceWithValue": NUM})},
    frozenset({"type", "expression", "reducer"}),
)  # fmt: skip
QUERY_MODEL_THRESHOLD: Final = Obj(
    {"refId": str, "type": OneOf(("threshold",)), "expression": str, "datasource": EXPR_DS,
     "conditions": Check(lambda v: isinstance(v, list) and len(v) == 1, "exactly one condition",
                         ListOf(Obj({"evaluator": Obj({"type": OneOf(THRESHOLD_TYPES), "params": ListOf(NUM)},
                                                      frozenset({"type", "params"}))})))},
    frozenset({"type", "expression", "conditions"}),
)  # fmt: skip
QUERY: Final = Obj(
    {"refId": STR, "queryType": STR, "datasourceUid": STR, "model": ANY,
     "relativeTimeRange": Obj({"from": int, "to": int}, frozenset({"from", "to"}))},
    frozenset({"refId", "datasourceUid", "model", "relativeTimeRange"}),
)  # fmt: skip
ALERT_RULE: Final = Obj(
    {"uid": Check(lambda v: bool(re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", str(v))), "a uid of 1-40 [a-zA-Z0-9_-]", STR),
     "title": Check(lambda v: bool(str(v).strip()), "a title", STR), "condition": STR, "data": ListOf(QUERY),
     "dashboardUid": STR, "panelId": INT, "noDataState": OneOf(("NoData", "Alerting", "OK", "KeepLast")),
     "execErrState": OneOf(("Error", "Alerting", "OK", "KeepLast")), "for": DURATION, "keepFiringFor": DURATION,
     "missing_series_evals_to_resolve": INT, "annotations": MapOf(STR), "labels": MapOf(STR), "isPaused": BOOL,
     "notification_settings": dict, "record": dict},
    frozenset({"uid", "title", "condition", "data"}),
)  # fmt: skip
RULES_FILE: Final = Obj(
    {"apiVersion": OneOf((1,)), "deleteRules": ListOf(Obj({"uid": STR, "orgId": INT})),
     "groups": ListOf(Obj({"orgId": INT, "name": STR, "folder": STR, "interval": DURATION,
                           "rules": ListOf(ALERT_RULE)}, frozenset({"name", "folder", "interval", "rules"})))},
    frozenset({"apiVersion"}),
)  # fmt: skip

# ---------------------------------------------------------------- alerting: contact points
NONEMPTY: Final = Check(
    lambda v: bool(str(v).strip()), "must not be empty: Grafana refuses the contact point and exits"
)
RECEIVER_SETTINGS: Final = {
    # grafana/alerting receivers/<type>/config.go NewConfig: the fields read, and what is refused
    "pagerduty": Obj({"integrationKey": NONEMPTY, "severity": str, "details": MapOf(str), "class": str,
                      "component": str, "group": str, "summary": str, "source": str, "client": str,
                      "client_url": str, "url": str}, frozenset({"integrationKey"})),
    "webhook": Obj({"url": NONEMPTY, "httpMethod": OneOf(("POST", "PUT")), "maxAlerts": (int, str),
                    "authorization_scheme": str, "authorization_credentials": str, "username": str, "password": str,
                    "title": str, "message": str, "tlsConfig": dict, "hmacConfig": dict, "headers": MapOf(str),
                    "payload": dict}, frozenset({"url"})),
    "prometheus-alertmanager": Obj({"url": NONEMPTY, "basicAuthUser": str, "basicAuthPassword": str},
                                   frozenset({"url"})),
}  # fmt: skip
RECEIVER: Final = Obj(
    {"uid": Check(lambda v: bool(str(v).strip()), "a uid", STR), "type": OneOf(tuple(RECEIVER_SETTINGS)),
     "settings": dict, "disableResolveMessage": BOOL},
    frozenset({"uid", "type", "settings"}),
)  # fmt: skip
CONTACT_POINTS_FILE: Final = Obj(
    {"apiVersion": OneOf((1,)), "deleteContactPoints": ListOf(Obj({"orgId": INT, "uid": STR})),
     "contactPoints": ListOf(Obj({"orgId": INT, "name": NONEMPTY, "receivers": ListOf(RECEIVER)},
                                 frozenset({"name", "receivers"})))},
    frozenset({"apiVersion"}),
)  # fmt: skip

# ---------------------------------------------------------------- alerting: notification policies
MATCHER_OPS: Final = ("=", "!=", "=~", "!~")


def _route() -> Obj:
    fields: dict[str, Any] = {
        "receiver": str, "group_by": ListOf(str), "match": MapOf(str), "match_re": MapOf(str),
        "matchers": ListOf(Check(lambda v: bool(re.fullmatch(r'\s*\w+\s*(=~|!~|!=|=)\s*"?[^"]*"?\s*', str(v))),
                                 "a matcher such as severity = \"page\"", str)),
        "object_matchers": ListOf(Check(lambda v: isinstance(v, list) and len(v) == 3 and v[1] in MATCHER_OPS
                                        and all(isinstance(x, str) for x in v), "[label, op, value]")),
        "mute_time_intervals": ListOf(str), "active_time_intervals": ListOf(str), "continue": bool,
        "group_wait": DURATION, "group_interval": DURATION, "repeat_interval": DURATION, "orgId": INT,
    }  # fmt: skip
    route = Obj(fields)
    fields["routes"] = ListOf(route)
    return route


POLICIES_FILE: Final = Obj(
    {"apiVersion": OneOf((1,)), "resetPolicies": ListOf(INT), "policies": ListOf(_route())}, frozenset({"apiVersion"})
)

# ---------------------------------------------------------------- datasources
CLICKHOUSE_JSON_DATA: Final = Obj(
    {"host": str, "server": str, "port": Check(lambda v: isinstance(v, int) or str(v).isdigit(), "a port", ANY),
     "protocol": OneOf(("native", "http")), "secure": (bool, str), "path": str, "tlsSkipVerify": (bool, str),
     "tlsAuth": (bool, str), "tlsAuthWithCACert": (bool, str), "username": str, "defaultDatabase": str,
     "dialTimeout": (str, int), "queryTimeout": (str, int), "connMaxLifetime": (str, int),
     "maxIdleConns": (str, int), "maxOpenConns": (str, int), "customSettings": ListOf(dict),
     "httpHeaders": ListOf(dict), "forwardGrafanaHeaders": bool, "enableRowLimit": bool, "rowLimit": int,
     "enableSchemaCache": bool, "schemaCacheTTLSeconds": int, "validateSql": bool,
     "logs": dict, "traces": Obj({"defaultDatabase": str, "defaultTable": str, "otelEnabled": bool,
                                  "otelVersion": str, "durationUnit": str, "traceTimestampTableSuffix": str,
                                  "flattenNested": bool}, open=True)},
    frozenset({"host", "port", "protocol"}),
)  # fmt: skip
DATASOURCE: Final = Obj(
    {"orgId": INT, "orgName": STR, "version": INT, "name": NONEMPTY, "type": STR, "access": STR, "url": STR,
     "user": STR, "database": STR, "basicAuth": BOOL, "basicAuthUser": STR, "withCredentials": BOOL,
     "isDefault": BOOL, "correlations": ListOf(dict), "jsonData": dict, "secureJsonData": MapOf(STR),
     "editable": BOOL, "uid": STR},
    frozenset({"name", "type"}),
)  # fmt: skip
DATASOURCES_FILE: Final = Obj(
    {"apiVersion": OneOf((1,)), "datasources": ListOf(DATASOURCE),
     "deleteDatasources": ListOf(Obj({"orgId": INT, "orgName": STR, "name": STR}))},
    frozenset({"apiVersion"}),
)  # fmt: skip
PROVIDERS_FILE: Final = Obj(
    {"apiVersion": OneOf((1,)), "providers": ListOf(Obj(
        {"name": NONEMPTY, "type": OneOf(("file",)), "orgId": INT, "folder": STR, "folderUid": STR,
         "editable": BOOL, "disableDeletion": BOOL, "updateIntervalSeconds": INT, "allowUiUpdates": BOOL,
         "options": Obj({"path": NONEMPTY, "foldersFromFilesStructure": bool}, frozenset({"path"}))},
        frozenset({"name", "type", "options"})))},
    frozenset({"apiVersion"}),
)  # fmt: skip

# ---------------------------------------------------------------- dashboards
DATASOURCE_REF: Final = Obj({"type": str, "uid": str})
GRID_POS: Final = Obj({"h": int, "w": int, "x": int, "y": int, "static": bool}, frozenset({"h", "w", "x", "y"}))
THRESHOLDS: Final = Obj(
    {"mode": OneOf(("absolute", "percentage")), "steps": ListOf(Obj({"color": str, "value": (int, float, type(None))},
                                                                    frozenset({"color", "value"})))},
    frozenset({"mode", "steps"}),
)  # fmt: skip
FIELD_CONFIG: Final = {
    "color": Obj({"mode": str, "fixedColor": str, "seriesBy": OneOf(("min", "max", "last"))}, frozenset({"mode"})),
    "custom": dict, "decimals": NUM, "description": str, "displayName": str, "displayNameFromDS": str,
    "filterable": bool, "links": list, "mappings": ListOf(dict), "max": NUM, "min": NUM, "noValue": str, "path": str,
    "thresholds": THRESHOLDS, "unit": str, "writeable": bool,
}  # fmt: skip
CLICKHOUSE_TARGET: Final = QUERY_MODEL_CLICKHOUSE
_LEGEND: Final = Obj({"displayMode": OneOf(("list", "table", "hidden")), "placement": OneOf(("bottom", "right")),
                      "showLegend": bool, "asTable": bool, "isVisible": bool, "sortBy": str, "sortDesc": bool,
                      "width": NUM, "calcs": ListOf(str)})  # fmt: skip
_TOOLTIP: Final = Obj({"mode": OneOf(("single", "multi", "none")), "sort": OneOf(("none", "asc", "desc")),
                       "maxWidth": NUM, "maxHeight": NUM, "hideZeros": bool})  # fmt: skip
PANEL_PLUGINS: Final = {
    # (options, fieldConfig.defaults.custom) per panel type
    "stat": (Obj({"graphMode": OneOf(("none", "line", "area")),
                  "colorMode": OneOf(("value", "background", "background_solid", "none")),
                  "justifyMode": OneOf(("auto", "center")),
                  "textMode": OneOf(("auto", "value", "value_and_name", "name", "none")), "wideLayout": bool,
                  "showPercentChange": bool, "percentChangeColorMode": str, "text": dict,
                  "orientation": OneOf(("auto", "vertical", "horizontal")),
                  "reduceOptions": Obj({"values": bool, "limit": NUM, "calcs": ListOf(str), "fields": str})}),
             Obj({})),
    "timeseries": (Obj({"legend": _LEGEND, "tooltip": _TOOLTIP, "timezone": ListOf(str),
                        "orientation": OneOf(("auto", "vertical", "horizontal"))}),
                   Obj({"drawStyle": OneOf(("line", "bars", "points")), "gradientMode": str, "thresholdsStyle":
                        Obj({"mode": str}), "transform": str, "lineColor": str, "lineWidth": NUM,
                        "lineInterpolation": OneOf(("linear", "smooth", "stepBefore", "stepAfter")),
                        "lineStyle": dict, "fillColor": str, "fillOpacity": NUM, "showPoints":
                        OneOf(("auto", "never", "always")), "pointSize": NUM, "pointColor": str, "axisPlacement":
                        OneOf(("auto", "top", "right", "bottom", "left", "hidden")), "axisColorMode": str,
                        "axisLabel": str, "axisWidth": NUM, "axisSoftMin": NUM, "axisSoftMax": NUM,
                        "axisGridShow": bool, "scaleDistribution": Obj({"type": OneOf(("linear", "log", "ordinal",
                        "symlog")), "log": NUM, "linearThreshold": NUM}), "axisCenteredZero": bool,
                        "barAlignment": OneOf((-1, 0, 1)), "barWidthFactor": NUM, "stacking":
                        Obj({"mode": OneOf(("none", "normal", "percent")), "group": str}), "hideFrom":
                        Obj({"tooltip": bool, "legend": bool, "viz": bool}), "insertNulls": (bool, int),
                        "spanNulls": (bool, int), "fillBelowTo": str, "pointSymbol": str, "axisBorderShow": bool,
                        "barMaxWidth": NUM})),
    "table": (Obj({"frameIndex": NUM, "showHeader": bool, "showRowNumbers": bool, "showTypeIcons": bool,
                   "sortBy": ListOf(Obj({"displayName": str, "desc": bool})), "footer": dict,
                   "cellHeight": OneOf(("sm", "md", "lg", "auto"))}),
              Obj({"width": NUM, "minWidth": NUM, "align": OneOf(("auto", "left", "right", "center")),
                   "displayMode": str, "cellOptions": dict, "hidden": bool, "inspect": bool, "filterable": bool,
                   "hideHeader": bool})),
}  # fmt: skip
PANEL_FIELDS: Final = {
    "type": str, "id": int, "title": str, "description": str, "datasource": DATASOURCE_REF, "gridPos": GRID_POS,
    "targets": ListOf(CLICKHOUSE_TARGET), "pluginVersion": str, "links": list, "transformations": ListOf(dict),
    "transparent": bool, "interval": str, "maxDataPoints": int, "timeFrom": str, "timeShift": str,
    "hideTimeOverride": bool, "repeat": str, "repeatDirection": OneOf(("h", "v")), "maxPerRow": int,
    "libraryPanel": dict, "options": dict, "fieldConfig": Obj({"defaults": Obj(FIELD_CONFIG),
                                                               "overrides": ListOf(dict)}, frozenset({"defaults"})),
}  # fmt: skip
ROW_PANEL: Final = Obj(
    {"type": OneOf(("row",)), "id": int, "title": str, "collapsed": bool, "gridPos": GRID_POS, "panels": list,
     "repeat": str, "datasource": DATASOURCE_REF},
    frozenset({"type", "id", "collapsed", "panels"}),
)  # fmt: skip
VARIABLE: Final = Obj(
    {"type": OneOf(("query", "adhoc", "groupby", "constant", "datasource", "interval", "textbox", "custom",
                    "system")), "name": str, "label": str, "description": str, "datasource": DATASOURCE_REF,
     "query": (str, dict), "definition": str, "refresh": OneOf((0, 1, 2)), "sort": OneOf(tuple(range(9))),
     "multi": bool, "includeAll": bool, "allValue": str, "hide": OneOf((0, 1, 2)), "regex": str,
     "skipUrlSync": bool, "options": list,
     "current": Obj({"selected": bool, "text": (str, list), "value": (str, list)}, frozenset({"text", "value"}))},
    frozenset({"type", "name"}),
)  # fmt: skip
DASHBOARD: Final = Obj(
    {"annotations": Obj({"list": list}), "description": str, "editable": bool, "fiscalYearStartMonth": int,
     "gnetId": str, "graphTooltip": OneOf((0, 1, 2)), "id": (int, type(None)), "links": list, "liveNow": bool,
     "panels": list, "refresh": str, "revision": int, "schemaVersion": int, "snapshot": dict, "tags": ListOf(str),
     "templating": Obj({"list": ListOf(VARIABLE)}), "time": Obj({"from": str, "to": str}, frozenset({"from", "to"})),
     "timepicker": Obj({"hidden": bool, "nowDelay": str, "refresh_intervals": ListOf(str), "quick_ranges": list}),
     "timezone": str, "title": str, "uid": str, "version": int, "weekStart": str},
    frozenset({"schemaVersion", "title"}),
)  # fmt: skip


def check_dashboard(data: dict[str, Any]) -> list[str]:
    """The dashboard against the dashboard schema, each panel against Panel (or RowPanel) and its
    plugin's options and custom field config."""
    errors = check(data, DASHBOARD)
    for i, panel in enumerate(data.get("panels", [])):
        path = f"$.panels[{i}]"
        if panel.get("type") == "row":
            errors += check(panel, ROW_PANEL, path)
            continue
        errors += check(panel, Obj(PANEL_FIELDS, frozenset({"type"})), path)
        plugin = PANEL_PLUGINS.get(panel.get("type", ""))
        if plugin is None:
            errors.append(f"{path}.type: {panel.get('type')!r} has no options schema here")
            continue
        options, custom = plugin
        errors += check(panel.get("options", {}), options, f"{path}.options")
        errors += check(panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}), custom,
                        f"{path}.fieldConfig.defaults.custom")  # fmt: skip
    return errors


def grafana_env(definition: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment as the container sees it (already interpolated)."""
    env = definition.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def check_contact_points(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The file's fields, then each receiver's settings after Grafana's env expansion
    (`settings` is a values.JSONValue; every string in it is expanded)."""
    errors = check(data, CONTACT_POINTS_FILE, env=env)

    def expanded(v: Any) -> Any:
        if isinstance(v, str):
            return expand_env(v, env)
        if isinstance(v, dict):
            return {k: expanded(x) for k, x in v.items()}
        if isinstance(v, list):
            return [expanded(x) for x in v]
        return v

    for point in data.get("contactPoints", []):
        for r in point.get("receivers", []):
            spec = RECEIVER_SETTINGS.get(r.get("type", ""))
            if spec is not None:
                errors += check(expanded(r.get("settings", {})), spec, f"{point.get('name')}.{r.get('uid')}.settings")
    return errors
