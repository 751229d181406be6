"""The offline report: one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched) that a safety committee can read on screen or on paper.

Page one is the findings: every alert that fired (when, its value against its threshold, its
runbook), the canary against the baseline per kill criterion, the largest disparities between
cohort groups with their intervals, the alert timeline with the rollout changes beside it, and the
incidents. Then, on a page of its own, whether the automation is worth it (`_report.efficiency`:
minutes saved against shadow mode, rework created by the canary, in words with their intervals).
Then every dashboard panel, run as Grafana runs it and drawn with human labels, axis
titles and one format per quantity (`_report.panels`); then the findings in detail (every
comparison, the alerts' audit trail in order) and the definitions of every figure.

The alert rules (`rules`: `clinotel.alerts.rules.Rule`, or anything with the fields of
`AlertRule`) add each alert's summary, window and runbook, the thresholds drawn on the charts and
the minimum samples; without them the report shows what the audit trail holds.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clinotel.dashboards._report import efficiency as E
from clinotel.dashboards._report import findings as F
from clinotel.dashboards._report import svg
from clinotel.dashboards._report.alerts import AlertRule, episodes, load_events, rules_by_name
from clinotel.dashboards._report.labels import human_title
from clinotel.dashboards._report.page import page
from clinotel.dashboards._report.panels import Context, render_panel
from clinotel.dashboards._report.sections import change_marks, definitions_html, details_html, findings_html, incidents
from clinotel.dashboards.macros import TimeRange
from clinotel.model.changes import recent_changes
from clinotel.model.indicators import INDICATORS
from clinotel.model.store import first_line
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = ["AlertRule", "Report", "dashboard_anchor", "render"]

MAX_CHANGES = 200
"""Change events read for one report (the first in the range; more would not fit the charts)."""


@dataclass(frozen=True)
class Report:
    """What was rendered: panels drawn, and panels (or findings) whose query failed."""

    html: str
    panels: int
    failed: int


def dashboard_anchor(name: str) -> str:
    """The report's anchor of a dashboard's section: apart from the report's own sections (the
    efficiency dashboard and the "is it worth it" section both took `#efficiency`)."""
    return f"dashboard-{name}"


def _dashboard(ctx: Context, name: str, data: dict[str, Any]) -> tuple[str, int, int]:
    """One dashboard's section: (html, panels, failed)."""
    blocks: list[str] = []
    group: list[str] = []
    group_kind = ""
    panels = failed = 0
    variables = tuple(v["name"] for v in data.get("templating", {}).get("list", []))

    def close() -> None:
        nonlocal group
        if group:
            blocks.append(f'<div class="{group_kind}">{"".join(group)}</div>')
            group = []

    for panel in data["panels"]:
        if panel["type"] == "row":
            close()
            blocks.append(f"<h4>{html.escape(human_title(panel.get('title', '')))}</h4>")
            continue
        kind = "stats" if panel["type"] == "stat" else "grid-panels"
        if kind != group_kind:
            close()
            group_kind = kind
        rendered, ok = render_panel(ctx, panel, variables)
        panels += 1
        failed += not ok
        group.append(rendered)
    close()
    title = data["title"].split("/")[-1].strip()
    about = human_title(data.get("description", ""))
    section = (
        f'<section class="dashboard" id="{html.escape(dashboard_anchor(name))}"><h2>{html.escape(title)}</h2>'
        + (f'<p class="about">{html.escape(about)}</p>' if about else "")
        + "".join(blocks)
        + "</section>"
    )
    return section, panels, failed


