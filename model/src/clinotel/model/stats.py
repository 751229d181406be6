"""The tests the dashboards and the alerts decide with, each written twice: in Python (for the
report, the evaluator's messages and the tests) and as ClickHouse SQL (for the panels and the
alert queries, so Grafana evaluates exactly what clinotel's evaluator does). A test holds the two
equal.

- **A rate** `x` of `n`: the Wilson score interval.
- **A ratio of two rates** (a group against the reference group, the last hour against the
  trailing day): the MOVER-R interval built from the two Wilson intervals (Donner and Zou 2012;
  Fagerland and Newcombe 2013), closed form, so it runs in SQL.
- **A canary against its baseline, looked at every evaluation**: an asymptotic confidence
  sequence for the log of the ratio, the normal-mixture boundary (Robbins; the mixture SPRT of
  Johari, Pekelis and Walsh): its coverage holds at every look at once, so evaluating every 30 s
  does not inflate false alarms while the sample grows.

`confidence` is the two-sided coverage of the interval (0.95: each side errs 2.5 % of the time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

__all__ = [
    "Interval",
    "ratio_interval",
    "ratio_interval_columns",
    "ratio_interval_sql",
    "ratio_sequence",
    "ratio_sequence_sql",
    "wilson",
    "wilson_sql",
    "z_value",
]

INF: Final = math.inf


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for `confidence` (1.959964 for 0.95)."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), not {confidence}")
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_one(self, higher: bool) -> bool:
        """The interval lies above 1 (`higher`) or below it."""
        return self.low > 1 if higher else self.high < 1


def wilson(x: int, n: int, confidence: float) -> Interval | None:
    """The Wilson score interval of `x` hits in `n` rows; None without rows."""
    if n <= 0:
        return None
    z = z_value(confidence)
    z2 = z * z
    centre = (x + z2 / 2) / (n + z2)
    half = z * math.sqrt(x * (n - x) / n + z2 / 4) / (n + z2)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def ratio_interval(x1: int, n1: int, x2: int, n2: int, confidence: float) -> Interval | None:
    """MOVER-R Wilson interval of (x1/n1) ÷ (x2/n2); the upper end is infinite when x2 = 0."""
    i1, i2 = wilson(x1, n1, confidence), wilson(x2, n2, confidence)
    if i1 is None or i2 is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    return Interval(_mover_low(p1, i1.low, p2, i2.high), _mover_high(p1, i1.high, p2, i2.low))


def _mover_low(p1: float, l1: float, p2: float, u2: float) -> float:
    # root of L²·u2(2p2 − u2) − 2L·p1p2 + l1(2p1 − l1) = 0, in the form without cancellation
    a, c, b = u2 * (2 * p2 - u2), l1 * (2 * p1 - l1), p1 * p2
    if c <= 0:
        return 0.0
    return c / (b + math.sqrt(max(0.0, b * b - a * c)))


def _mover_high(p1: float, u1: float, p2: float, l2: float) -> float:
    a, c, b = l2 * (2 * p2 - l2), u1 * (2 * p1 - u1), p1 * p2
    if a <= 0:
        return INF
    return (b + math.sqrt(max(0.0, b * b - a * c))) / a


def ratio_interval_columns(prefix: str, x1: str, n1: str, x2: str, n2: str, confidence: float) -> tuple[str, str]:
    """`ratio_interval_sql` as two SELECT lists of named columns, so the SQL a reader sees is
    short: the parts (`{prefix}_l1` … `{prefix}_u2`, the two Wilson intervals, and the two rates
    `{prefix}_p1`, `{prefix}_p2`), and the interval (`{prefix}_low`, `{prefix}_high`) from them,
    for a SELECT over the one that has the parts. Not one list: ClickHouse puts an alias's whole
    expression wherever the list uses it, and planning the nested copies took 18 of the 40 ms
    that planning a fairness table took."""
    p = prefix
    l1, u1 = wilson_sql(x1, n1, confidence)
    l2, u2 = wilson_sql(x2, n2, confidence)
    low, high = _mover_sql(f"{p}_p1", f"{p}_l1", f"{p}_u1", f"{p}_p2", f"{p}_l2", f"{p}_u2")
    some = f"{p}_p1 IS NOT NULL AND {p}_p2 IS NOT NULL"
    parts = (
        f"{l1} AS {p}_l1, {u1} AS {p}_u1, {l2} AS {p}_l2, {u2} AS {p}_u2, "
        f"if({_f(n1)} > 0, {_f(x1)} / {_f(n1)}, NULL) AS {p}_p1, "
        f"if({_f(n2)} > 0, {_f(x2)} / {_f(n2)}, NULL) AS {p}_p2"
    )
    return parts, f"if({some}, {low}, NULL) AS {p}_low, if({some}, {high}, NULL) AS {p}_high"


def _mover_sql(p1: str, l1: str, u1: str, p2: str, l2: str, u2: str) -> tuple[str, str]:
    b = f"({p1} * {p2})"
    a_low, c_low = f"({u2} * (2 * {p2} - {u2}))", f"({l1} * (2 * {p1} - {l1}))"
    a_high, c_high = f"({l2} * (2 * {p2} - {l2}))", f"({u1} * (2 * {p1} - {u1}))"
    low = f"if({c_low} <= 0, 0., {c_low} / ({b} + sqrt(greatest(0., {b} * {b} - {a_low} * {c_low}))))"
    high = f"if({a_high} <= 0, inf, ({b} + sqrt(greatest(0., {b} * {b} - {a_high} * {c_high}))) / {a_high})"
    return low, high


def ratio_sequence(x1: int, n1: int, x2: int, n2: int, confidence: float, tau: float) -> Interval | None:
    """The confidence sequence of (x1/n1) ÷ (x2/n2) at this look: the normal-mixture boundary on
    the log ratio, mixing scale `tau` (on the log scale: the effect the test is tuned to find).
    Half a hit is added to each count, so a count of zero still has a log."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = (x1 + 0.5) / (n1 + 1), (x2 + 0.5) / (n2 + 1)
    centre = math.log(p1 / p2)
    v = (1 - p1) / ((n1 + 1) * p1) + (1 - p2) / ((n2 + 1) * p2)
    t2 = tau * tau
    alpha = 1 - confidence
    half = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))
    return Interval(math.exp(centre - half), math.exp(centre + half))


