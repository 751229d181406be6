"""The report's efficiency section, after the findings: is the automation worth it.

In words first, as the findings are: the minutes each rollout phase saved per workflow against the
shadow phase (rework included, with the Welch 95 % interval) and in total; the rework the canary
created against its baseline cohort (rates with Wilson intervals, their ratio with the MOVER-R
interval of `clinotel.model.stats`). Then the tables behind them: every phase, and the net per
site and department. The figures are the efficiency dashboard's SQL (`clinotel.model.efficiency`)
over the report's range, read as rows, not as rendered panels. A comparison with fewer than
`MIN_WORKFLOWS` workflows on either side says `too few`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.dashboards._report.fmt import TOO_FEW, show
from clinotel.dashboards._report.labels import value_text
from clinotel.dashboards.macros import TimeRange
from clinotel.model.efficiency import net_saved_sql, phases_sql
from clinotel.model.stats import ratio_interval
from clinotel.semconv import RolloutMode

__all__ = ["MIN_WORKFLOWS", "Efficiency", "efficiency", "efficiency_html"]

MIN_WORKFLOWS: Final = 30
"""Workflows needed on each side of a comparison before the report states it."""
CONFIDENCE: Final = 0.95
_MODES: Final = {
    RolloutMode.SHADOW.value: "shadow mode",
    RolloutMode.RECOMMEND.value: "recommendation mode",
    RolloutMode.ASSIST.value: "assist mode",
    RolloutMode.BOUNDED_AUTO.value: "bounded autonomy",
    RolloutMode.AUTONOMOUS.value: "autonomous mode",
}


def phase_words(phase: str) -> str:
    """A phase (`recommend canary`) as words: `recommendation mode, canary cohort`."""
    mode, _, canary = phase.partition(" ")
    words = _MODES.get(mode, mode.replace("_", " "))
    return f"{words}, canary cohort" if canary else words


@dataclass(frozen=True)
class Efficiency:
    """The rows of the efficiency figures over the report's range."""

    phases: list[dict[str, Any]]
    """`phases_sql`: per kind and phase."""
    overall: list[dict[str, Any]]
    """`net_saved_sql` per kind and phase against the kind's whole shadow phase."""
    places: list[dict[str, Any]]
    """`net_saved_sql` per kind, site, department and phase."""


def _at(t: datetime) -> str:
    return f"toDateTime64({t.astimezone(UTC).timestamp():.3f}, 3)"


def _rows(client: Any, sql: str) -> list[dict[str, Any]]:
    return list(client.query(sql).named_results())


def efficiency(client: Any, database: str, tr: TimeRange) -> Efficiency:
    """The efficiency figures of workflows started in `tr`."""
    when = f"StartTime >= {_at(tr.start)} AND StartTime < {_at(tr.end)}"
    return Efficiency(
        _rows(client, phases_sql(database, when)),
        _rows(client, net_saved_sql(database, when, by=())),
        _rows(client, net_saved_sql(database, when)),
    )


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def _minutes(value: float | None, low: float | None, high: float | None) -> str:
    return f"{show(value, 'minutes')} (95 % interval {show(low, 'minutes')} to {show(high, 'minutes')})"


def _enough(*counts: int) -> bool:
    return min(counts) >= MIN_WORKFLOWS


NOT_RECORDED: Final = "no effort recorded"
"""A phase none of whose workflows recorded effort or rework: its minutes are unknown, not 0 (a
2026-12-07 review read "0.0 min (95 % interval 0.0–0.0)" over 584 workflows that recorded none)."""


