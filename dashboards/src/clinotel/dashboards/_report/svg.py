"""The report's charts as inline SVG: time series (with the alert thresholds, the alert windows
shaded, points from too small a sample marked rather than drawn as values, and a lone point drawn
as a point), the ratio strip of a disparity with its interval and the fairness band, and the
alert timeline. Sized to be read at 1000 px and printed two to a landscape page."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from clinotel.dashboards._report.fmt import Quantity, axis_ticks, show, unit_name

__all__ = ["PALETTE", "Lane", "Line", "Marker", "Threshold", "Window", "ratio_axis", "ratio_scale", "ratio_strip",
           "timeline",
           "timeseries"]  # fmt: skip

PALETTE: Final = ("#1f6fd1", "#e0752d", "#3d9a3d", "#9b4dca", "#c9a400", "#0fa3b1", "#d6336c", "#6b7a8f",
                  "#8c564b", "#17becf", "#bcbd22")  # fmt: skip
ALERT: Final = "#d62d3c"
W, H = 520, 250
ML, MR, MT, MB = 66, 12, 20, 44
TIMELINE_W: Final = 680
RATIO_W, RATIO_H = 220, 22
RATIO_RANGE: Final = (0.25, 4.0)


@dataclass
class Line:
    """One series: its drawn points (x in epoch seconds) and where a point was left out."""

    name: str
    points: list[tuple[float, float]] = field(default_factory=list)
    too_few: list[float] = field(default_factory=list)
    """Intervals whose sample was under the minimum: marked on the axis, not drawn as values."""


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str


@dataclass(frozen=True)
class Window:
    """A stretch of time to shade (an alert firing), with what it was."""

    start: float
    end: float
    label: str


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CHAR_PX: Final = 7.0
"""About the width of a character of an axis label (12 px type), in the chart's own units."""


