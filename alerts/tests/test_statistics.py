"""The tests the rules decide with (`clinotel.model.stats`): the Wilson interval equals SciPy's,
the SQL equals the Python on the engine, the ratio interval covers as stated, and the confidence
sequence keeps its error rate when looked at again and again, where a fixed-sample interval
looked at as often does not."""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import pytest

from clinotel.model.stats import (
    DISPARITY_CAP,
    KILL_SHARE_OF_MIXTURE,
    filled_ratio,
    filled_ratio_sql,
    kill_sequence,
    kill_sequence_columns,
    proportion_grid_sql,
    proportion_sequence,
    ratio_interval,
    ratio_interval_columns,
    ratio_sequence,
    stacked,
    wilson,
    wilson_sql,
    z_value,
)

CASES = [(0, 10), (1, 10), (3, 32), (5, 30), (30, 30), (7, 400), (120, 1000), (0, 1), (1, 1)]


def test_wilson_equals_scipys_score_interval() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy.stats import binomtest
    for x, n in CASES:
        for confidence in (0.9, 0.95, 0.99):
            ours = wilson(x, n, confidence)
            assert ours is not None
            theirs = binomtest(x, n).proportion_ci(confidence_level=confidence, method="wilson")
            assert ours.low == pytest.approx(theirs.low, abs=1e-12)
            assert ours.high == pytest.approx(theirs.high, abs=1e-12)
    assert wilson(0, 0, 0.95) is None
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)


def _scipy_wilson(x: int, n: int, confidence: float) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy.stats import binomtest
    ci = binomtest(x, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"), [(3, 32, 28, 400), (18, 60, 12, 200), (1, 80, 80, 400), (30, 30, 5, 9)]
)
def test_the_ratio_interval_is_mover_r_in_its_published_form(x1: int, n1: int, x2: int, n2: int) -> None:
    """Donner and Zou's (2012) MOVER-R limits, written as published (the root with the minus sign
    for the lower limit), from SciPy's Wilson intervals, against ours."""
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = _scipy_wilson(x1, n1, 0.95), _scipy_wilson(x2, n2, 0.95)
    low = (p1 * p2 - math.sqrt((p1 * p2) ** 2 - l1 * (2 * p1 - l1) * u2 * (2 * p2 - u2))) / (u2 * (2 * p2 - u2))
    high = (p1 * p2 + math.sqrt((p1 * p2) ** 2 - u1 * (2 * p1 - u1) * l2 * (2 * p2 - l2))) / (l2 * (2 * p2 - l2))
    ours = ratio_interval(x1, n1, x2, n2, 0.95)
    assert ours is not None
    assert ours.low == pytest.approx(low, rel=1e-9)
    assert ours.high == pytest.approx(high, rel=1e-9)
    assert ours.low < p1 / p2 < ours.high


@pytest.mark.parametrize(("x1", "n1", "x2", "n2", "tau"), [(47, 432, 120, 2000, math.log(1.5)), (3, 32, 28, 400, 0.5)])
def test_the_sequence_ends_where_the_mixture_likelihood_ratio_reaches_one_over_alpha(
    x1: int, n1: int, x2: int, n2: int, tau: float
) -> None:
    """The confidence sequence is the set of log ratios θ0 whose normal-mixture likelihood ratio
    (the estimate's normal likelihood, the effect mixed over N(θ0, τ²)) stays under 1/α. Each end
    of ours, integrated numerically with SciPy, gives exactly 1/α."""
    from scipy import integrate, stats

    p1, p2 = (x1 + 0.5) / (n1 + 1), (x2 + 0.5) / (n2 + 1)
    estimate = math.log(p1 / p2)
    sd = math.sqrt((1 - p1) / ((n1 + 1) * p1) + (1 - p2) / ((n2 + 1) * p2))

    def mixture_lr(theta0: float) -> float:
        def integrand(delta: float) -> float:
            lr = stats.norm.pdf(estimate, theta0 + delta, sd) / stats.norm.pdf(estimate, theta0, sd)
            return float(lr * stats.norm.pdf(delta, 0, tau))

        return float(integrate.quad(integrand, -12 * tau, 12 * tau, epsabs=0, epsrel=1e-11, limit=200)[0])

    ours = ratio_sequence(x1, n1, x2, n2, 0.95, tau)
    assert ours is not None
    for end in (ours.low, ours.high):
        assert mixture_lr(math.log(end)) == pytest.approx(1 / 0.05, rel=1e-6)
    assert mixture_lr(estimate) < 1 / 0.05


