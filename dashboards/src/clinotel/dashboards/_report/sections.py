"""The report's first page, its findings, and the pages of detail behind them, as HTML.

Page one answers what a safety committee asks first: which alerts fired (when, how far past
their threshold, which runbook), whether the canary meets its kill criteria, which groups are
worse off than their reference and how sure that is, and what happened around each incident.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from clinotel.dashboards import fairness, rollout
from clinotel.dashboards._report import svg
from clinotel.dashboards._report.alerts import AlertRule, Episode, Event, instance_label, value_quantity
from clinotel.dashboards._report.findings import Change, Criterion, Disparity
from clinotel.dashboards._report.fmt import quantity_of, show
from clinotel.dashboards._report.labels import label, value_text
from clinotel.dashboards.fairness import FAIR_BAND
from clinotel.model.changes import Change as ChangeEvent
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS
from clinotel.model.stats import wilson

__all__ = ["Incident", "Mark", "change_marks", "definitions_html", "details_html", "findings_html", "incidents"]

TOP_DISPARITIES: Final = 6
PRINTED_DISPARITIES: Final = 2
PRINTED_EPISODES: Final = 1
PRINTED_RULES: Final = 3
PRINTED_INCIDENTS: Final = 3
"""On paper page one holds the first four; the rest are in the details."""
CHANGES_BEFORE: Final = timedelta(hours=2)
TOGETHER: Final = timedelta(minutes=15)
_CHANGE_WORDS: Final = {
    "RolloutMode": "mode",
    "ModelVersion": "model",
    "FlagVariant": "flag",
    "RolloutCohort": "cohort",
}
LANES: Final = 14
_EVENT_WORDS: Final = {
    "pending": "pending", "firing": "firing", "resolved": "resolved", "inactive": "cleared before firing",
    "notify_ok": "notified", "notify_failed": "notification failed",
    "labelled": "reference group worse off: labelled, not paged", "unlabelled": "reference group no longer worse off",
}  # fmt: skip


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _clock(t: datetime) -> str:
    return t.strftime("%H:%M")


def _still(fired: datetime, range_end: datetime) -> str:
    """An episode not resolved by the range's end; one that fired after it (an evaluation after the
    range, whose window read it) read "13:36–still firing at 13:28"."""
    if fired > range_end:
        return "still firing (fired after the range, on its data)"
    return f"still firing at {_clock(range_end)}"


def _where(kind: str, cohort: str, tenant: str, tenants: int, version: str = "") -> str:
    parts = [f"tenant {tenant}"] if tenants > 1 else []
    parts.append(value_text("kind", kind))
    if cohort:
        parts.append(f"{cohort} cohort")
    if version:
        parts.append(f"model {version}")
    return " · ".join(parts)


@dataclass
class Incident:
    """Alert episodes that began together: one thing going wrong, seen by several rules."""

    start: datetime
    end: datetime | None
    episodes: list[Episode]


def incidents(episodes: Sequence[Episode], together: timedelta = TOGETHER) -> list[Incident]:
    """Episodes that began within `together` of an incident's first one join it, in time order
    (overlap alone would chain unrelated alerts through one that fires for hours)."""
    out: list[Incident] = []
    for e in sorted(episodes, key=lambda e: e.fired):
        last = out[-1] if out else None
        if last is not None and e.fired - last.start <= together:
            last.episodes.append(e)
            last.end = None if last.end is None or e.resolved is None else max(last.end, e.resolved)
        else:
            out.append(Incident(e.fired, e.resolved, [e]))
    return out


def _short(rule: AlertRule | None, name: str) -> str:
    """A rule in a few words: what it watches and how."""
    if rule is None:
        return name.replace("_", " ")
    i = INDICATORS.get(rule.metric)
    title = i.title if i is not None else label(rule.metric).text
    how = {"canary": f"{title}, canary", "disparity": f"{title} disparity", "baseline": f"{title} spike"}
    return how.get(str(rule.kind), title)


def _alert_name(rule: AlertRule | None, name: str) -> str:
    summary = _e(rule.summary) if rule is not None else ""
    return f"{summary}<br><code>{_e(name)}</code>" if summary else f"<code>{_e(name)}</code>"


def _limit(rule: AlertRule | None, threshold: float | None) -> str:
    """What a rule compares against, and over which window."""
    q = value_quantity(rule)
    if rule is not None and str(rule.kind) == "disparity":
        limit = f"outside {show(rule.band[0], 'ratio')}–{show(rule.band[1], 'ratio')}"
    else:
        limit = f"threshold {show(threshold if threshold is not None else (rule.threshold if rule else None), q)}"
    return limit + (f" over {show(rule.window, 's')}" if rule is not None else "")


def _alerts_table(
    episodes: Sequence[Episode], rules: Mapping[str, AlertRule], tenants: int, range_end: datetime
) -> str:
    """One row per rule that fired, each of its episodes a line: where, when, the value."""
    if not episodes:
        return '<p class="ok">No alert fired in this range.</p>'
    by_rule: dict[str, list[Episode]] = {}
    for e in episodes:
        by_rule.setdefault(e.rule, []).append(e)
    rows = []
    # pages before tickets, so the rows printed on page one are the ones that woke somebody
    ordered_rules = sorted(by_rule.items(), key=lambda kv: kv[1][0].severity != "page")
    for r, (name, items) in enumerate(ordered_rules):
        rule = rules.get(name)
        q = value_quantity(rule)
        severity = items[0].severity
        runbook = f" · runbook <code>{_e(rule.runbook)}</code>" if rule is not None else ""
        summary = f"{_e(rule.summary)}<br>" if rule is not None else ""
        summary += f"<small><code>{_e(name)}</code>{runbook}</small>"
        lines = []
        for k, e in enumerate(items):
            where = instance_label(e.labels, tenants)
            end = _clock(e.resolved) if e.resolved else _still(e.fired, range_end)
            took = f" ({show((e.resolved - e.fired).total_seconds(), 's')})" if e.resolved else ""
            sample = f", n = {e.sample:,}" if e.sample else ""
            screen = " screen" if k >= PRINTED_EPISODES else ""
            lines.append(
                f'<div class="episode{screen}"><span class="when">{_clock(e.fired)}–{_e(end)}{_e(took)}</span> '
                f"<b>{_e(show(e.value, q, missing='no data'))}</b><small>{_e(sample)}</small>"
                + (f" <small>· {_e(where)}</small>" if where else "")
                + "</div>"
            )
        receivers = ", ".join(dict.fromkeys(r for e in items for r in e.delivered)) or "nobody"
        failed = sum(e.failed for e in items)
        told = receivers + (f" ({failed} failed attempts)" if failed else "")
        if len(items) > PRINTED_EPISODES:
            lines.append(f'<div class="print">… and {len(items) - PRINTED_EPISODES} more (in the details)</div>')
        row_class = ' class="screen"' if r >= PRINTED_RULES else ""
        rows.append(
            f'<tr{row_class}><td><span class="sev {_e(severity)}">{_e(severity)}</span></td><td>{summary}</td>'
            f'<td><small class="limit">{_e(_limit(rule, items[0].threshold))}</small>{"".join(lines)}</td>'
            f"<td>{_e(told)}</td></tr>"
        )
    if len(rows) > PRINTED_RULES:
        more = len(rows) - PRINTED_RULES
        rows.append(f'<tr class="print"><td colspan="4">… and {more} more rules fired (see the details)</td></tr>')
    return (
        "<table><thead><tr><th></th><th>Alert, and its runbook</th><th>Firing (UTC), the value that fired it, where"
        "</th><th>Sent to</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _ratio_cell(estimate: float, low: float, high: float, exact: bool) -> str:
    if exact:
        return show(estimate, "ratio")
    top = show(high, "ratio") if high != float("inf") else "∞"
    return f"{show(estimate, 'ratio')} ({show(low, 'ratio')}–{top})"


def _criterion_window(c: Criterion) -> str:
    if not c.rule:
        return "report's range (rollout dashboard)"
    hours = show((c.until - c.since).total_seconds(), "s")
    end = "when it fired" if c.fired else "at the canary's last workflow"
    return f"alert {c.rule}: its {hours} window to {_clock(c.until)}, {end}"


def _criteria_table(criteria: Sequence[Criterion], tenants: int) -> str:
    if not criteria:
        return '<p class="ok">No canary ran in this range.</p>'
    rows = []
    for c in criteria:
        i = INDICATORS[c.measure]
        q = quantity_of(i.unit)
        r, seq = c.estimate, c.sequence
        if r is None:
            ratio = "–"
        elif seq is None:
            ratio = show(r, "ratio")
        else:
            ratio = _ratio_cell(r, seq.low, seq.high, False)
        strip = svg.ratio_strip(r, seq.low, seq.high, (1 / c.limit, c.limit), True) if r and seq else ""
        verdict = c.verdict
        cls = "bad" if c.past else ("few" if verdict == rollout.TOO_FEW else "")
        rows.append(
            f"<tr><td>{_e(i.title)}</td><td>{_e(_where(c.kind, '', c.tenant, tenants))}<br>"
            f"<small>{_e(_criterion_window(c))}</small></td>"
            f'<td class="num">{_e(show(c.canary, q))} <small>n = {c.n_canary:,}</small></td>'
            f'<td class="num">{_e(show(c.baseline, q))} <small>n = {c.n_baseline:,}</small></td>'
            f'<td class="num">{_e(ratio)}</td><td>{strip}</td><td class="num">{_e(show(c.limit, "ratio"))}</td>'
            f'<td class="{cls}">{_e(verdict)}</td></tr>'
        )
    return (
        "<table><thead><tr><th>Kill criterion</th><th>Where, over which window</th><th>Canary</th><th>Baseline</th>"
        f"<th>Canary ÷ baseline ({rollout.CONFIDENCE:.0%} confidence sequence)</th><th>{svg.ratio_scale()}</th>"
        f"<th>Stop above</th><th>Status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="method">KILL: the ratio past its limit and its confidence sequence (valid at every look, the '
        "canary alert's test) above 1. The report's range is what the rollout dashboard shows; an alert's window "
        "is what the alert read, so the alert and this table agree.</p>"
    )


def _disparity_rows(items: Sequence[Disparity], tenants: int, print_rows: int | None = None) -> str:
    rows = []
    for k, d in enumerate(items):
        dim = COHORT_DIMENSIONS.get(d.dimension, label(d.dimension).text)
        r, i = d.estimate, d.interval
        screen_only = ' class="screen"' if print_rows is not None and k >= print_rows else ""
        verdict = d.verdict
        cls = "bad" if verdict == fairness.WORSE_OFF else ("few" if verdict in _FEW else "")
        rows.append(
            f"<tr{screen_only}><td>{_e(d.indicator.title)}<br>"
            f"<small>{_e(_where(d.kind, d.cohort, d.tenant, tenants, d.version))}</small></td>"
            f"<td>{_e(dim)}: <b>{_e(value_text(d.dimension, d.group))}</b> <small>n = {d.n:,}</small><br>"
            f"<small>against {_e(value_text(d.dimension, d.reference))}, n = {d.ref_n:,}</small></td>"
            f'<td class="num">{_e(_rate(d.hits, d.n, d.confidence))}<br>'
            f"<small>{_e(_rate(d.ref_hits, d.ref_n, d.confidence))}</small></td>"
            f'<td class="num"><b>{_e(_ratio_cell(r, i.low, i.high, False) if r and i else "–")}</b></td>'
            f"<td>{svg.ratio_strip(r, i.low, i.high, d.band, d.harm_above) if r and i else ''}</td>"
            f'<td class="{cls}">{_e(verdict)}</td></tr>'
        )
    return "".join(rows)


_FEW: Final = frozenset({fairness.TOO_FEW, fairness.REFERENCE_TOO_FEW})


def _rate(hits: int, n: int, confidence: float) -> str:
    interval = wilson(hits, n, confidence)
    if interval is None:
        return "–"
    return f"{show(hits / n, 'percent')} ({show(interval.low, 'percent')}–{show(interval.high, 'percent')})"


def _disparities_table(items: Sequence[Disparity], tenants: int, print_rows: int | None = None) -> str:
    return (
        "<table><thead><tr><th>Rate, where</th><th>Group, against its reference</th>"
        '<th class="num">Group rate, reference rate</th>'
        f'<th class="num">Group ÷ reference ({fairness.CONFIDENCE:.0%} interval)</th><th>{svg.ratio_scale()}</th>'
        "<th>Verdict</th></tr></thead>"
        f"<tbody>{_disparity_rows(items, tenants, print_rows)}</tbody></table>"
    )


def _change_words(changes: Sequence[Change]) -> str:
    """Changes of one instant in words, per workflow kind: a value ending and another beginning
    in one column read as `shadow → recommend`."""
    out = []
    kinds = sorted({c.kind for c in changes})
    for kind in kinds:
        words = []
        for column in dict.fromkeys(c.column for c in changes if c.kind == kind):
            ended = [c.value for c in changes if c.kind == kind and c.column == column and not c.began]
            began = [c.value for c in changes if c.kind == kind and c.column == column and c.began]
            name = _CHANGE_WORDS.get(column, label(column).text.lower())
            if ended and began:
                words.append(f"{name} {', '.join(ended)} → {', '.join(began)}")
            elif began:
                words.append(f"{name} {', '.join(began)} begins")
            else:
                words.append(f"{name} {', '.join(ended)} ends")
        out.append(f"{value_text('kind', kind)}: {'; '.join(words)}")
    return " · ".join(out)


@dataclass(frozen=True)
class Mark:
    """A numbered change on the timeline and on every time chart."""

    at: datetime
    text: str


def _event_words(e: ChangeEvent) -> str:
    """A recorded change event in words: what, to what, where."""
    what = f"{e.kind} {e.name}" + (f" → {e.version}" if e.version else "")
    where = ", ".join(f"{label(k).text.lower()} {v}" for k, v in e.scope.items())
    return what + (f" ({where})" if where else "") + (f" [{e.result}]" if e.result else "")


def change_marks(changes: Sequence[Change], recorded: Sequence[ChangeEvent], range_s: float) -> list[Mark]:
    """Rollout changes seen in the workflows and recorded change events (`clinotel.model.changes`),
    in time order; those close together (2 minutes, or 1.5 % of the range) share one mark."""
    close = max(120.0, range_s * 0.015)
    items = [(c.at, 0, k) for k, c in enumerate(changes)] + [(e.timestamp, 1, k) for k, e in enumerate(recorded)]
    items.sort()
    groups: list[list[tuple[datetime, int, int]]] = []
    for item in items:
        if groups and (item[0] - groups[-1][0][0]).total_seconds() < close:
            groups[-1].append(item)
        else:
            groups.append([item])
    out = []
    for g in groups:
        seen = [changes[k] for _, source, k in g if source == 0]
        words = [_change_words(seen)] if seen else []
        words += [_event_words(recorded[k]) for _, source, k in g if source == 1]
        out.append(Mark(g[0][0], f"{_clock(g[0][0])} {'; '.join(words)}"))
    return out


def _lanes(episodes: Sequence[Episode], rules: Mapping[str, AlertRule], tenants: int) -> list[svg.Lane]:
    """One lane per rule: its instances' episodes side by side (which group, in the table above)."""
    by: dict[str, list[Episode]] = {}
    for e in episodes:
        by.setdefault(e.rule, []).append(e)
    lanes = []
    for name, items in by.items():
        instances = list(dict.fromkeys(e.labels for e in items))
        where = instance_label(instances[0], tenants) if len(instances) == 1 else f"{len(instances)} groups"
        text = _short(rules.get(name), name) + (f" · {where}" if where else "")
        lanes.append(
            svg.Lane(
                text if len(text) <= 40 else text[:39] + "…",
                items[0].severity,
                tuple((e.fired.timestamp(), e.resolved.timestamp() if e.resolved else None) for e in items),
                tuple((e.pending.timestamp(), e.fired.timestamp()) for e in items if e.pending is not None),
            )
        )
    return lanes


