"""The offline report: every dashboard panel run as Grafana would run it and drawn into one
self-contained HTML file (inline CSS and SVG, no script, no network), readable anywhere.

Time series become SVG line charts, tables HTML tables, stats large figures; a panel whose query
fails shows the error in its place. The alert timeline (what fired, resolved and was delivered,
from `clinotel_alert_events`) closes the report."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.dashboards.check import panel_range
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = ["Report", "render"]

PALETTE: Final = ("#3274d9", "#e0752d", "#56a64b", "#a352cc", "#f2cc0c", "#8ab8ff", "#e02f44", "#73bf69")
TABLE_ROWS: Final = 40
W, H, ML, MR, MT, MB = 560, 200, 56, 12, 10, 26


@dataclass(frozen=True)
class Report:
    """What was rendered: panels drawn, and panels whose query failed."""

    html: str
    panels: int
    failed: int


def _fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if unit == "percentunit":
        return f"{v * 100:.1f}%"
    if unit in ("ms", "s"):
        seconds = v / 1000 if unit == "ms" else v
        if abs(seconds) >= 3600:
            return f"{seconds / 3600:.1f} h"
        if abs(seconds) >= 60:
            return f"{seconds / 60:.1f} min"
        if abs(seconds) >= 1:
            return f"{seconds:.2f} s"
        return f"{seconds * 1000:.0f} ms"
    if unit == "bytes":
        for size, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(v) >= size:
                return f"{v / size:.1f} {suffix}"
        return f"{v:.0f} B"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}k"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _series(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, list[tuple[float, float]]]:
    """Long rows (time, labels…, values…) as named series of (epoch seconds, value)."""
    out: dict[str, list[tuple[float, float]]] = {}
    if not rows:
        return out
    first = rows[0]
    labels = [i for i in range(1, len(columns)) if isinstance(first[i], str)]
    values = [i for i in range(1, len(columns)) if i not in labels]
    for row in rows:
        t = row[0]
        x = t.replace(tzinfo=UTC).timestamp() if isinstance(t, datetime) else float(t)
        prefix = " ".join(str(row[i]) for i in labels)
        for i in values:
            if row[i] is None:
                continue
            name = f"{prefix} {columns[i]}".strip() if len(values) > 1 or not prefix else prefix
            out.setdefault(name, []).append((x, float(row[i])))
    return out


def _svg(series: dict[str, list[tuple[float, float]]], unit: str) -> str:
    points = [p for s in series.values() for p in s]
    if not points:
        return '<p class="empty">no data in this range</p>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(0.0, *(p[1] for p in points)), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x: float) -> float:
        return ML + (x - x0) / (x1 - x0) * (W - ML - MR)

    def sy(y: float) -> float:
        return MT + (1 - (y - y0) / (y1 - y0)) * (H - MT - MB)

    parts = [f'<svg viewBox="0 0 {W} {H}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        parts.append(f'<line x1="{ML}" x2="{W - MR}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" class="grid"/>')
        parts.append(f'<text x="{ML - 4}" y="{sy(y) + 3:.1f}" class="ylab">{html.escape(_fmt(y, unit))}</text>')
    for k in range(4):
        x = x0 + (x1 - x0) * k / 3
        label = datetime.fromtimestamp(x, UTC).strftime("%H:%M")
        parts.append(f'<text x="{sx(x):.1f}" y="{H - 8}" class="xlab">{label}</text>')
    for n, (name, pts) in enumerate(sorted(series.items())):
        color = PALETTE[n % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline points="{path}" stroke="{color}"><title>{html.escape(name)}</title></polyline>')
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{PALETTE[n % len(PALETTE)]}"></i>{html.escape(name)}</span>'
        for n, name in enumerate(sorted(series))
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="empty">no rows in this range</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v, 'short') if isinstance(v, float) else str(v))}</td>"
                         for v in row) + "</tr>"
        for row in rows[:TABLE_ROWS]
    )  # fmt: skip
    more = f'<p class="more">{len(rows) - TABLE_ROWS} more rows</p>' if len(rows) > TABLE_ROWS else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _stat(columns: Sequence[str], rows: Sequence[Sequence[Any]], unit: str, no_value: str) -> str:
    value = rows[0][0] if rows else None
    n = rows[0][1] if rows and len(rows[0]) > 1 else None
    shown = no_value if value is None else _fmt(value, unit)
    sample = f'<div class="n">n = {n:,}</div>' if isinstance(n, int) else ""
    return f'<div class="stat">{html.escape(shown)}</div>{sample}'


def _panel(client: Any, panel: dict[str, Any], variables: tuple[str, ...], tr: TimeRange) -> tuple[str, bool]:
    kind = panel["type"]
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    title = html.escape(panel.get("title", ""))
    about = html.escape(panel.get("description", ""))
    try:
        sql = panel["targets"][0]["rawSql"]
        expanded = expand(sql, panel_range(panel, variables, tr))
        result = client.query(expanded)
        columns, rows = list(result.column_names), list(result.result_rows)
    except Exception as e:  # noqa: BLE001 - a failed panel is shown, not fatal
        message = str(e).strip().splitlines()[0][:400]
        return (
            f'<section class="panel {kind}"><h3>{title}</h3><p class="error">{html.escape(message)}</p></section>',
            False,
        )
    if kind == "timeseries":
        body = _svg(_series(columns, rows), unit)
    elif kind == "stat":
        body = _stat(columns, rows, unit, panel.get("fieldConfig", {}).get("defaults", {}).get("noValue", "–"))
    else:
        body = _table(columns, rows)
    return f'<section class="panel {kind}"><h3 title="{about}">{title}</h3>{body}</section>', True


_CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1f2430}
header{background:#1f2430;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c7cbd6}nav{padding:8px 24px;background:#fff;border-bottom:1px solid #dde}
nav a{margin-right:16px;color:#3274d9;text-decoration:none}main{padding:0 24px 24px}
h2{margin:24px 0 8px;font-size:18px}h4{margin:16px 0 4px;color:#555;font-size:13px;text-transform:uppercase}
.grid-panels{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px}
.panel{background:#fff;border:1px solid #dde;border-radius:4px;padding:10px 12px;overflow-x:auto}
.panel.timeseries,.panel.table{grid-column:span 2}.panel h3{margin:0 0 6px;font-size:14px}
.stat{font-size:32px;font-weight:600;color:#1f60c4}.n{color:#777;font-size:12px}
svg{width:100%;height:auto}svg polyline{fill:none;stroke-width:1.6}svg .grid{stroke:#e6e8ee}
svg text{font-size:10px;fill:#666}svg .ylab{text-anchor:end}svg .xlab{text-anchor:middle}
.legend span{margin-right:12px;font-size:12px;white-space:nowrap}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px;border-radius:2px}table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left}th{background:#f0f2f6}
.error{color:#c4162a;font-family:monospace;font-size:12px}.empty,.more{color:#888}
"""