def render(
    client: Any,
    dashboards: dict[str, dict[str, Any]],
    tr: TimeRange,
    title: str = "clinotel report",
    database: str = DEFAULT_DATABASE,
    rules: Sequence[AlertRule] = (),
) -> Report:
    """The findings over the range `tr`, then every panel of `dashboards`, the details and the
    definitions, as one HTML document."""
    errors: list[str] = []
    failed = 0
    by_name = rules_by_name(rules)
    min_samples = {
        name: max((r.min_sample for r in rules if r.metric == name), default=i.min_sample)
        for name, i in INDICATORS.items()
    }
    try:
        events = load_events(client, database, tr, {r.name: int(r.window) for r in rules})
    except Exception as e:  # noqa: BLE001 - a store without the audit trail still gets its report
        events = []
        errors.append(f"no alert audit trail in this store ({first_line(e)})")
    found_episodes = episodes(events)
    disparities: list[F.Disparity] | None
    try:
        disparities = F.disparities(client, database, tr)
    except Exception as e:  # noqa: BLE001 - shown in its place
        disparities = None
        failed += 1
        errors.append(f"disparities: {first_line(e)}")
    try:
        criteria = F.kill_criteria(client, database, tr, rules, found_episodes)
    except Exception as e:  # noqa: BLE001 - shown in its place
        criteria = []
        failed += 1
        errors.append(f"kill criteria: {first_line(e)}")
    try:
        changes = F.changes(client, database, tr)
    except Exception as e:  # noqa: BLE001 - shown in its place
        changes = []
        failed += 1
        errors.append(f"rollout changes: {first_line(e)}")
    try:
        recorded = recent_changes(client, database, tr.start, tr.end, limit=MAX_CHANGES)
    except Exception as e:  # noqa: BLE001 - shown in its place
        recorded = []
        errors.append(f"change events: {first_line(e)}")
    try:
        active = F.activity(client, database, tr)
    except Exception as e:  # noqa: BLE001 - the charts then span the whole range
        active = None
        errors.append(f"activity: {first_line(e)}")
    found = incidents(found_episodes)
    before_during = {}
    for episode in found_episodes:
        rule = by_name.get(episode.rule)
        if rule is None or str(rule.kind) not in ("threshold", "baseline") or rule.metric not in INDICATORS:
            continue
        try:
            before_during[id(episode)] = F.before_and_during(
                client, database, rule.metric, dict(episode.labels), episode.fired, rule.window
            )
        except Exception as e:  # noqa: BLE001 - shown in its place
            errors.append(f"{episode.rule} before and during: {first_line(e)}")
    tenants = len(
        {e.tenant for e in events if e.tenant}
        | {d.tenant for d in disparities or ()}
        | {c.tenant for c in criteria}
    )  # fmt: skip
    start, end = tr.start.astimezone(UTC), tr.end.astimezone(UTC)
    axis = active or (start, end)
    # the changes after the workflows (a late flag switched off) still get their place on the axes
    last = max([c.at for c in changes] + [c.timestamp for c in recorded], default=axis[1])
    if last > axis[1]:
        axis = (axis[0], min(end, last + 0.05 * (last - axis[0])))
    marks = change_marks(changes, recorded, (axis[1] - axis[0]).total_seconds())
    body = [
        findings_html(
            events=events, episodes=found_episodes, rules=by_name, criteria=criteria, disparities=disparities,
            changes=changes, found=found, before_during=before_during, x_range=(start, end), axis=axis, tenants=tenants,
            errors=errors, recorded=recorded, marks=marks,
        )
    ]  # fmt: skip
    try:
        effort: E.Efficiency | None = E.efficiency(client, database, tr)
        effort_error = None
    except Exception as e:  # noqa: BLE001 - shown in its place
        effort, effort_error = None, first_line(e)
        failed += 1
    body.append(E.efficiency_html(effort, effort_error))
    ctx = Context(
        client,
        database,
        tr,
        rules,
        found_episodes,
        (axis[0].timestamp(), axis[1].timestamp()),
        [svg.Marker(m.at.timestamp(), m.text) for m in marks],
    )
    nav = [("findings", "Findings"), ("efficiency", "Efficiency")]
    panels = 0
    for name, data in dashboards.items():
        section, n, bad = _dashboard(ctx, name, data)
        body.append(section)
        panels += n
        failed += bad
        nav.append((dashboard_anchor(name), data["title"].split("/")[-1].strip()))
    body.append(details_html(events, disparities, tenants, by_name))
    body.append(definitions_html(min_samples))
    nav += [("details", "Details"), ("definitions", "Definitions")]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    span = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    if axis != (start, end):
        span += (
            f" (time axes {axis[0]:%m-%d %H:%M} to {axis[1]:%m-%d %H:%M}: the workflows' stages; late outcomes after)"
        )
    subtitle = f"{span} · generated {generated} · {panels} panels" + (f", {failed} failed" if failed else "")
    return Report(page(title, subtitle, nav, "".join(body)), panels, failed)