def _incidents_table(
    found: Sequence[Incident],
    rules: Mapping[str, AlertRule],
    marks: Sequence[Mark],
    before_during: Mapping[int, tuple[tuple[float | None, int], tuple[float | None, int]]],
    tenants: int,
    range_end: datetime,
) -> str:
    rows = []
    for k, incident in enumerate(found, start=1):
        fired, moved = [], []
        for e in incident.episodes:
            rule = rules.get(e.rule)
            where = instance_label(e.labels, tenants)
            fired.append(_e(_short(rule, e.rule) + (f" ({where})" if where else "")))
            if id(e) in before_during and rule is not None:
                (b, nb), (d, nd) = before_during[id(e)]
                i = INDICATORS[rule.metric]
                q = quantity_of(i.unit)
                moved.append(f"{_e(show(b, q))} → <b>{_e(show(d, q))}</b> <small>n {nb:,} → {nd:,}</small>")
            else:
                moved.append("–")
        since, until = incident.start - CHANGES_BEFORE, incident.end or range_end
        near = []
        for n, m in enumerate(marks, start=1):
            if since <= m.at <= until:
                ago = show((incident.start - m.at).total_seconds(), "s")
                near.append(f"{n} ({'during' if m.at >= incident.start else ago + ' before'})")
        changed = ", ".join(near) or "none"
        end = _clock(incident.end) if incident.end else "…"
        screen = ' class="screen"' if k > PRINTED_INCIDENTS else ""
        rows.append(
            f'<tr{screen}><td class="when">{k}. {_clock(incident.start)}–{end}</td><td>{"<br>".join(fired)}</td>'
            f'<td class="num">{"<br>".join(moved)}</td><td>{_e(changed)}</td></tr>'
        )
    if len(found) > PRINTED_INCIDENTS:
        more = len(found) - PRINTED_INCIDENTS
        rows.append(f'<tr class="print"><td colspan="4">… and {more} more incidents (on screen)</td></tr>')
    return (
        "<table><thead><tr><th>When (UTC)</th><th>What fired</th>"
        '<th class="num">Before → when firing</th><th>Changes</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _criteria_line(criteria: Sequence[Criterion]) -> list[str]:
    """The kill criteria in words: over the report's range (the rollout dashboard's), and each
    canary alert over the window it reads, each labelled with its window, so neither can read as
    contradicting the other."""
    items = []
    whole = [c for c in criteria if not c.rule]
    if whole:
        past = [c for c in whole if c.past]
        names = ", ".join(f"{INDICATORS[c.measure].title.lower()} {show(c.estimate, 'ratio')}" for c in past)
        items.append(
            f"Canary over the report's range: <b>{len(past)}</b> of {len(whole)} kill criteria past their limit"
            + (f" ({_e(names)})" if past else "")
        )
    for c in criteria:
        if not c.rule:
            continue
        seq = c.sequence
        interval = f" ({c.confidence:.0%} sequence {show(seq.low, 'ratio')}–{show(seq.high, 'ratio')})" if seq else ""
        state = "past its limit: it fired" if c.fired and c.past else ("past its limit" if c.past else c.verdict)
        items.append(
            f"Canary alert <code>{_e(c.rule)}</code> over its {_e(show((c.until - c.since).total_seconds(), 's'))} "
            f"window to {_clock(c.until)}{' (when it fired)' if c.fired else ''}: "
            f"{_e(INDICATORS[c.measure].title.lower())} <b>{_e(show(c.estimate, 'ratio'))}</b>{_e(interval)} "
            f"of the baseline's, limit {_e(show(c.limit, 'ratio'))}: <b>{_e(state)}</b>"
        )
    return items


def _headline(
    episodes: Sequence[Episode], criteria: Sequence[Criterion], worst: Sequence[Disparity], tenants: int
) -> str:
    pages = sum(e.severity == "page" for e in episodes)
    still = sum(e.resolved is None for e in episodes)
    rules = len({e.rule for e in episodes})
    items = [
        f"<b>{len(episodes)}</b> alert episode{'s' * (len(episodes) != 1)} fired ({pages} paging) from {rules} "
        f"rule{'s' * (rules != 1)}" + (f", {still} still firing at the end of the range" if still else "")
    ]
    items += _criteria_line(criteria)
    if worst:
        d = worst[0]
        r, i = d.estimate, d.interval
        assert r is not None
        assert i is not None
        items.append(
            f"Largest disparity: <b>{_e(d.indicator.title.lower())}</b> of "
            f"<b>{_e(value_text(d.dimension, d.group))}</b> "
            f"({_e(_where(d.kind, d.cohort, d.tenant, tenants, d.version))}) is "
            f"<b>{_e(_ratio_cell(r, i.low, i.high, False))}</b> that of "
            f"{_e(value_text(d.dimension, d.reference))}: {_e(d.verdict)}"
        )
    else:
        items.append("No group's rate lies outside the fairness band on the side of harm")
    return "<ul class=headline>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def findings_html(
    *,
    events: Sequence[Event],
    episodes: Sequence[Episode],
    rules: Mapping[str, AlertRule],
    criteria: Sequence[Criterion],
    disparities: Sequence[Disparity] | None,
    changes: Sequence[Change],
    found: Sequence[Incident],
    before_during: Mapping[int, tuple[tuple[float | None, int], tuple[float | None, int]]],
    x_range: tuple[datetime, datetime],
    tenants: int,
    errors: Sequence[str],
    axis: tuple[datetime, datetime] | None = None,
    recorded: Sequence[ChangeEvent] = (),
    marks: Sequence[Mark] | None = None,
) -> str:
    """Page one. `axis`: the timeline's stretch (where the data is), else `x_range`; `recorded`:
    the change events; `marks`: the numbered changes the charts draw (else made here)."""
    harmful = [d for d in disparities or () if d.harmful]
    worst = harmful[:TOP_DISPARITIES]
    parts = ['<section id="findings" class="findings"><h2>Findings</h2>']
    parts.append(_headline(episodes, criteria, worst, tenants))
    parts.append("<h3>Alerts that fired</h3>" + _alerts_table(episodes, rules, tenants, x_range[1]))
    parts.append("<h3>Canary against baseline, per kill criterion</h3>" + _criteria_table(criteria, tenants))
    parts.append("<h3>Largest disparities</h3>")
    if disparities is None:
        parts.append('<p class="error">the disparities could not be computed (see below)</p>')
    elif worst:
        parts.append(_disparities_table(worst, tenants, print_rows=PRINTED_DISPARITIES))
    else:
        parts.append('<p class="ok">No group is worse off than its reference beyond the fairness band.</p>')
    if disparities is not None:
        clear = sum(d.verdict == fairness.WORSE_OFF for d in disparities)
        reverse = sum(d.verdict == fairness.REFERENCE_WORSE_OFF for d in disparities)
        parts.append(
            f'<p class="method screen">{len(disparities):,} comparisons, each within one workflow kind, rollout '
            f"cohort and model version, never pooled: {clear} worse off (outside {FAIR_BAND[0]:g}–{FAIR_BAND[1]:g} "
            f"on the side of harm and the {fairness.CONFIDENCE:.0%} interval excluding 1 there; red), "
            f"{len(harmful) - clear} outside the band but not significant, {reverse} with the reference group worse "
            "off (not listed); about 1 interval in 20 misses by chance. Wilson intervals for rates, MOVER-R for "
            "ratios (as the fairness tables and alerts); the reference is the group with the most workflows in its "
            f"stratum; a group under {fairness.MIN_GROUP} rows is too few. The disparity alerts decide at their own "
            "confidence.</p>"
        )
    x0, x1 = (axis or x_range)[0].timestamp(), (axis or x_range)[1].timestamp()
    # an alert or a change after the workflows (a late outcome's) still gets its place
    late = [e.fired.timestamp() for e in episodes] + [c.at.timestamp() for c in changes]
    late += [e.timestamp.timestamp() for e in recorded]
    if late and max(late) > x1:
        x1 = min(x_range[1].timestamp(), max(late) + 0.05 * (max(late) - x0))
    if marks is None:
        marks = change_marks(changes, recorded, x1 - x0)
    parts.append('<div class="pair"><div>')
    if episodes or marks:
        parts.append("<h3>Alert timeline, and what changed</h3>")
        lanes = _lanes(episodes, rules, tenants)
        markers = [svg.Marker(m.at.timestamp(), m.text) for m in marks]
        parts.append(svg.timeline(lanes[:LANES], (x0, x1), markers))
        if len(lanes) > LANES:
            parts.append(f'<p class="more">{len(lanes) - LANES} more alert instances in the details</p>')
        if marks:
            parts.append('<ol class="changes">' + "".join(f"<li>{_e(m.text)}</li>" for m in marks) + "</ol>")
    parts.append("</div><div>")
    parts.append("<h3>Incidents</h3>")
    if found:
        parts.append(_incidents_table(found, rules, marks, before_during, tenants, x_range[1]))
    else:
        parts.append('<p class="ok">No alert fired in the range: no incident to list.</p>')
    parts.append("</div></div>")
    for error in errors:
        parts.append(f'<p class="error">{_e(error)}</p>')
    parts.append("</section>")
    return "".join(parts)