def _f(x: str) -> str:
    return f"toFloat64({x})"


def wilson_sql(x: str, n: str, confidence: float) -> tuple[str, str]:
    """(low, high) of the Wilson interval of SQL counts `x` of `n`, NULL when `n` is 0."""
    z = z_value(confidence)
    z2 = z * z
    x, n = _f(x), _f(n)
    centre = f"(({x} + {z2 / 2!r}) / ({n} + {z2!r}))"
    half = f"({z!r} * sqrt({x} * ({n} - {x}) / {n} + {z2 / 4!r}) / ({n} + {z2!r}))"
    return (
        f"if({n} > 0, greatest(0., {centre} - {half}), NULL)",
        f"if({n} > 0, least(1., {centre} + {half}), NULL)",
    )


def ratio_interval_sql(x1: str, n1: str, x2: str, n2: str, confidence: float) -> tuple[str, str]:
    """(low, high) of the MOVER-R Wilson interval in SQL: NULL without rows on either side; the
    high end `inf` when x2 is 0."""
    l1, u1 = wilson_sql(x1, n1, confidence)
    l2, u2 = wilson_sql(x2, n2, confidence)
    p1, p2 = f"({_f(x1)} / {_f(n1)})", f"({_f(x2)} / {_f(n2)})"
    low, high = _mover_sql(p1, l1, u1, p2, l2, u2)
    some = f"{_f(n1)} > 0 AND {_f(n2)} > 0"
    return f"if({some}, {low}, NULL)", f"if({some}, {high}, NULL)"


def ratio_sequence_sql(x1: str, n1: str, x2: str, n2: str, confidence: float, tau: float | str) -> tuple[str, str]:
    """(low, high) of `ratio_sequence` in SQL, NULL without rows on either side; `tau` a number
    or an SQL expression."""
    p1 = f"(({_f(x1)} + 0.5) / ({_f(n1)} + 1))"
    p2 = f"(({_f(x2)} + 0.5) / ({_f(n2)} + 1))"
    v = f"((1 - {p1}) / (({_f(n1)} + 1) * {p1}) + (1 - {p2}) / (({_f(n2)} + 1) * {p2}))"
    t2 = repr(tau * tau) if isinstance(tau, float | int) else f"(({tau}) * ({tau}))"
    log_alpha = 2 * math.log(1 / (1 - confidence))
    half = f"sqrt({v} * ({v} + {t2}) / {t2} * ({log_alpha!r} + log(({v} + {t2}) / {v})))"
    centre = f"log({p1} / {p2})"
    some = f"{_f(n1)} > 0 AND {_f(n2)} > 0"
    return f"if({some}, exp({centre} - {half}), NULL)", f"if({some}, exp({centre} + {half}), NULL)"
