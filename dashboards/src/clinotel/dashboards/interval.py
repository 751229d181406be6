"""A panel's interval (`$__interval`, the bucket of `$__timeInterval`) as Grafana computes it, so
`dashboards check` and the report run the bucket sizes Grafana runs.

Ported from Grafana's source, not copied: `calculateInterval`, `roundInterval`, `intervalToMs`
(`describeInterval`) and `secondsToHms` in grafana/grafana
`packages/grafana-data/src/datetime/rangeutil.ts` (stored version 0aff354e, the 12.x line; the
table has not changed since Grafana 7), and the inputs grafana/scenes v6.28.6 gives them in
`SceneQueryRunner.prepareRequests`, which dashboards use since Grafana 11.3:

- data points: the panel's `maxDataPoints`, else the panel's width in pixels
  (`maxDataPointsFromWidth`; the dashboard scene passes `panel.maxDataPoints ?? undefined`);
- lower limit: the panel's `interval` (its "min interval"), else the datasource's `interval`,
  which the ClickHouse plugin never sets (DataSourceApi leaves it undefined), so 1 ms;
- interval = roundInterval(range_ms / data points), raised to the lower limit.

clinotel's panels all set `maxDataPoints`, so the width (unknown offline) never matters for them;
for a hand-written panel without it the width is estimated from `gridPos.w` on a 1920 px screen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = ["Interval", "IntervalError", "calculate", "interval_to_ms", "panel_interval", "round_interval",
           "seconds_to_hms"]  # fmt: skip

_ROUNDING: Final = (
    # (below this many ms, use this many ms): rangeutil.roundInterval, in order
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip
_YEAR_MS: Final = 31536000000
_UNIT_SECONDS: Final = {"y": 31536000, "M": 2592000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_INTERVAL: Final = re.compile(r"^(-?\d+(?:\.\d+)?)(ms|[Mwdhmsy])")
_JS_NUMBER: Final = re.compile(r"\s*[+-]?(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?)\s*", re.IGNORECASE)
PX_PER_COLUMN: Final = 1920 / 24
"""The width estimate for a panel without `maxDataPoints`: one grid column of a 1920 px screen."""


class IntervalError(ValueError):
    """An interval string Grafana cannot read either (it fails the panel's query)."""


@dataclass(frozen=True)
class Interval:
    """A panel's interval: `ms` is `$__interval_ms` (and the backend's `Interval`), `text` is
    `$__interval`."""

    ms: int
    text: str


def round_interval(ms: float) -> int:
    """Grafana's `roundInterval`: a raw interval in ms to the next "nice" one below it."""
    for below, nice in _ROUNDING:
        if ms < below:
            return nice
    return _YEAR_MS


def interval_to_ms(text: str) -> float:
    """Grafana's `intervalToMs`: `10s`, `1m`, `500ms`, or a bare number of seconds. Like
    Grafana, the count is read with `parseInt` (`1.5h` is one hour)."""
    if _JS_NUMBER.fullmatch(text) and float(text.strip() or 0):  # JavaScript's Number(str) is truthy
        return 1000 * _parse_int(text)
    match = _INTERVAL.match(text)
    if not match:
        raise IntervalError(f"invalid interval {text!r}: a number and one of y, M, w, d, h, m, s, ms (such as 1m)")
    return _UNIT_SECONDS[match.group(2)] * 1000 * _parse_int(match.group(1))


def _parse_int(text: str) -> int:
    """JavaScript's parseInt(text, 10) where it yields a number."""
    match = re.match(r"\s*([+-]?\d+)", text)
    if not match:
        raise IntervalError(f"invalid interval {text!r}")
    return int(match.group(1))


def seconds_to_hms(seconds: float) -> str:
    """Grafana's `secondsToHms`: the largest whole unit, remainder dropped (`90s` is `1m`)."""
    years = math.floor(seconds / 31536000)
    if years:
        return f"{years}y"
    days = math.floor((seconds % 31536000) / 86400)
    if days:
        return f"{days}d"
    hours = math.floor((seconds % 31536000 % 86400) / 3600)
    if hours:
        return f"{hours}h"
    minutes = math.floor((seconds % 31536000 % 86400 % 3600) / 60)
    if minutes:
        return f"{minutes}m"
    whole = math.floor(seconds % 31536000 % 86400 % 3600 % 60)
    if whole:
        return f"{whole}s"
    ms = math.floor(seconds * 1000.0)
    if ms:
        return f"{ms}ms"
    return "less than a millisecond"


def calculate(range_ms: float, max_data_points: int, min_interval: str | None = None) -> Interval:
    """Grafana's `calculateInterval` for a range of `range_ms` drawn with `max_data_points`."""
    if max_data_points <= 0:
        raise IntervalError(f"maxDataPoints must be positive, not {max_data_points}")
    low = interval_to_ms(min_interval) if min_interval else 1
    ms = max(round_interval(range_ms / max_data_points), low)
    return Interval(int(ms), seconds_to_hms(ms / 1000))


def panel_interval(panel: Mapping[str, Any], start: datetime, end: datetime) -> Interval:
    """The interval Grafana gives `panel` (its JSON) over [start, end]."""
    points = panel.get("maxDataPoints")
    if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
        width = panel.get("gridPos", {}).get("w", 24)
        points = max(1, round(int(width) * PX_PER_COLUMN))
    range_ms = (end - start).total_seconds() * 1000
    return calculate(range_ms, points, panel.get("interval") or None)