def _time_ticks(x0: float, x1: float, width_px: float) -> list[float]:
    """Round instants from x0 to x1, as many as fit `width_px` with their labels apart."""
    span = max(1.0, x1 - x0)
    label_px = _CHAR_PX * len(_clock(x0, span)) + 14
    count = max(2, int(width_px // label_px))
    for step in (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000):
        if span / step <= count:
            break
    first = math.ceil(x0 / step) * step
    return [t for t in (first + k * step for k in range(count + 2)) if t <= x1]


def _clock(t: float, span: float) -> str:
    d = datetime.fromtimestamp(t, UTC)
    return d.strftime("%m-%d %H:%M") if span > 2 * 86400 else d.strftime("%H:%M")


def _segments(points: Sequence[tuple[float, float]], gap: float) -> list[list[tuple[float, float]]]:
    """Runs of points no further apart than `gap` seconds: a line never bridges missing data."""
    runs: list[list[tuple[float, float]]] = []
    for p in sorted(points):
        if runs and p[0] - runs[-1][-1][0] <= gap:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def timeseries(
    lines: Sequence[Line],
    quantity: Quantity,
    x_range: tuple[float, float],
    interval_s: float,
    y_title: str,
    *,
    thresholds: Sequence[Threshold] = (),
    windows: Sequence[Window] = (),
    title: str = "",
    markers: Sequence[Marker] = (),
) -> tuple[str, list[str]]:
    """The chart, and notes for its legend (thresholds off the scale). `x_range`: the report's
    range, so every chart of the report shares one time axis."""
    notes: list[str] = []
    x0, x1 = x_range
    x1 = x1 if x1 > x0 else x0 + 1
    outside = sum(1 for line in lines for x, _ in line.points if not x0 <= x <= x1)
    if outside:
        lines = [Line(n.name, [p for p in n.points if x0 <= p[0] <= x1], [x for x in n.too_few if x0 <= x <= x1])
                 for n in lines]  # fmt: skip
        notes.append(f"{outside:,} point{'s' * (outside != 1)} outside the time axis not drawn")
    values = [y for line in lines for _, y in line.points]
    top = max(values, default=0.0)
    low = min(0.0, *values) if values else 0.0
    shown_thresholds = []
    for t in thresholds:
        if top <= 0 or t.value <= 3 * top:
            shown_thresholds.append(t)
            top = max(top, t.value)
        else:
            notes.append(f"{t.label} at {show(t.value, quantity)}: above the chart")
    if top <= low:
        top = low + (1.0 if quantity != "percent" else 0.01)
    ticks, tick_labels = axis_ticks(low, top, quantity)
    y0, y1 = ticks[0], ticks[-1]

    def sx(x: float) -> float:
        return ML + (x - x0) / (x1 - x0) * (W - ML - MR)

    def sy(y: float) -> float:
        return MT + (1 - (y - y0) / (y1 - y0)) * (H - MT - MB)

    unit = unit_name(quantity, top)
    axis = f"{y_title} ({unit})" if unit and unit != "ratio" else y_title
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{_e(title or y_title)}" '
             'xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    labelled: list[tuple[float, float]] = []
    named: set[str] = set()
    for w in windows:
        a, b = max(x0, w.start), min(x1, w.end)
        if b <= a:
            continue
        parts.append(
            f'<rect class="window" x="{sx(a):.1f}" y="{MT}" width="{max(1.5, sx(b) - sx(a)):.1f}" '
            f'height="{H - MT - MB}"><title>{_e(w.label)}</title></rect>'
        )
        if w.label in named:
            continue  # one label per kind of window: the legend says what shading means
        named.add(w.label)
        # a label that would overlap one before it goes a line lower, inside the plot
        row = sum(1 for left, right in labelled if left <= sx(a) < right)
        labelled.append((sx(a), sx(a) + 7 * len(w.label)))
        parts.append(f'<text class="wlabel" x="{sx(a) + 2:.1f}" y="{MT - 5 + 13 * row}">{_e(w.label)}</text>')
    for value, text in zip(ticks, tick_labels, strict=True):
        parts.append(f'<line class="grid" x1="{ML}" x2="{W - MR}" y1="{sy(value):.1f}" y2="{sy(value):.1f}"/>')
        parts.append(f'<text class="ylab" x="{ML - 5}" y="{sy(value) + 4:.1f}">{_e(text)}</text>')
    for at in _time_ticks(x0, x1, W - ML - MR):
        parts.append(f'<line class="tick" x1="{sx(at):.1f}" x2="{sx(at):.1f}" y1="{H - MB}" y2="{H - MB + 4}"/>')
        parts.append(f'<text class="xlab" x="{sx(at):.1f}" y="{H - MB + 16}">{_clock(at, x1 - x0)}</text>')
    parts.append(f'<line class="axis" x1="{ML}" x2="{W - MR}" y1="{H - MB}" y2="{H - MB}"/>')
    parts.append(f'<text class="xtitle" x="{(ML + W - MR) / 2:.0f}" y="{H - 6}">Time (UTC)</text>')
    parts.append(
        f'<text class="ytitle" transform="translate(14 {(MT + H - MB) / 2:.0f}) rotate(-90)">{_e(axis)}</text>'
    )
    # each change: a numbered vertical line, the number that of the list on page one
    for k, m in enumerate(markers, start=1):
        if not x0 <= m.at <= x1:
            continue
        x = sx(m.at)
        parts.append(
            f'<line class="change" x1="{x:.1f}" x2="{x:.1f}" y1="{MT - 2}" y2="{H - MB}"><title>{_e(m.label)}</title>'
            f'</line><circle class="changemark" cx="{x:.1f}" cy="{MT - 9}" r="6"/>'
            f'<text class="changeno" x="{x:.1f}" y="{MT - 5.5}">{k}</text>'
        )
    for t in shown_thresholds:
        y = sy(t.value)
        parts.append(f'<line class="threshold" x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}"/>')
        text = f"{t.label} {show(t.value, quantity)}"
        parts.append(f'<text class="tlabel" x="{W - MR - 2}" y="{y - 4:.1f}">{_e(text)}</text>')
    gap = 1.5 * interval_s
    for n, line in enumerate(lines):
        color = PALETTE[n % len(PALETTE)]
        tip = f"<title>{_e(line.name)}</title>"
        for run in _segments(line.points, gap):
            if len(run) == 1:
                x, y = run[0]
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">{tip}</circle>')
            else:
                path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
                parts.append(f'<polyline points="{path}" stroke="{color}">{tip}</polyline>')
        for x in line.too_few:
            parts.append(
                f'<rect class="toofew" x="{sx(x) - 1.5:.1f}" y="{H - MB - 7 - 3 * (n % 3)}" width="3" height="5" '
                f'fill="{color}"><title>{_e(line.name)}: too few</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts), notes


def ratio_axis(value: float) -> float:
    """Where a ratio sits on the strip (log scale, clipped to RATIO_RANGE), in px."""
    lo, hi = (math.log(v) for v in RATIO_RANGE)
    v = math.log(min(max(value, RATIO_RANGE[0]), RATIO_RANGE[1])) if value > 0 else lo
    return 14 + (v - lo) / (hi - lo) * (RATIO_W - 28)


def ratio_strip(estimate: float, low: float, high: float, band: tuple[float, float], harm_above: bool) -> str:
    """One ratio with its interval on a log axis from 0.25 to 4, the fairness band shaded and 1
    marked; red where the interval lies wholly outside the band on the side of harm."""
    b0, b1 = ratio_axis(band[0]), ratio_axis(band[1])
    clear = low > band[1] if harm_above else high < band[0]
    color = ALERT if clear else "#1f2430"
    hi_x = ratio_axis(high) if math.isfinite(high) else RATIO_W - 8
    return (
        f'<svg class="strip" viewBox="0 0 {RATIO_W} {RATIO_H}" role="img" '
        f'aria-label="{show(estimate, "ratio")} ({show(low, "ratio")} to {show(high, "ratio")})" '
        'xmlns="http://www.w3.org/2000/svg">'
        f'<rect class="band" x="{b0:.1f}" y="2" width="{b1 - b0:.1f}" height="{RATIO_H - 4}"/>'
        f'<line class="one" x1="{ratio_axis(1):.1f}" x2="{ratio_axis(1):.1f}" y1="1" y2="{RATIO_H - 1}"/>'
        f'<line x1="{ratio_axis(low):.1f}" x2="{hi_x:.1f}" y1="{RATIO_H / 2}" y2="{RATIO_H / 2}" '
        f'stroke="{color}" stroke-width="2"/>'
        f'<circle cx="{ratio_axis(estimate):.1f}" cy="{RATIO_H / 2}" r="4" fill="{color}"/></svg>'
    )


def ratio_scale() -> str:
    """The strip's axis: where 0.25, 0.5, 1, 2 and 4 sit."""
    marks = "".join(f'<text x="{ratio_axis(v):.1f}" y="11" class="xlab">{v:g}</text>' for v in (0.25, 0.5, 1, 2, 4))
    return f'<svg class="strip" viewBox="0 0 {RATIO_W} 14" xmlns="http://www.w3.org/2000/svg">{marks}</svg>'


@dataclass(frozen=True)
class Lane:
    """One alert instance on the timeline: its firing episodes (start, end or None when still
    firing), the pending stretches before them, and its severity."""

    label: str
    severity: str
    firing: tuple[tuple[float, float | None], ...]
    pending: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Marker:
    """A change on the timeline (a model version first seen, a rollout mode begun)."""

    at: float
    label: str


def timeline(lanes: Sequence[Lane], x_range: tuple[float, float], markers: Sequence[Marker] = ()) -> str:
    """Each alert instance as a lane: pending (light) then firing (solid) from the firing to the
    resolution, an open end when still firing; changes as numbered marks above the lanes."""
    label_w, lane_h, top = 240, 17, 8 + (14 if markers else 0)
    height = top + lane_h * len(lanes) + 30
    x0, x1 = x_range
    x1 = x1 if x1 > x0 else x0 + 1

    def sx(x: float) -> float:
        return label_w + (min(max(x, x0), x1) - x0) / (x1 - x0) * (TIMELINE_W - label_w - 12)

    parts = [f'<svg class="timeline" viewBox="0 0 {TIMELINE_W} {height}" role="img" aria-label="Alert timeline" '
             'xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    bottom = top + lane_h * len(lanes)
    for t in _time_ticks(x0, x1, TIMELINE_W - label_w - 12):
        parts.append(f'<line class="grid" x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top - 4}" y2="{bottom}"/>')
        parts.append(f'<text class="xlab" x="{sx(t):.1f}" y="{bottom + 14}">{_clock(t, x1 - x0)}</text>')
    parts.append(f'<text class="xtitle" x="{(label_w + TIMELINE_W) / 2:.0f}" y="{bottom + 28}">Time (UTC)</text>')
    for k, m in enumerate(markers, start=1):
        x = sx(m.at)
        parts.append(
            f'<line class="change" x1="{x:.1f}" x2="{x:.1f}" y1="14" y2="{bottom}"><title>{_e(m.label)}</title></line>'
            f'<circle class="changemark" cx="{x:.1f}" cy="9" r="7"/>'
            f'<text class="changeno" x="{x:.1f}" y="13">{k}</text>'
        )
    for i, lane in enumerate(lanes):
        y = top + i * lane_h
        color = ALERT if lane.severity == "page" else "#d98b00"
        parts.append(f'<text class="lane" x="{label_w - 8}" y="{y + 12}">{_e(lane.label)}</text>')
        parts.append(f'<line class="grid" x1="{label_w}" x2="{TIMELINE_W - 12}" y1="{y + lane_h}" y2="{y + lane_h}"/>')
        for a, b in lane.pending:
            parts.append(
                f'<rect x="{sx(a):.1f}" y="{y + 4}" width="{max(2.0, sx(b) - sx(a)):.1f}" height="9" '
                f'fill="{color}" opacity="0.25"/>'
            )
        for a, until in lane.firing:
            end = sx(until) if until is not None else TIMELINE_W - 12
            parts.append(
                f'<rect x="{sx(a):.1f}" y="{y + 2}" width="{max(3.0, end - sx(a)):.1f}" height="13" rx="2" '
                f'fill="{color}" fill-opacity="0.8"><title>{_e(lane.label)}</title></rect>'
            )
            if until is None:
                parts.append(f'<text class="open" x="{end - 3:.1f}" y="{y + 12}">▶</text>')
    parts.append("</svg>")
    return "".join(parts)
