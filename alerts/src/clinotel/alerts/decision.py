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
from clinotel.alerts.rules import Comparison, Kind, Rule, Test

__all__ = ["GRAFANA_THRESHOLD", "breaches", "describe", "grafana_threshold", "instance_labels", "reference_worse_off"]

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
            text += f" vs band {rule.band[0]:g}–{rule.band[1]:g}"
        else:
            text += f" vs {threshold:g}"
    return text
