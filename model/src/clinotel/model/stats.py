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

- **A kill criterion** (the canary against its baseline, the decision that stops a rollout):
  the sequence above at 80 % of the error, and a second sequence at the other 20 % built from one
  confidence sequence per rate (Robbins' mixture of binomial likelihoods over a uniform prior, an
  exact martingale: Ville's inequality holds at every look): the canary's rate at least its lower
  end, the baseline's at most its upper end, so the ratio at least their quotient. The log-ratio
  sequence cannot see a canary at 20 % against a baseline with 0 or 1 event in 200 (its variance
  is the baseline's, near infinite); the quotient of the two ends does. The interval is the
  tighter of the two on each side, and errs at most as much as the first alone at `confidence`.

`confidence` is the two-sided coverage of the interval (0.95: each side errs 2.5 % of the time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

__all__ = [
    "DISPARITY_CAP",
    "Interval",
    "filled_ratio",
    "filled_ratio_sql",
    "kill_sequence",
    "kill_sequence_columns",
    "proportion_grid_sql",
    "proportion_sequence",
    "ratio_interval",
    "ratio_interval_columns",
    "ratio_sequence",
    "stacked",
    "wilson",
    "wilson_sql",
    "z_value",
]

INF: Final = math.inf
DISPARITY_CAP: Final = 10.0
"""A ratio whose reference figure is 0 while the other is not: Aequitas fills the division and
caps disparities at 10, so a group with harm against a reference without any reads as far past any
band, not as missing (a missing figure never pages)."""


def filled_ratio(num: float | None, den: float | None) -> float | None:
    """`num / den`; with `den` 0, `DISPARITY_CAP` when `num` is above 0 and 1 (no difference) when
    it is 0 too; None when either is missing."""
    if num is None or den is None or math.isnan(num) or math.isnan(den):
        return None
    if den > 0:
        return num / den
    return DISPARITY_CAP if num > 0 else 1.0


def filled_ratio_sql(num: str, den: str) -> str:
    """`filled_ratio` of two SQL figures (NULL or NaN when either is missing)."""
    n, d = f"toFloat64({num})", f"toFloat64({den})"
    missing = f"NOT ifNull(isFinite({n}) AND isFinite({d}), 0)"
    return f"multiIf({missing}, NULL, {d} > 0, {n} / {d}, {n} > 0, {DISPARITY_CAP!r}, 1.)"


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
    """`ratio_interval` in SQL (NULL without rows on either side; the high end `inf` when x2 is
    0), as two SELECT lists of named columns, so the SQL a reader sees is short: the parts
    (`{prefix}_l1` … `{prefix}_u2`, the two Wilson intervals, and the two rates `{prefix}_p1`,
    `{prefix}_p2`), and the interval (`{prefix}_low`, `{prefix}_high`) from them, for a SELECT
    over the one that has the parts (`stacked`). Not one list: ClickHouse puts an alias's whole
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


KILL_SHARE_OF_MIXTURE: Final = 0.8
"""Of a kill criterion's error, the share the log-ratio sequence gets; the rest goes to the two
rates' own sequences (`kill_sequence`)."""
_GRID_HALF: Final = 1000
_GRID_FLOOR: Final = 2e-6
"""The rates a rate's sequence is read on: 1,000 from 1e-6 to 0.5 spaced by their ratio, and as
many from 0.5 to 1 - 1e-6 spaced by their distance to 1 (1.3 % apart): each end is taken one
point outwards, so an end is never tighter than the exact one."""


def _grid_point(i: int) -> float:
    if i < _GRID_HALF:
        return 0.5 * math.pow(_GRID_FLOOR, 1 - i / (_GRID_HALF - 1))
    return 1 - 0.5 * math.pow(_GRID_FLOOR, (i - _GRID_HALF + 1) / (_GRID_HALF - 1))


_GRID: Final = tuple(_grid_point(i) for i in range(2 * _GRID_HALF))
_GRID_LOGS: Final = tuple((math.log(p), math.log1p(-p)) for p in _GRID)
"""log(p) and log(1 - p) of each grid point, computed once: the same numbers as computing them at
every call of `proportion_sequence`, which then takes half the time."""


def proportion_sequence(x: int, n: int, alpha: float) -> Interval | None:
    """The confidence sequence at error `alpha` of a rate of `x` hits in `n` rows: the rates `p`
    at which the mixture of binomial likelihoods over a uniform prior, B(x+1, n-x+1), is less than
    1/alpha times the likelihood at `p` (Robbins 1970); None without rows."""
    if n <= 0:
        return None
    floor = math.lgamma(x + 1) + math.lgamma(n - x + 1) - math.lgamma(n + 2) + math.log(alpha)
    inside = [i for i, (lp, lq) in enumerate(_GRID_LOGS) if x * lp + (n - x) * lq > floor]
    if not inside:
        return Interval(0.0, 1.0)
    first, last = inside[0], inside[-1]
    return Interval(_GRID[first - 1] if first > 0 else 0.0, _GRID[last + 1] if last + 1 < len(_GRID) else 1.0)


def kill_sequence(x1: int, n1: int, x2: int, n2: int, confidence: float, tau: float) -> Interval | None:
    """The interval a kill criterion decides with (see the module's text): the tighter, on each
    side, of `ratio_sequence` at 80 % of the error and the quotient of the two rates' own
    sequences (`proportion_sequence`, a tenth of the error each); None without rows on a side."""
    alpha = 1 - confidence
    mixture = ratio_sequence(x1, n1, x2, n2, 1 - KILL_SHARE_OF_MIXTURE * alpha, tau)
    rest = (1 - KILL_SHARE_OF_MIXTURE) * alpha / 2
    one, two = proportion_sequence(x1, n1, rest), proportion_sequence(x2, n2, rest)
    if mixture is None or one is None or two is None:
        return None
    low = one.low / two.high
    high = one.high / two.low if two.low > 0 else INF
    return Interval(max(mixture.low, low), min(mixture.high, high))


def proportion_grid_sql() -> str:
    """The rates `proportion_sequence` is read on, as an SQL array: a query that computes it once in
    a layer of its own (`AS` a column) and passes that column as `grid` plans far less than one
    that repeats it in every bound."""
    h, last = _GRID_HALF, _GRID_HALF - 1
    return (
        f"arrayMap(i -> if(i < {h}, 0.5 * pow({_GRID_FLOOR!r}, 1 - i / {last}), "
        f"1 - 0.5 * pow({_GRID_FLOOR!r}, (i - {h} + 1) / {last})), range({2 * h}))"
    )


def kill_sequence_columns(
    prefix: str, x1: str, n1: str, x2: str, n2: str, confidence: float, tau: float | str, grid: str
) -> tuple[str, ...]:
    """`kill_sequence` in SQL, as SELECT lists of named columns, innermost first, each for a SELECT
    over the one before (`stacked`): the last names the interval `{prefix}_low`, `{prefix}_high`
    (NULL without rows on either side). `tau` is a number or an SQL expression, `grid` a column
    holding `proportion_grid_sql()`. Each part is computed once, in its layer: written out as one
    expression, every rate and bound was copied wherever it was used, and planning those copies took
    about 75 of a canary rule's 108 ms on the demo's store (now 70 ms in all).

    The parts a test may read: `{prefix}_q1`, `_q2` (the smoothed rates), `_half` (the log-ratio
    sequence's half-width around log(q1/q2)), `_l1`, `_u1`, `_l2`, `_u2` (each rate's own
    sequence)."""
    p = prefix
    alpha = 1 - confidence
    mixture = 1 - KILL_SHARE_OF_MIXTURE * alpha
    rest = (1 - KILL_SHARE_OF_MIXTURE) * alpha / 2
    t2 = repr(tau * tau) if isinstance(tau, float | int) else f"(({tau}) * ({tau}))"
    log_alpha = 2 * math.log(1 / (1 - mixture))
    xs, ns = (f"{p}_x1", f"{p}_x2"), (f"{p}_n1", f"{p}_n2")
    floats = f"{_f(x1)} AS {xs[0]}, {_f(n1)} AS {ns[0]}, {_f(x2)} AS {xs[1]}, {_f(n2)} AS {ns[1]}, {t2} AS {p}_t2"
    rates, floors, ends, bounds = [], [], [], []
    size = 2 * _GRID_HALF
    for k, (x, n) in enumerate(zip(xs, ns, strict=True), 1):
        rates.append(f"({x} + 0.5) / ({n} + 1) AS {p}_q{k}")
        floors.append(f"lgamma({x} + 1) + lgamma({n} - {x} + 1) - lgamma({n} + 2) + {math.log(rest)!r} AS {p}_f{k}")
        inside = f"p -> {x} * log(p) + ({n} - {x}) * log1p(-p) > {p}_f{k}"
        ends.append(f"arrayFirstIndex({inside}, {grid}) AS {p}_a{k}, arrayLastIndex({inside}, {grid}) AS {p}_b{k}")
        first, last = f"{p}_a{k}", f"{p}_b{k}"
        bounds.append(
            f"if({n} > 0, if({first} <= 1, 0., arrayElement({grid}, {first} - 1)), NULL) AS {p}_l{k}, "
            f"if({n} > 0, if({last} = 0 OR {last} >= {size}, 1., arrayElement({grid}, {last} + 1)), NULL) AS {p}_u{k}"
        )
    q1, q2, v, t = f"{p}_q1", f"{p}_q2", f"{p}_v", f"{p}_t2"
    variance = f"(1 - {q1}) / (({ns[0]} + 1) * {q1}) + (1 - {q2}) / (({ns[1]} + 1) * {q2}) AS {v}"
    half = f"sqrt({v} * ({v} + {t}) / {t} * ({log_alpha!r} + log(({v} + {t}) / {v}))) AS {p}_half"
    some = f"{ns[0]} > 0 AND {ns[1]} > 0"
    centre = f"log({q1} / {q2})"
    interval = (
        f"if({some}, greatest(exp({centre} - {p}_half), {p}_l1 / {p}_u2), NULL) AS {p}_low, "
        f"if({some}, least(exp({centre} + {p}_half), if({p}_l2 > 0, {p}_u1 / {p}_l2, inf)), NULL) AS {p}_high"
    )
    return (
        floats,
        f"{', '.join(rates)}, {', '.join(floors)}",
        f"{variance}, {', '.join(ends)}",
        f"{half}, {', '.join(bounds)}",
        interval,
    )


def stacked(source: str, layers: tuple[str, ...] | list[str]) -> str:
    """`source` (a SELECT) with each of `layers` (SELECT lists, innermost first) added to its
    columns by a SELECT of its own over the one before."""
    sql = source
    for layer in layers:
        sql = f"SELECT *, {layer} FROM (\n{sql}\n)"
    return sql