def _alert_timeline(client: Any, database: str, tr: TimeRange) -> str:
    """The alert transitions and deliveries in the range, from clinotel_alert_events."""
    from clinotel.model import tables

    table = f"`{database}`.`{tables.ALERT_EVENTS}`"
    window = f"Timestamp >= toDateTime({tr.from_s}) AND Timestamp <= toDateTime({tr.to_s})"
    try:
        fired = client.query(
            f"SELECT Rule, Severity, countIf(Event = 'firing') AS fired, countIf(Event = 'resolved') AS resolved, "
            f"countIf(Event = 'notify_ok') AS delivered, countIf(Event = 'notify_failed') AS failed_attempts "
            f"FROM {table} WHERE {window} GROUP BY Rule, Severity HAVING fired > 0 OR failed_attempts > 0 "
            "ORDER BY fired DESC"
        )
        events = client.query(
            f"SELECT Timestamp, Rule, Labels, Event, Value, Receiver, Detail FROM {table} WHERE {window} "
            "AND Event IN ('firing', 'resolved', 'notify_ok', 'notify_failed', 'error') ORDER BY Timestamp LIMIT 500"
        )
    except Exception as e:  # noqa: BLE001 - no audit table yet: say so
        return f'<p class="empty">no alert audit trail in this store ({html.escape(str(e).splitlines()[0][:200])})</p>'
    summary = _table(list(fired.column_names), list(fired.result_rows))
    timeline = _table(list(events.column_names), list(events.result_rows))
    return (
        '<div class="grid-panels"><section class="panel table"><h3>Alerts fired</h3>'
        f'{summary}</section><section class="panel table"><h3>Timeline</h3>{timeline}</section></div>'
    )


def render(
    client: Any, dashboards: dict[str, dict[str, Any]], tr: TimeRange, title: str = "clinotel report",
    database: str = DEFAULT_DATABASE,
) -> Report:  # fmt: skip
    """Every panel of `dashboards` drawn for the range `tr`, then the alert timeline."""
    sections, nav, panels, failed = [], [], 0, 0
    for name, data in dashboards.items():
        nav.append(f'<a href="#{html.escape(name)}">{html.escape(data["title"].split("/")[-1].strip())}</a>')
        blocks: list[str] = []
        group: list[str] = []
        variables = tuple(v["name"] for v in data.get("templating", {}).get("list", []))
        for panel in data["panels"]:
            if panel["type"] == "row":
                if group:
                    blocks.append(f'<div class="grid-panels">{"".join(group)}</div>')
                    group = []
                blocks.append(f"<h4>{html.escape(panel.get('title', ''))}</h4>")
                continue
            rendered, ok = _panel(client, panel, variables, tr)
            panels += 1
            failed += not ok
            group.append(rendered)
        if group:
            blocks.append(f'<div class="grid-panels">{"".join(group)}</div>')
        sections.append(f'<h2 id="{html.escape(name)}">{html.escape(data["title"])}</h2>{"".join(blocks)}')
    nav.append('<a href="#alerts">Alerts</a>')
    sections.append(f'<h2 id="alerts">Alert timeline</h2>{_alert_timeline(client, database, tr)}')
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    span = f"{tr.start:%Y-%m-%d %H:%M} to {tr.end:%Y-%m-%d %H:%M} UTC"
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{span} · generated {generated} · {panels} panels"
        f"{f', {failed} failed' if failed else ''}</p></header>"
        f"<nav>{''.join(nav)}</nav><main>{''.join(sections)}</main></body></html>\n"
    )
    return Report(page, panels, failed)
