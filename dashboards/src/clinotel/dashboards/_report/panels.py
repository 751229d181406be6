"""One dashboard panel drawn: its query run as Grafana runs it (`check.panel_range`,
`macros.expand`), then a chart, a table or a figure with human labels and one format per quantity.

An indicator's time series (a panel built by `_panels.indicator_series`, recognised by its exact
SQL) is run with its sample size beside each value, and its HAVING left out, so that:
- a point from fewer rows than the minimum sample (the alert rule's on that indicator, else the
  indicator's) is marked on the axis as too few, not drawn as a value;
- when most points are too few at Grafana's interval, the series is run again with wider
  buckets, said under the chart;
- the alert rules on the indicator are drawn: their threshold as a line, their firing shaded.

A count or a maximum over an interval the data covers only in part (the first and last ones)
would read as a drop: such intervals are left out, and said so.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.dashboards._panels import Source, indicator_series, indicator_source
from clinotel.dashboards._report import svg
from clinotel.dashboards._report.alerts import AlertRule, Episode
from clinotel.dashboards._report.fmt import MISSING, TOO_FEW, Quantity, quantity_of, show
from clinotel.dashboards._report.labels import (
    ROW_UNIT,
    Label,
    bound_of,
    human_title,
    indicator_named,
    label,
    value_text,
)
from clinotel.dashboards.check import panel_range
from clinotel.dashboards.fairness import FAIR_BAND
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.model import clinical, tables
from clinotel.model.indicators import INDICATORS, Indicator
from clinotel.model.sql import identifier, literal
from clinotel.model.store import first_line

__all__ = ["Context", "render_panel"]

SAMPLE: Final = "report_sample_rows"
TABLE_ROWS: Final = 40
WIDER_S: Final = (300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_SOURCES: Final = (
    (clinical.WORKFLOWS, "StartTime"),
    (tables.WORKFLOW_HOURS, "Hour"),
    (clinical.STAGE_SPANS, "Timestamp"),
    (tables.COLLECTOR_METRICS, "Timestamp"),
    (tables.SDK_TELEMETRY, "Timestamp"),
)
"""The tables a time series panel reads, and their time column (otel_traces: no series panel)."""
_BY: Final = re.compile(r"AS time((?:, \w+ AS `?\w+`?)+), ")
_BY_COLUMN: Final = re.compile(r", \w+ AS `?(\w+)`?")
"""A group's column: its alias (a rollup may hold it under another name, `Grp AS Language`)."""
_WINDOW_LABEL: Final = {"threshold": "alert", "baseline": "spike alert", "canary": "canary alert",
                        "disparity": "disparity alert"}  # fmt: skip


@dataclass
class Context:
    """What every panel of one report shares."""

    client: Any
    database: str
    tr: TimeRange
    rules: Sequence[AlertRule] = ()
    episodes: Sequence[Episode] = ()
    axis: tuple[float, float] | None = None
    """Every chart's time axis (epoch s): where the data is (`findings.activity`), else the range."""
    changes: Sequence[svg.Marker] = ()
    """What changed (change events, rollouts begun and ended), drawn on every time chart, numbered
    as on page one."""
    _bounds: dict[str, tuple[float, float] | None] = field(default_factory=dict)

    def min_sample(self, i: Indicator) -> int:
        """The rows a point of `i` needs: its alert rule's minimum sample, else its own."""
        return max((r.min_sample for r in self.rules if r.metric == i.name), default=i.min_sample)

    def _bounds_sql(self, table: str, column: str) -> str:
        name = f"{identifier(self.database)}.{identifier(table)}"
        return (
            f"SELECT {literal(table)}, toFloat64(min({column})), toFloat64(max({column})) FROM {name} "
            f"WHERE {column} >= toDateTime64({self.tr.from_ms / 1000:.3f}, 3) "
            f"AND {column} < toDateTime64({self.tr.to_ms / 1000:.3f}, 3)"
        )

    def bounds(self, sql: str) -> tuple[float, float] | None:
        """First and last instant the panel's table holds in the range (epoch s), if known: every
        table's in one query, the first time one is asked for (each alone if that fails)."""
        if not self._bounds:
            self._bounds = {table: None for table, _ in _SOURCES}
            try:
                rows = self.client.query(" UNION ALL ".join(self._bounds_sql(*s) for s in _SOURCES)).result_rows
            except Exception:  # noqa: BLE001 - a table missing from an older store: ask each alone
                rows = []
                for source in _SOURCES:
                    try:
                        rows += self.client.query(self._bounds_sql(*source)).result_rows
                    except Exception:  # noqa: BLE001 - without bounds, every interval is drawn
                        continue
            for table, first, last in rows:
                self._bounds[str(table)] = (float(first), float(last))
        for table, _ in _SOURCES:
            if f"{identifier(self.database)}.{identifier(table)}" in sql:
                return self._bounds.get(table)
        return None