def _unrecorded(phases: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """(kind, phase) of the phases whose workflows recorded no touch and no rework."""
    return {
        (str(p["kind"]), str(p["phase"])) for p in phases if not (p["touches_per_workflow"] or p["reworked_workflows"])
    }


def _neither(unrecorded: set[tuple[str, str]], kind: str, phase: str, against: str) -> bool:
    """True when neither side of a comparison of `kind`'s phases recorded any effort."""
    return (kind, phase) in unrecorded and (kind, against) in unrecorded


def _saving_words(kind: str, s: dict[str, Any], unrecorded: bool = False) -> str:
    phase = phase_words(s["phase"])
    if unrecorded:
        return f"{_e(kind)}, {_e(phase)}: minutes saved against shadow mode: <b>{NOT_RECORDED}</b> on either side"
    if not _enough(s["workflows"], s["shadow_workflows"]):
        return (
            f"{_e(kind)}, {_e(phase)}: minutes saved against shadow mode: <b>{TOO_FEW}</b> "
            f"(n = {s['workflows']:,} against {s['shadow_workflows']:,} in shadow; {MIN_WORKFLOWS} needed on each side)"
        )
    saved, net = s["saved_per_workflow"], s["net_minutes_saved"]
    verb = "saved" if saved >= 0 else "lost"
    return (
        f"{_e(kind)}, {_e(phase)}: <b>{_e(show(abs(saved), 'minutes'))} {verb}</b> per workflow against shadow mode "
        f"({_e(show(s['minutes'], 'minutes'))} against {_e(show(s['shadow_minutes'], 'minutes'))}; 95 % interval of "
        f"the saving {_e(show(s['saved_low'], 'minutes'))} to {_e(show(s['saved_high'], 'minutes'))}), rework "
        f"included: net <b>{_e(show(abs(net), 'minutes'))} {'saved' if net >= 0 else 'lost'}</b> over "
        f"{s['workflows']:,} workflows"
    )


def _rework_words(kind: str, canary: dict[str, Any], baseline: dict[str, Any]) -> str:
    mode = phase_words(str(baseline["phase"]))
    if not _enough(canary["workflows"], baseline["workflows"]):
        return (
            f"{_e(kind)}, rework created by the canary ({_e(mode)}): <b>{TOO_FEW}</b> "
            f"(n = {canary['workflows']:,} canary, {baseline['workflows']:,} baseline; {MIN_WORKFLOWS} needed on each "
            "side)"
        )
    x1, n1, x2, n2 = canary["reworked_workflows"], canary["workflows"], baseline["reworked_workflows"], baseline[
        "workflows"]  # fmt: skip
    interval = ratio_interval(x1, n1, x2, n2, CONFIDENCE)
    ratio = "no baseline rework to compare with"
    if x2 > 0 and interval is not None:
        high = show(interval.high, "ratio") if interval.high != float("inf") else "∞"
        ratio = f"<b>{show(x1 / n1 / (x2 / n2), 'ratio')}</b> the baseline's ({show(interval.low, 'ratio')}–{high})"
    return (
        f"{_e(kind)}, rework created by the canary ({_e(mode)}): <b>{_e(show(x1 / n1, 'percent'))}</b> of its "
        f"workflows reworked ({_e(show(canary['rework_low'], 'percent'))}–{_e(show(canary['rework_high'], 'percent'))}"
        f", n = {n1:,}) against {_e(show(x2 / n2, 'percent'))} in the baseline cohort "
        f"({_e(show(baseline['rework_low'], 'percent'))}–{_e(show(baseline['rework_high'], 'percent'))}, "
        f"n = {n2:,}): {ratio}; {_e(show(canary['rework_minutes_per_workflow'], 'minutes'))} of rework per workflow "
        f"against {_e(show(baseline['rework_minutes_per_workflow'], 'minutes'))}"
    )


def _kind(kind: str) -> str:
    words = value_text("kind", kind)
    return words[:1].upper() + words[1:]


def _headline(e: Efficiency) -> list[str]:
    items = []
    unrecorded = _unrecorded(e.phases)
    for s in e.overall:
        kind = str(s["kind"])
        none = _neither(unrecorded, kind, str(s["phase"]), RolloutMode.SHADOW.value)
        items.append(_saving_words(_kind(kind), s, none))
    by_phase = {(str(p["kind"]), str(p["phase"])): p for p in e.phases}
    for (kind, phase), p in by_phase.items():
        if not phase.endswith(" canary"):
            continue
        baseline = by_phase.get((kind, phase.removesuffix(" canary")))
        if baseline is None:
            continue
        if _neither(unrecorded, kind, phase, str(baseline["phase"])):
            items.append(f"{_e(_kind(kind))}, rework created by the canary: <b>{NOT_RECORDED}</b> on either side")
        else:
            items.append(_rework_words(_kind(kind), p, baseline))
    if not items:
        items.append("No rollout phase to compare with shadow mode in this range (no effort recorded, or no shadow)")
    return items


def _phase_rows(phases: Sequence[dict[str, Any]]) -> str:
    rows = []
    unrecorded = _unrecorded(phases)
    for p in sorted(phases, key=lambda p: (str(p["kind"]), p["phase"] != RolloutMode.SHADOW.value, str(p["phase"]))):
        few = p["workflows"] < MIN_WORKFLOWS
        if (str(p["kind"]), str(p["phase"])) in unrecorded:
            rows.append(
                f"<tr><td>{_e(value_text('kind', str(p['kind'])))}</td><td>{_e(phase_words(str(p['phase'])))}</td>"
                f'<td class="num">{p["workflows"]:,}</td><td class="num" colspan="4">{NOT_RECORDED}</td></tr>'
            )
            continue
        minutes = TOO_FEW if few else _minutes(p["minutes_per_workflow"], p["minutes_low"], p["minutes_high"])
        rework = TOO_FEW if few else (
            f"{show(p['rework_rate'], 'percent')} ({show(p['rework_low'], 'percent')}–"
            f"{show(p['rework_high'], 'percent')})"
        )  # fmt: skip
        rows.append(
            f"<tr><td>{_e(value_text('kind', str(p['kind'])))}</td><td>{_e(phase_words(str(p['phase'])))}</td>"
            f'<td class="num">{p["workflows"]:,}</td><td class="num">{_e(minutes)}</td>'
            f'<td class="num">{_e(show(p["touches_per_workflow"], "number"))}</td><td class="num">{_e(rework)}</td>'
            f'<td class="num">{_e(show(p["rework_minutes_per_workflow"], "minutes"))}</td></tr>'
        )
    return (
        "<table><thead><tr><th>Workflow</th><th>Phase</th><th class=num>Workflows</th>"
        "<th class=num>Human minutes per workflow (95 % interval)</th><th class=num>Touches per workflow</th>"
        "<th class=num>Reworked (Wilson 95 %)</th><th class=num>Rework minutes per workflow</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _place_rows(places: Sequence[dict[str, Any]], unrecorded: set[tuple[str, str]]) -> str:
    rows = []
    for s in places:
        few = not _enough(s["workflows"], s["shadow_workflows"])
        kind = str(s["kind"])
        if _neither(unrecorded, kind, str(s["phase"]), RolloutMode.SHADOW.value):
            saved = net = NOT_RECORDED
        else:
            saved = TOO_FEW if few else _minutes(s["saved_per_workflow"], s["saved_low"], s["saved_high"])
            net = TOO_FEW if few else show(s["net_minutes_saved"], "minutes")
        rows.append(
            f"<tr><td>{_e(value_text('kind', str(s['kind'])))}</td><td>{_e(value_text('site', str(s['site'])))}</td>"
            f"<td>{_e(value_text('department', str(s['department'])))}</td><td>{_e(phase_words(str(s['phase'])))}</td>"
            f'<td class="num">{s["workflows"]:,} <small>against {s["shadow_workflows"]:,}</small></td>'
            f'<td class="num">{_e(saved)}</td><td class="num">{_e(net)}</td></tr>'
        )
    return (
        "<table><thead><tr><th>Workflow</th><th>Site</th><th>Department</th><th>Phase</th>"
        "<th class=num>Workflows (shadow)</th><th class=num>Saved per workflow (Welch 95 %)</th>"
        f"<th class=num>Net minutes saved</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def efficiency_html(e: Efficiency | None, error: str | None = None) -> str:
    """The efficiency section (`error`: why its figures could not be read)."""
    parts = ['<section id="efficiency" class="efficiency"><h2>Is it worth it: human effort</h2>']
    if e is None:
        parts.append(f'<p class="error">Efficiency figures: {_e(error or "not read")}</p></section>')
        return "".join(parts)
    parts.append("<ul class=headline>" + "".join(f"<li>{i}</li>" for i in _headline(e)) + "</ul>")
    parts.append("<h3>Minutes, touches and rework per workflow by phase</h3>" + _phase_rows(e.phases))
    parts.append(
        "<h3>Net minutes saved against shadow mode, per site and department</h3>"
        + _place_rows(e.places, _unrecorded(e.phases))
    )
    parts.append(
        '<p class="method">Human minutes: the effort recorded on a workflow\'s stages plus its rework. Saved: the '
        "shadow phase's mean minus the phase's, per workflow (Welch 95 % interval): above, against the workflow "
        "kind's whole shadow phase; in the table, against the same site and department's. Net: times the phase's "
        f"workflows. Under {MIN_WORKFLOWS} workflows on either side: {TOO_FEW}.</p></section>"
    )
    return "".join(parts)