@pytest.mark.parametrize("confidence", [0.5, 0.95, 0.999])
def test_z_value_takes_only_a_confidence_level(confidence: float) -> None:
    assert z_value(confidence) >= 0
    for bad in (1.0, 1.5, 0.2, -0.95):
        with pytest.raises(ValueError, match="confidence"):
            z_value(bad)


def test_the_sql_is_the_python(client: Any) -> None:
    pairs = [(x1, n1, x2, n2) for x1, n1 in CASES for x2, n2 in CASES[::2]] + [(0, 0, 3, 10), (3, 10, 0, 0)]
    for confidence in (0.9, 0.95):
        wl, wh = wilson_sql("x1", "n1", confidence)
        values = ", ".join(f"({x1}, {n1}, {x2}, {n2})" for x1, n1, x2, n2 in pairs)
        parts, ends = ratio_interval_columns("c", "x1", "n1", "x2", "n2", confidence)
        rows = client.query(
            f"SELECT *, {ends} FROM (SELECT x1, n1, x2, n2, {wl}, {wh}, {parts} "
            f"FROM values('x1 UInt64, n1 UInt64, x2 UInt64, n2 UInt64', {values}))"
        ).named_results()
        for row in rows:
            x1, n1, x2, n2 = row["x1"], row["n1"], row["x2"], row["n2"]
            w, r = wilson(x1, n1, confidence), ratio_interval(x1, n1, x2, n2, confidence)
            got = list(row.values())
            _same(got[4:6], None if w is None else (w.low, w.high))
            _same([row["c_low"], row["c_high"]], None if r is None else (r.low, r.high))


def _same(got: list[Any], want: tuple[float, float] | None) -> None:
    if want is None:
        assert got == [None, None]
        return
    for g, w in zip(got, want, strict=True):
        if math.isinf(w):
            assert g is not None
            assert math.isinf(g)
        else:
            assert g == pytest.approx(w, rel=1e-9, abs=1e-12)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


@pytest.mark.parametrize(("p1", "n1", "p2", "n2"), [(0.07, 60, 0.07, 400), (0.3, 40, 0.06, 200), (0.5, 30, 0.4, 30)])
def test_the_ratio_interval_covers_as_stated(p1: float, n1: int, p2: float, n2: int) -> None:
    """Each side of a 95 % interval misses the true ratio about 2.5 % of the time (4 % at most
    here, with 2,000 seeded draws; MOVER-R Wilson is close to nominal, a little liberal in small
    samples)."""
    rng = random.Random(f"{p1}:{n1}:{p2}:{n2}")
    truth, low_misses, high_misses, draws = p1 / p2, 0, 0, 2000
    for _ in range(draws):
        interval = ratio_interval(_binomial(rng, n1, p1), n1, _binomial(rng, n2, p2), n2, 0.95)
        assert interval is not None
        low_misses += interval.low > truth
        high_misses += interval.high < truth
    assert low_misses / draws < 0.04
    assert high_misses / draws < 0.04


def test_a_sequence_looked_at_every_time_keeps_its_error_rate_where_a_fixed_interval_does_not() -> None:
    """A canary with no difference (both 8 %), looked at after every 20 new rows on each side up to
    2,000: how often does the test ever say 'the canary is worse'? The confidence sequence stays
    under its 2.5 % one-sided error; the fixed-sample interval, asked as often, says it far more."""
    rng = random.Random(15)
    p, step, looks, trials = 0.08, 20, 100, 300
    sequential = fixed = 0
    for _ in range(trials):
        x1 = n1 = x2 = n2 = 0
        said_seq = said_fixed = False
        for _ in range(looks):
            x1 += _binomial(rng, step, p)
            x2 += _binomial(rng, step, p)
            n1 += step
            n2 += step
            s = ratio_sequence(x1, n1, x2, n2, 0.95, math.log(1.5))
            f = ratio_interval(x1, n1, x2, n2, 0.95)
            assert s is not None
            assert f is not None
            said_seq |= s.low > 1
            said_fixed |= f.low > 1
        sequential += said_seq
        fixed += said_fixed
    assert sequential / trials <= 0.025
    assert fixed / trials > 3 * max(sequential / trials, 0.01), (fixed, sequential)