def _epoch(t: Any) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return float(t)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _match(sql: str, database: str) -> tuple[Indicator, tuple[str, ...]] | None:
    """The indicator (and group-by columns) whose `indicator_series` is exactly this SQL."""
    by = _BY.search(sql)
    columns = tuple(_BY_COLUMN.findall(by.group(1))) if by else ()
    # one column is passed as a string; several as a sequence, where `indicator_series` takes one
    series: Callable[..., str] = indicator_series
    for i in INDICATORS.values():
        if f"AS {identifier(i.title)}" not in sql:
            continue
        candidates: list[str | tuple[str, ...] | None] = [None]
        if len(columns) == 1:
            candidates.append(columns[0])
        elif columns:
            candidates.append(columns)
        for candidate in candidates:
            try:
                if series(i, database, candidate) == sql:
                    return i, columns if candidate else ()
            except (TypeError, ValueError):
                continue
    return None


def _with_sample(sql: str, i: Indicator, source: Source) -> str | None:
    """The series SQL with its sample size beside the value, and no HAVING (the report marks
    small samples itself)."""
    head = f"{source.value} AS {identifier(i.title)}"
    if sql.count(head) != 1:
        return None
    return re.sub(r"\nHAVING [^\n]*", "", sql.replace(head, f"{head}, {source.sample} AS {identifier(SAMPLE)}"))


@dataclass
class _Rows:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def _query(ctx: Context, sql: str, tr: TimeRange) -> _Rows:
    result = ctx.client.query(expand(sql, tr))
    return _Rows(list(result.column_names), [tuple(r) for r in result.result_rows])


def _lines(
    data: _Rows, least: int | None, keep: Callable[[float], bool] | None
) -> tuple[list[svg.Line], list[str], bool]:
    """Long rows (time, labels…, values… [, sample]) as named lines; the value columns; whether
    an incomplete interval was left out."""
    if not data.rows:
        return [], [], False
    first = data.rows[0]
    sample = data.columns.index(SAMPLE) if SAMPLE in data.columns else None
    labels = [i for i in range(1, len(data.columns)) if isinstance(first[i], str)]
    values = [i for i in range(1, len(data.columns)) if i not in labels and i != sample]
    lines: dict[str, svg.Line] = {}
    dropped = False
    for row in data.rows:
        x = _epoch(row[0])
        prefix = " · ".join(value_text(data.columns[i], str(row[i])) for i in labels)
        for i in values:
            name = (
                f"{prefix} · {label(data.columns[i]).text}" if prefix and len(values) > 1
                else prefix or label(data.columns[i]).text
            )  # fmt: skip
            line = lines.setdefault(name, svg.Line(name))
            if keep is not None and not keep(x):
                dropped = True
                continue
            if sample is not None and least is not None and int(row[sample] or 0) < least:
                line.too_few.append(x)
            elif row[i] is not None:
                line.points.append((x, float(row[i])))
    return list(lines.values()), [data.columns[i] for i in values], dropped