def details_html(
    events: Sequence[Event],
    disparities: Sequence[Disparity] | None,
    tenants: int,
    rules: Mapping[str, AlertRule] | None = None,
) -> str:
    """Every comparison made, and the alerts' audit trail in the order things happened."""
    parts = ['<section id="details" class="details"><h2>Findings in detail</h2>']
    if disparities:
        shown = list(disparities[:40])  # most harmful first; too few last
        parts.append(
            f"<h3>Every group against its reference ({len(disparities):,} comparisons; the 40 most harmful)</h3>"
        )
        parts.append(_disparities_table(shown, tenants))
    parts.append("<h3>Alert audit trail</h3>")
    if not events:
        parts.append('<p class="ok">No alert event in this range.</p>')
    else:
        rows = []
        for ev in events[:300]:
            what = _EVENT_WORDS.get(ev.event, ev.event)
            to = f" ({ev.receiver})" if ev.receiver else ""
            value = "" if ev.value is None else show(ev.value, value_quantity((rules or {}).get(ev.rule)))
            rows.append(
                f"<tr><td>{ev.at:%Y-%m-%d %H:%M:%S}</td><td><code>{_e(ev.rule)}</code></td>"
                f"<td>{_e(instance_label(ev.labels, tenants))}</td><td>{_e(what + to)}</td>"
                f'<td class="num">{_e(value)}</td></tr>'
            )
        more = f'<p class="more">{len(events) - 300:,} more events</p>' if len(events) > 300 else ""
        parts.append(
            "<table><thead><tr><th>When (UTC)</th><th>Rule</th><th>Where</th><th>What</th><th>Value</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{more}"
        )
    parts.append("</section>")
    return "".join(parts)


