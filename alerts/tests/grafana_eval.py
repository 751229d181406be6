"""How Grafana evaluates one exported rule on the rows its query A returned: a model of Grafana's
code, written for the tests from its source (not copied), to compare with clinotel's evaluator.

- Query A, `format: 0`: the plugin (grafana/sqlds) turns the long frame into wide series with
  grafana-plugin-sdk-go `data.LongToWide`: one series per distinct set of the string columns'
  values, labelled with them; the other columns are values; rows stay in time order.
  A query returning no rows is "no data" for the whole rule.
- B, `reduce` with `reducer: last` and `settings.mode: dropNN`: grafana/grafana
  `pkg/expr/commands.go` (`ReduceCommand`, `mathexp.DropNonNumber`) and
  `pkg/expr/mathexp/reduce.go` (`Last`): nil, NaN and ±Inf points are dropped, the last point
  left is the value; none left gives NaN, which DropNonNumber's output mapping turns to nil.
- C, `threshold`: `pkg/expr/threshold.go` (stored version 015faa72, with `gte`/`lte`): each
  predicate on a value; nil stays nil.
- The condition: `pkg/services/ngalert/eval/eval.go` (`evaluateExecutionResult`, stored version
  0015b06b): a nil value is NoData, 0 is Normal, anything else Alerting; no rows at all is one
  NoData result. NoData then becomes the rule's `noDataState`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final

PREDICATES: Final[dict[str, Callable[[float, list[float]], bool]]] = {
    "gt": lambda f, p: f > p[0],
    "lt": lambda f, p: f < p[0],
    "eq": lambda f, p: f == p[0],
    "ne": lambda f, p: f != p[0],
    "gte": lambda f, p: f >= p[0],
    "lte": lambda f, p: f <= p[0],
    "within_range": lambda f, p: p[0] < f < p[1],
    "outside_range": lambda f, p: f < p[0] or f > p[1],
    "within_range_included": lambda f, p: p[0] <= f <= p[1],
    "outside_range_included": lambda f, p: f <= p[0] or f >= p[1],
}

Labels = frozenset[tuple[str, str]]


def long_to_wide(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[Labels, list[float | None]]:
    """Series by label set: string columns are labels, the `value` column the points."""
    labels = [i for i, c in enumerate(columns) if c not in ("time", "value")]
    value = columns.index("value")
    series: dict[Labels, list[float | None]] = {}
    for row in rows:
        assert all(isinstance(row[i], str) for i in labels), "label columns must be strings for LongToWide"
        key = frozenset((columns[i], str(row[i])) for i in labels)
        v = row[value]
        series.setdefault(key, []).append(None if v is None else float(v))
    return series


def reduce_last_drop_nn(points: list[float | None]) -> float | None:
    kept = [p for p in points if p is not None and not math.isnan(p) and not math.isinf(p)]
    return kept[-1] if kept else None


def evaluate(rule: dict[str, Any], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[Labels, str]:
    """Each alert instance's state (`Alerting`, `Normal`, or the NoData state applied) for the
    exported `rule` given the rows of its query A."""
    a, b, c = rule["data"]
    assert (a["model"]["format"], b["model"]["type"], c["model"]["type"]) == (0, "reduce", "threshold")
    assert (b["model"]["reducer"], b["model"]["settings"]["mode"]) == ("last", "dropNN")
    evaluator = c["model"]["conditions"][0]["evaluator"]
    predicate = PREDICATES[evaluator["type"]]
    params = [float(p) for p in evaluator["params"]]
    no_data = {"OK": "Normal", "Alerting": "Alerting", "KeepLast": "Normal", "NoData": "NoData"}[rule["noDataState"]]
    if not rows:
        return {frozenset(): no_data}
    out: dict[Labels, str] = {}
    for labels, points in long_to_wide(columns, rows).items():
        value = reduce_last_drop_nn(points)
        if value is None:
            out[labels] = no_data
        else:
            out[labels] = "Alerting" if predicate(value, params) else "Normal"
    return out
