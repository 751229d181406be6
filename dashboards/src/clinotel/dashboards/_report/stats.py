"""Confidence intervals for the report's rates and ratios, computed by the report itself.

- a rate x/n: the Wilson score interval (Wilson 1927), which stays inside 0..1 and behaves with
  few events, unlike the normal approximation;
- the ratio of two independent rates (a group against its reference, the canary against the
  baseline): the MOVER-R interval built from the two Wilson intervals (Donner and Zou 2012,
  "Closed-form confidence intervals for functions of the normal mean and standard deviation";
  for proportions Li, Tang and Wong 2014), which needs no event in either group to exist.

Both at 95 % unless asked otherwise. The alert rules decide with their own test; these intervals
describe how sure the report's figures are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

__all__ = ["CONFIDENCE", "Interval", "ratio_interval", "wilson", "z_of"]

CONFIDENCE: Final = 0.95


def z_of(confidence: float) -> float:
    """The two-sided normal quantile of `confidence` (1.96 for 95 %)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def wilson(hits: int, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """The Wilson score interval of the rate hits/n; None without a sample."""
    if n <= 0:
        return None
    if not 0 <= hits <= n:
        raise ValueError(f"hits must be between 0 and n ({n}), not {hits}")
    z = z_of(confidence)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at 0 and n the interval touches the bound exactly (rounding would leave it a hair off)
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return Interval(p, low, high)


def ratio_interval(hits1: int, n1: int, hits2: int, n2: int, confidence: float = CONFIDENCE) -> Interval | None:
    """The MOVER-R interval of (hits1/n1) ÷ (hits2/n2) for independent groups; None when a group
    is empty or the second rate is 0 (no ratio to speak of). The upper limit is infinite when
    the second rate's interval reaches 0."""
    a, b = wilson(hits1, n1, confidence), wilson(hits2, n2, confidence)
    if a is None or b is None or hits2 == 0:
        return None
    p1, l1, u1 = a.estimate, a.low, a.high
    p2, l2, u2 = b.estimate, b.low, b.high
    product = p1 * p2
    low_root = product * product - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2)
    low_den = u2 * (2 * p2 - u2)
    low = (product - math.sqrt(max(0.0, low_root))) / low_den if low_den > 0 else 0.0
    high_root = product * product - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2)
    high_den = l2 * (2 * p2 - l2)
    high = (product + math.sqrt(max(0.0, high_root))) / high_den if high_den > 0 else math.inf
    return Interval(p1 / p2, max(0.0, low), high)