def _wider(data: _Rows, least: int, interval_s: float, range_s: float) -> float:
    """The interval to draw a series at: Grafana's, unless a series with rows enough for four
    points has most of its intervals under `least` rows; then the narrowest of `WIDER_S` whose
    buckets would typically hold `least` of that series' rows, keeping at least 8 points."""
    at = data.columns.index(SAMPLE)
    labels = [k for k in range(1, len(data.columns)) if k != at and data.rows and isinstance(data.rows[0][k], str)]
    sizes: dict[tuple[Any, ...], list[int]] = {}
    for row in data.rows:
        sizes.setdefault(tuple(row[k] for k in labels), []).append(int(row[at] or 0))
    needed = interval_s
    for series in sizes.values():
        series.sort()
        median = series[len(series) // 2]
        if sum(series) >= 4 * least and median < least:
            needed = max(needed, interval_s * least / max(1, median))
    if needed <= interval_s:
        return interval_s
    fits = [w for w in WIDER_S if w * 8 <= range_s and w > interval_s]
    return next((w for w in fits if w >= needed), fits[-1] if fits else interval_s)


def _merge(data: _Rows, wider_s: float) -> _Rows:
    """A rate's rows in buckets of `wider_s`: per bucket and group, the sum of the rows and of
    the hits (value × rows) of the narrow buckets it covers; the value their quotient."""
    at = data.columns.index(SAMPLE)
    value_at = next(k for k in range(1, len(data.columns)) if k != at and not isinstance(data.rows[0][k], str))
    groups: dict[tuple[Any, ...], list[float]] = {}
    for row in data.rows:
        x = _epoch(row[0])
        key = (x - x % wider_s, *(row[k] for k in range(1, len(row)) if k not in (at, value_at)))
        n = int(row[at] or 0)
        total = groups.setdefault(key, [0.0, 0.0])
        total[0] += n
        total[1] += float(row[value_at] or 0.0) * n
    labels = [c for k, c in enumerate(data.columns) if k not in (0, at, value_at)]
    columns = ["time", *labels, data.columns[value_at], SAMPLE]
    rows = [(key[0], *key[1:], (hits / n) if n else None, int(n)) for key, (n, hits) in sorted(groups.items())]
    return _Rows(columns, rows)


def _complete(bounds: tuple[float, float], interval_s: float) -> Callable[[float], bool]:
    """Whether the interval starting at x lies wholly inside the data's first and last instant."""
    lo, hi = bounds
    return lambda x: x >= lo and x + interval_s <= hi


def _timeseries(ctx: Context, panel: dict[str, Any], sql: str, tr: TimeRange, quantity: Quantity) -> str:
    match = _match(sql, ctx.database)
    i, least, notes = None, None, []
    run = sql
    if match is not None:
        i = match[0]
        augmented = _with_sample(sql, i, indicator_source(i, ctx.database, match[1]))
        if augmented is not None:
            run, least = augmented, ctx.min_sample(i)
    interval_s = (tr.interval_ms or 60_000) / 1000
    bounds = ctx.bounds(sql)
    keep = _complete(bounds, interval_s) if least is None and bounds is not None else None
    data = _query(ctx, run, tr)
    lines, value_columns, dropped = _lines(data, least, keep)
    if keep is not None and dropped and not any(line.points for line in lines):
        lines, value_columns, dropped = _lines(data, least, None)  # nothing complete: show what there is
        notes.append("every interval is incomplete: the data covers only part of each")
    if i is not None and least is not None and data.rows:
        wider = _wider(data, least, interval_s, (tr.to_ms - tr.from_ms) / 1000)
        if wider > interval_s:
            # a rate's wider buckets are sums of its narrow ones (exact); a quantile is run again
            wide = (
                _merge(data, wider)
                if i.kind == "rate"
                else _query(ctx, run, replace(tr, interval_ms=int(wider * 1000)))
            )
            lines, value_columns, _ = _lines(wide, least, None)
            interval_s = wider
            notes.append(f"one point per {show(wider, 's')}, wider than Grafana's, so that points hold enough rows")
    if least is not None and any(line.too_few for line in lines):
        notes.append(f"▮ on the axis: an interval with fewer than {least:,} rows, not drawn as a value")
    if dropped:
        notes.append("the incomplete first and last intervals are left out")
    thresholds, windows = [], []
    if i is not None:
        for r in ctx.rules:
            if r.metric != i.name:
                continue
            if str(r.kind) == "threshold":
                thresholds.append(svg.Threshold(r.threshold, "alert threshold"))
            for e in ctx.episodes:
                if e.rule == r.name:
                    end = e.resolved.timestamp() if e.resolved else tr.to_ms / 1000
                    windows.append(svg.Window(e.fired.timestamp(), end, _WINDOW_LABEL.get(str(r.kind), "alert")))
        windows = _union(windows)
    y_title = i.title if i is not None else (label(value_columns[0]).text if len(value_columns) == 1 else "Value")
    if i is None and len(value_columns) == 1:
        found = label(value_columns[0]).quantity
        if found not in ("number", "text", ROW_UNIT) and quantity == "number":
            quantity = found  # type: ignore[assignment]
    chart, more = svg.timeseries(
        lines, quantity, ctx.axis or (tr.from_ms / 1000, tr.to_ms / 1000), interval_s, y_title,
        thresholds=thresholds, windows=windows, title=human_title(panel.get("title", "")), markers=ctx.changes,
    )  # fmt: skip
    notes += more
    if windows:
        notes.append("shaded: an alert on this indicator firing")
    if thresholds:
        notes.append("dashed: the alert threshold")
    if ctx.changes:
        notes.append("blue numbered lines: what changed (listed on page one)")
    if not any(line.points for line in lines):
        body = '<p class="empty">no value to draw in this range'
        body += " (every interval has too few rows)</p>" if any(line.too_few for line in lines) else "</p>"
        return body
    legend = "".join(
        f'<span><i style="background:{svg.PALETTE[n % len(svg.PALETTE)]}"></i>{_e(line.name)}</span>'
        for n, line in enumerate(lines)
    )
    note = "".join(f"<span class=note>{_e(n)}</span>" for n in notes)
    return f'{chart}<div class="legend">{legend}{note}</div>'


def _union(windows: Sequence[svg.Window]) -> list[svg.Window]:
    """Overlapping windows of one label as one (several groups of one rule firing at once)."""
    out: list[svg.Window] = []
    for w in sorted(windows, key=lambda w: (w.label, w.start)):
        last = out[-1] if out else None
        if last is not None and last.label == w.label and w.start <= last.end:
            out[-1] = svg.Window(last.start, max(last.end, w.end), w.label)
        else:
            out.append(w)
    return sorted(out, key=lambda w: w.start)


def _row_quantity(columns: Sequence[str], row: Sequence[Any]) -> Quantity | None:
    """The quantity of the indicator a row names (a kill criterion's row), if it names one."""
    for value in row:
        if isinstance(value, str):
            i = indicator_named(value)
            if i is not None:
                return quantity_of(i.unit)
    return None


_HARM: Final = frozenset({"KILL", "KILL (no test)", "worse off", "silent"})
"""Verdicts and states that are the finding itself: shown in red."""
_SMALL: Final = frozenset({"too few", "reference too few"})
_QUIET: Final = frozenset({"within band", "reference", "ok", "within the limit", "", "–"})
"""Verdicts that are no finding: ordered after the ones that are."""


def _few(columns: Sequence[str], row: Sequence[Any]) -> bool:
    """Whether a row's missing figures are for a small sample: yes, unless the row has a verdict
    that says otherwise (the reference group's own disparity, a quantile's absent test)."""
    verdicts = [v for c, v in zip(columns, row, strict=True) if label(c).text in ("Verdict", "Status", "Fairness")]
    return not verdicts or any(v in _SMALL for v in verdicts)


def _cell(column: str, value: Any, lb: Label, row_quantity: Quantity | None, few: bool = True) -> tuple[str, str]:
    """A cell's text and class."""
    quantity = lb.quantity
    q: Any = row_quantity if quantity == ROW_UNIT and row_quantity is not None else quantity
    if q == ROW_UNIT:
        q = "number"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if q == "text" or lb.bound or not few:
            return MISSING, "few"
        return TOO_FEW, "few"
    if isinstance(value, str):
        text = value_text(column, value)
        bad = text in _HARM or text.startswith("outside 0.8")
        return text, "bad" if bad else ("few" if text in _SMALL else "")
    if isinstance(value, datetime):
        return show(value, "text"), ""
    text = show(value, q)
    if q == "ratio" and (column.endswith(" disparity") or column == "Disparity") and isinstance(value, int | float):
        return text, "bad" if not FAIR_BAND[0] <= float(value) <= FAIR_BAND[1] else "num"
    return text, "num"


def _intervals(columns: Sequence[str]) -> dict[int, tuple[int | None, int | None, str]]:
    """Estimate column -> (its low end's column, its high end's, the interval's name) for the
    estimates whose ends the query returns beside them (`Disparity`, `Disparity 95% low`…)."""
    ends: dict[int, dict[str, int]] = {}
    names: dict[int, str] = {}
    for k, column in enumerate(columns):
        bound = bound_of(column)
        if bound is None or bound[0] not in columns:
            continue
        base, pct, side, rest = bound
        at = columns.index(base)
        ends.setdefault(at, {})[side] = k
        names[at] = f"{pct} interval" + (f", {rest}" if rest else "")
    return {at: (sides.get("low"), sides.get("high"), names[at]) for at, sides in ends.items()}


def _constant(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
    """Text columns holding one value in every row of a table of several rows (a tenant, a
    workflow kind): said once above the table instead of in each row."""
    if len(rows) < 2:
        return []
    return [
        k for k, column in enumerate(columns)
        if label(column).quantity == "text" and isinstance(rows[0][k], str) and rows[0][k] != ""
        and all(r[k] == rows[0][k] for r in rows)
    ]  # fmt: skip


_VERDICT_TITLES: Final = ("Verdict", "Status", "Fairness")
_CANARY: Final = "canary"


def _disparity_column(columns: Sequence[str]) -> int | None:
    return next((k for k, c in enumerate(columns) if c == "Disparity" or c.endswith(" disparity")), None)


def rows_reordered(columns: Sequence[str]) -> bool:
    """Whether `decisive_first` orders a table with these columns."""
    return _disparity_column(columns) is not None or any(label(c).text in _VERDICT_TITLES for c in columns)


def decisive_first(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """A table with verdicts or disparities in the order a reader needs when it is cut: the
    finding itself first (worse off, KILL), then other verdicts past a band, canary rows, the
    largest disparities (furthest from 1 either way), and rows of too few last; otherwise (and
    among equals) the query's order. A table without verdicts or disparities keeps its order."""
    verdicts = [k for k, c in enumerate(columns) if label(c).text in _VERDICT_TITLES]
    disparity = _disparity_column(columns)
    cohort = [k for k, c in enumerate(columns) if c in ("RolloutCohort", "Rollout cohort", "cohort")]
    if not verdicts and disparity is None:
        return list(rows)

    def key(row: Sequence[Any]) -> tuple[bool, bool, bool, bool, float]:
        texts = [value_text(columns[k], str(row[k])) for k in verdicts if isinstance(row[k], str)]
        small = any(t in _SMALL for t in texts)
        harm = any(t in _HARM for t in texts)
        notable = any(t not in _QUIET for t in texts)
        canary = any(str(row[k]) == _CANARY for k in cohort)
        d = row[disparity] if disparity is not None else None
        far = abs(math.log(float(d))) if isinstance(d, int | float) and d > 0 and math.isfinite(d) else -1.0
        return small, not harm, not notable, not canary, -far

    return sorted(rows, key=key)


def table_html(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows under human column titles, every value in its quantity's format; an estimate and the
    ends of its interval in one cell, and a column with one value in every row said above."""
    if not rows:
        return '<p class="empty">no rows in this range</p>'
    rows = decisive_first(columns, rows)
    labels = [label(c) for c in columns]
    intervals = _intervals(columns)
    ends = {k for low, high, _ in intervals.values() for k in (low, high) if k is not None}
    constant = _constant(columns, rows)
    shown = [k for k in range(len(columns)) if k not in ends and k not in constant]
    heads = []
    for k in shown:
        lb = labels[k]
        text = lb.text + (f" ({intervals[k][2]})" if k in intervals else "")
        heads.append(
            f'<th class="num">{_e(text)}</th>' if lb.quantity not in ("text", "number") else f"<th>{_e(text)}</th>"
        )
    body = []
    for row in rows[:TABLE_ROWS]:
        rq = _row_quantity(columns, row)
        few = _few(columns, row)
        cells = []
        for k in shown:
            text, cls = _cell(columns[k], row[k], labels[k], rq, few)
            if k in intervals and row[k] is not None:
                low, high, _ = intervals[k]
                lo = row[low] if low is not None else None
                hi = row[high] if high is not None else None
                if lo is not None or hi is not None:
                    q: Any = labels[k].quantity if labels[k].quantity != ROW_UNIT else (rq or "number")
                    ends_text = f"{show(lo, q, missing='0')}–{show(hi, q, missing='∞')}"
                    text = f"{text} ({ends_text})"
            cells.append(f'<td class="{cls}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    above = "; ".join(f"{labels[k].text}: {value_text(columns[k], str(rows[0][k]))}" for k in constant)
    caption = f'<p class="about">{_e(above)} (every row)</p>' if above else ""
    more = ""
    if len(rows) > TABLE_ROWS:
        order = " (the decisive rows first, too few last)" if rows_reordered(columns) else ""
        more = f'<p class="more">{len(rows) - TABLE_ROWS:,} more rows not shown{order}</p>'

    wide = ' class="wide"' if len(shown) > 9 else ""
    return f"{caption}<table{wide}><thead><tr>{''.join(heads)}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _stat(data: _Rows, quantity: Quantity) -> str:
    value = data.rows[0][0] if data.rows else None
    n = data.rows[0][1] if data.rows and len(data.rows[0]) > 1 else None
    sample = f'<div class="n">n = {n:,}</div>' if isinstance(n, int) else ""
    cls = "figure few" if value is None else "figure"
    return f'<div class="{cls}">{_e(show(value, quantity))}</div>{sample}'


def render_panel(ctx: Context, panel: dict[str, Any], variables: tuple[str, ...]) -> tuple[str, bool]:
    """The panel as an HTML section, and whether its query ran."""
    kind = panel["type"]
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    quantity = quantity_of(unit)
    title = _e(human_title(panel.get("title", "")))
    about = human_title(panel.get("description", ""))
    caption = f'<p class="about">{_e(about)}</p>' if about else ""
    try:
        sql = panel["targets"][0]["rawSql"]
        tr = panel_range(panel, variables, ctx.tr)
        if kind == "timeseries":
            body = _timeseries(ctx, panel, sql, tr, quantity)
        else:
            data = _query(ctx, sql, tr)
            if kind == "stat":
                i = indicator_named(data.columns[0]) if data.columns else None
                body = _stat(data, quantity_of(i.unit) if i is not None else quantity)
            else:
                body = table_html(data.columns, data.rows)
    except Exception as e:  # noqa: BLE001 - a failed panel is shown, not fatal
        message = first_line(e, 400)
        return (
            f'<section class="panel {kind}"><h3>{title}</h3>{caption}<p class="error">{_e(message)}</p></section>',
            False,
        )
    return f'<section class="panel {kind}"><h3>{title}</h3>{caption}{body}</section>', True