def definitions_html(min_samples: Mapping[str, int]) -> str:
    """What each figure means, printed (a tooltip is lost on paper)."""
    rows = []
    for i in INDICATORS.values():
        kind = {"rate": "rate", "quantile": "quantile", "count": "count"}[i.kind]
        notes = []
        if i.needs_ground_truth:
            notes.append("against late ground truth: provisional until the truth has arrived")
        if i.kind == "rate":
            notes.append("higher is worse" if i.higher_is_worse else "lower is worse")
        rows.append(
            f"<tr><td>{_e(i.title)}</td><td>{_e(i.description)}</td><td>{kind}</td>"
            f'<td class="num">{min_samples.get(i.name, i.min_sample):,}</td><td>{_e("; ".join(notes))}</td></tr>'
        )
    return (
        '<section id="definitions" class="definitions"><h2>Definitions</h2>'
        "<table><thead><tr><th>Figure</th><th>Definition</th><th>Kind</th><th>Fewest rows shown</th><th>Notes</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p class="method">Rates are percentages, ratios carry ×, durations are in the largest unit that keeps '
        f"them above 1. A figure from fewer rows than shown above reads “too few”. The fairness band is "
        f"{FAIR_BAND[0]:g}–{FAIR_BAND[1]:g}: a group's rate divided by its reference group's.</p></section>"
    )