def test_the_kill_sequence_sql_is_the_python(client: Any) -> None:
    """The layered SQL (`kill_sequence_columns`, `tau` an SQL column as the rollout panel passes it)
    against the Python: the interval, each rate's own sequence and the log-ratio sequence."""
    pairs = [(x1, n1, x2, n2) for x1, n1 in CASES for x2, n2 in CASES[::2]] + [(0, 0, 3, 10), (3, 10, 0, 0)]
    pairs += [(20, 100, 0, 200), (20, 100, 1, 200), (45, 150, 40, 400), (200, 200, 0, 200)]
    values = ", ".join(f"({x1}, {n1}, {x2}, {n2})" for x1, n1, x2, n2 in pairs)
    tau, confidence = math.log(1.5), 0.95
    alpha = 1 - confidence
    rest, mixture = (1 - KILL_SHARE_OF_MIXTURE) * alpha / 2, 1 - KILL_SHARE_OF_MIXTURE * alpha
    layered = stacked(
        f"SELECT x1, n1, x2, n2, {proportion_grid_sql()} AS grid, {tau!r} AS tau "
        f"FROM values('x1 UInt64, n1 UInt64, x2 UInt64, n2 UInt64', {values})",
        kill_sequence_columns("k", "x1", "n1", "x2", "n2", confidence, "tau", "grid"),
    )
    rows = client.query(
        "SELECT x1, n1, x2, n2, k_low, k_high, k_l1, k_u1, k_l2, k_u2, "
        "if(n1 > 0 AND n2 > 0, exp(log(k_q1 / k_q2) - k_half), NULL), "
        f"if(n1 > 0 AND n2 > 0, exp(log(k_q1 / k_q2) + k_half), NULL) FROM ({layered})"
    ).result_rows
    assert len(rows) == len(pairs)
    for x1, n1, x2, n2, *got in rows:
        k = kill_sequence(x1, n1, x2, n2, confidence, tau)
        one, two = proportion_sequence(x1, n1, rest), proportion_sequence(x2, n2, rest)
        m = ratio_sequence(x1, n1, x2, n2, mixture, tau)
        _same(got[:2], None if k is None else (k.low, k.high))
        _same(got[2:4], None if one is None else (one.low, one.high))
        _same(got[4:6], None if two is None else (two.low, two.high))
        _same(got[6:], None if m is None else (m.low, m.high))


@pytest.mark.parametrize(("x", "n"), [(0, 200), (1, 200), (20, 100), (100, 100), (7, 400), (500, 1000)])
def test_a_rates_sequence_holds_the_rates_whose_mixture_ratio_is_under_one_over_alpha(x: int, n: int) -> None:
    """Robbins' mixture: B(x+1, n-x+1) / (p^x (1-p)^(n-x)) < 1/alpha inside, taken one grid point
    outwards at each end (never tighter than the exact set)."""
    alpha = 0.005
    s = proportion_sequence(x, n, alpha)
    assert s is not None
    assert s.low <= x / n <= s.high

    def ratio(p: float) -> float:
        log_b = math.lgamma(x + 1) + math.lgamma(n - x + 1) - math.lgamma(n + 2)
        return math.exp(log_b - x * math.log(p) - (n - x) * math.log1p(-p))

    if s.low > 0:
        assert ratio(s.low) >= 1 / alpha
        assert ratio(s.low * 1.03) < 1 / alpha, "the end is one grid point out, not more"
    if s.high < 1:
        assert ratio(s.high) >= 1 / alpha
        assert ratio(1 - (1 - s.high) * 1.03 if s.high > 0.5 else s.high / 1.03) < 1 / alpha


def test_the_kill_sequence_looked_at_every_time_keeps_its_error_rate() -> None:
    """As the log-ratio sequence's test above, for the kill criterion's interval: no difference
    (both 8 %, and both rare at 0.5 %), looked at after every 20 rows on each side up to 2,000."""
    rng = random.Random(16)
    for p in (0.08, 0.005):
        said, trials = 0, 200
        for _ in range(trials):
            x1 = n1 = x2 = n2 = 0
            for _ in range(100):
                x1 += _binomial(rng, 20, p)
                x2 += _binomial(rng, 20, p)
                n1 += 20
                n2 += 20
                s = kill_sequence(x1, n1, x2, n2, 0.95, math.log(1.5))
                assert s is not None
                if s.low > 1:
                    said += 1
                    break
        assert said / trials <= 0.025, (p, said)


def test_a_filled_ratio_is_capped_where_its_reference_is_zero(client: Any) -> None:
    cases = [(0.2, 0.1), (0.2, 0.0), (0.0, 0.0), (0.0, 0.1), (None, 0.1), (0.1, None), (math.nan, 0.1)]
    assert [filled_ratio(a, b) for a, b in cases] == [2.0, DISPARITY_CAP, 1.0, 0.0, None, None, None]

    def sql(v: float | None) -> str:
        return "CAST(NULL, 'Nullable(Float64)')" if v is None else ("nan" if math.isnan(v) else repr(v))

    got = [client.query(f"SELECT {filled_ratio_sql(sql(a), sql(b))}").result_rows[0][0] for a, b in cases]
    assert got == [2.0, DISPARITY_CAP, 1.0, 0.0, None, None, None]
