"""What a rule decides on an observation, in one place for the evaluator and the Grafana export.

The query computes `decide` (`queries.COLUMNS`): the value itself without a test, else what the
test leaves of it. This module compares it with the threshold or band, names the instance, and
words the figure for the audit trail and notifications.

Direction of harm is explicit: a disparity rule pages when a group is worse off than the
reference group (`Rule.harm`, by default the indicator's direction); the reference group worse off
is labelled in the audit trail and not paged, unless `page_reference_worse`.
"""

from __future__ import annotations

from typing import Any, Final

from clinotel.alerts.queries import Observation
from clinotel.alerts.rules import Comparison, Kind, Rule, Test, duration_text

__all__ = [
    "GRAFANA_THRESHOLD",
    "breaches",
    "criterion",
    "describe",
    "grafana_threshold",
    "instance_labels",
    "reference_worse_off",
]

_SYMBOL: Final = {Comparison.GT: ">", Comparison.GE: ">=", Comparison.LT: "<", Comparison.LE: "<="}

GRAFANA_THRESHOLD: Final = {Comparison.GT: "gt", Comparison.GE: "gte", Comparison.LT: "lt", Comparison.LE: "lte"}
"""Each comparison as Grafana's threshold type (grafana/grafana pkg/expr/threshold.go)."""


def instance_labels(rule: Rule, o: Observation) -> dict[str, str]:
    """An instance's labels: tenant and kind; a disparity rule's rollout cohort, model version and
    group (under its dimension's name); an sdk rule's service. Empty values are left out."""
    labels = {"tenant": o.tenant, "kind": o.kind} if o.tenant or o.kind else {}
    if o.cohort:
        labels["cohort"] = o.cohort
    if o.version:
        labels["model_version"] = o.version
    if o.group:
        labels[rule.group_label] = o.group
    return labels


def breaches(rule: Rule, decide: float, threshold: float) -> bool:
    """The rule fires on `decide` (the query's column of that name)."""
    if rule.kind is Kind.DISPARITY:
        low, high = rule.band
        if rule.page_reference_worse:
            return not low <= decide <= high
        return decide > high if rule.harm_is_higher else decide < low
    return rule.comparison.holds(decide, threshold)


def grafana_threshold(rule: Rule, threshold: float) -> dict[str, Any]:
    """`breaches` as Grafana's threshold expression (band edges stay inside, as above)."""
    if rule.kind is Kind.DISPARITY:
        low, high = rule.band
        if rule.page_reference_worse:
            return {"type": "outside_range", "params": [low, high]}
        return {"type": "gt", "params": [high]} if rule.harm_is_higher else {"type": "lt", "params": [low]}
    return {"type": GRAFANA_THRESHOLD[rule.comparison], "params": [threshold]}


def reference_worse_off(rule: Rule, o: Observation) -> bool:
    """A disparity instance whose reference group is the one worse off: the value outside the band
    on the side that is not harm and, with a test, the interval excluding 1 there."""
    if o.value is None:
        return False
    low, high = rule.band
    if rule.harm_is_higher:
        outside, significant = o.value < low, o.high is not None and o.high < 1
    else:
        outside, significant = o.value > high, o.low is not None and o.low > 1
    return outside and (significant or rule.decided_by is Test.NONE)


def describe(rule: Rule, o: Observation, threshold: float | None = None) -> str:
    """The observation in words: `1.82 (95% 1.31–2.53, score) vs 1.5`."""
    text = "no value" if o.value is None else f"{o.value:.4g}"
    test = rule.decided_by
    if test is not Test.NONE and o.low is not None and o.high is not None:
        text += f" ({rule.confidence * 100:g}% {o.low:.3g}–{o.high:.3g}, {test.value})"
    if threshold is not None:
        if rule.kind is Kind.DISPARITY:
            text += f" vs band {_number(rule.band[0])}–{_number(rule.band[1])}"
        else:
            text += f" vs {_number(threshold)}"
    return text


def criterion(rule: Rule, threshold: float, min_sample: int) -> str:
    """What makes the rule fire, in words, for the person paged: `escalation_miss_rate > 0.05 over
    1h (at least 30 in the sample)`; a ratio rule names what it divides."""
    window = duration_text(rule.window)
    if rule.kind is Kind.DISPARITY:
        low, high = rule.band
        if rule.page_reference_worse:
            limit = f"outside {_number(low)}–{_number(high)}"
        else:
            limit = f"> {_number(high)}" if rule.harm_is_higher else f"< {_number(low)}"
        text = f"{rule.metric} of a {rule.group_label} group ÷ the reference group's {limit} over {window}"
    else:
        limit = f"{_SYMBOL[rule.comparison]} {_number(threshold)}"
        baseline = duration_text(rule.baseline_window or rule.window)
        if rule.kind is Kind.BASELINE:
            text = f"{rule.metric} over {window} ÷ the {baseline} before it {limit}"
        elif rule.kind is Kind.DRIFT:
            text = f"{rule.metric} of {window} against the {baseline} before it {limit}"
        elif rule.kind is Kind.CANARY:
            text = f"{rule.metric} of the canary ÷ the baseline cohort's {limit} over {window}"
        else:
            text = f"{rule.metric} {limit} over {window}"
    if rule.decided_by is not Test.NONE:
        text += f", shown at {rule.confidence * 100:g}% confidence ({rule.decided_by.value} test)"
    return f"{text} (at least {min_sample:,} in the sample)" if min_sample > 1 else text


def _number(x: float) -> str:
    """A threshold as a person reads it: `3,600,000`, `0.15`."""
    return f"{int(x):,}" if x.is_integer() and abs(x) < 1e15 else f"{x:g}"
