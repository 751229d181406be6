"""One number format per quantity: every figure of the report goes through `show`.

- a rate (a fraction of 0..1) is a percentage with one decimal: `12.3%`;
- a difference of rates is in percentage points: `+3.2 pp`;
- a ratio has two decimals and a times sign: `1.27×`;
- human effort is in minutes with one decimal: `12.5 min` (minutes saved compare across rows);
- a duration is humanised in the largest unit that keeps it above 1: `850 ms`, `2.3 s`, `31.1 min`,
  `1.3 h`, `2.0 d`;
- a count is a whole number with thousands separators: `20,000`; a count per unit of time has one
  decimal: `16.3`;
- bytes in binary units: `1.5 MiB`.

A missing value is never shown as None or nan: statistics show `too few` (every statistic of the
report is NULL only when its sample is too small, or has no denominator), anything else `–`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final, Literal

__all__ = ["MISSING", "TOO_FEW", "Quantity", "axis_ticks", "duration_unit", "quantity_of", "show", "unit_name"]

Quantity = Literal[
    "percent", "points", "ratio", "ms", "s", "days", "minutes", "count", "per_time", "bytes", "number", "text"
]
TOO_FEW: Final = "too few"
MISSING: Final = "–"
_STATISTICS: Final = frozenset({"percent", "points", "ratio", "ms", "s", "days", "minutes", "number"})
_DURATIONS: Final = (("d", 86_400_000.0), ("h", 3_600_000.0), ("min", 60_000.0), ("s", 1000.0), ("ms", 1.0))
_TO_MS: Final = {"ms": 1.0, "s": 1000.0, "days": 86_400_000.0}
_GRAFANA: Final[dict[str, Quantity]] = {"percentunit": "percent", "ms": "ms", "s": "s", "bytes": "bytes"}


def quantity_of(grafana_unit: str) -> Quantity:
    """The quantity of a Grafana unit (`percentunit`, `ms`, `s`, `bytes`, `short`)."""
    return _GRAFANA.get(grafana_unit, "number")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))


def duration_unit(ms: float) -> tuple[str, float]:
    """The unit a duration of `ms` milliseconds is shown in, and its size in ms."""
    for name, size in _DURATIONS:
        if abs(ms) >= size:
            return name, size
    return "ms", 1.0


def show(value: object, quantity: Quantity, *, missing: str | None = None) -> str:
    """`value` as the report shows a `quantity`."""
    if _missing(value):
        return missing if missing is not None else (TOO_FEW if quantity in _STATISTICS else MISSING)
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if quantity == "percent":
        return f"{v * 100:.1f}%"
    if quantity == "points":
        return f"{v * 100:+.1f} pp"
    if quantity == "ratio":
        return f"{v:.2f}×"
    if quantity in _TO_MS:
        ms = v * _TO_MS[quantity]
        unit, size = duration_unit(ms)
        return f"{ms:.0f} ms" if unit == "ms" else f"{ms / size:.1f} {unit}"
    if quantity == "minutes":
        return f"{v:,.1f} min"
    if quantity == "count":
        return f"{round(v):,}"
    if quantity == "per_time":
        return f"{v:,.1f}"
    if quantity == "bytes":
        for size, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(v) >= size:
                return f"{v / size:.1f} {suffix}"
        return f"{v:.0f} B"
    if isinstance(value, int) or v.is_integer():
        return f"{round(v):,}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


_UNIT_NAMES: Final = {"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds"}


def unit_name(quantity: Quantity, top: float) -> str:
    """What an axis whose largest value is `top` is measured in (for its title)."""
    if quantity == "percent":
        return "%"
    if quantity == "points":
        return "percentage points"
    if quantity == "ratio":
        return "ratio"
    if quantity in _TO_MS:
        return _UNIT_NAMES[duration_unit(top * _TO_MS[quantity])[0]]
    if quantity == "bytes":
        return _byte_unit(top)[0]
    if quantity == "minutes":
        return "minutes"
    return ""


def _byte_unit(top: float) -> tuple[str, float]:
    for size, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(top) >= size:
            return suffix, float(size)
    return "bytes", 1.0


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(1, ticks)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * magnitude:
            return m * magnitude
    return 10.0 * magnitude


def axis_ticks(low: float, high: float, quantity: Quantity, ticks: int = 4) -> tuple[list[float], list[str]]:
    """Round tick values from `low` to at least `high`, and their labels in one unit for the whole
    axis (so a duration axis reads 0, 15, 30, 45 minutes rather than 0 ms, 15.0 min)."""
    scale = 1.0
    if quantity == "percent":
        scale = 100.0
    elif quantity == "bytes":
        scale = 1 / _byte_unit(max(abs(low), abs(high)))[1]
    elif quantity in _TO_MS:
        _, size = duration_unit(max(abs(low), abs(high)) * _TO_MS[quantity])
        scale = _TO_MS[quantity] / size
    lo, hi = low * scale, high * scale
    if hi <= lo:
        hi = lo + 1
    step = _nice_step(hi - lo, ticks)
    start = math.floor(lo / step + 1e-9) * step
    count = max(1, math.ceil((hi - start) / step - 1e-9))
    digits = len(f"{step:.6f}".rstrip("0").split(".")[1])
    values = [(start + k * step) / scale for k in range(count + 1)]
    labels = [f"{start + k * step:,.{digits}f}" for k in range(count + 1)]
    return values, labels
