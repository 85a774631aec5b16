"""Intervals: Wilson and Newcombe against published values and their defining equations, the
bootstrap against the normal theory of a mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowllm_kit.evaluate.intervals import (
    Estimate,
    bootstrap_estimate,
    difference,
    format_estimate,
    rate_difference,
    rate_estimate,
    wilson_interval,
)
from flowllm_kit.evaluate.properties import wasserstein

Z95 = 1.959963984540054


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_published_values(k, n, low, high) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=6e-5)


@pytest.mark.parametrize(("k", "n"), [(3, 10), (17, 48), (1, 1000), (47, 48)])
def test_wilson_bounds_solve_the_score_equation(k, n) -> None:
    """At each bound p, the score statistic (k/n - p) / sqrt(p (1 - p) / n) is exactly ±z."""
    for p, sign in zip(wilson_interval(k, n), (1, -1), strict=True):
        score = (k / n - p) / math.sqrt(p * (1 - p) / n)
        assert score == pytest.approx(sign * Z95, rel=1e-9)


def test_wilson_edges_and_bad_counts() -> None:
    assert wilson_interval(0, 48)[0] == 0.0 and wilson_interval(48, 48)[1] == 1.0
    assert all(math.isnan(b) for b in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="k = 5 successes out of n = 3"):
        wilson_interval(5, 3)


def test_rate_estimate_counts_and_min_count() -> None:
    flags = [True] * 12 + [False] * 36
    rate = rate_estimate(flags, min_count=10)
    assert (rate.value, rate.n, rate.k, rate.method) == (25.0, 48, 12, "wilson")
    assert (rate.low, rate.high) == pytest.approx([100 * b for b in wilson_interval(12, 48)])
    too_few = rate_estimate([True, False], min_count=10)
    assert math.isnan(too_few.value) and too_few.n == 2


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10
        ((56, 70), (48, 80), 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.1705, 0.8090),
    ],
)
def test_rate_difference_matches_newcombe(a, b, low, high) -> None:
    first = rate_estimate([True] * a[0] + [False] * (a[1] - a[0]))
    second = rate_estimate([True] * b[0] + [False] * (b[1] - b[0]))
    diff = rate_difference(first, second)
    assert diff.value == pytest.approx(100 * (a[0] / a[1] - b[0] / b[1]))
    assert (diff.low, diff.high) == pytest.approx((100 * low, 100 * high), abs=6e-3)
    flipped = rate_difference(second, first)  # antisymmetric
    assert (flipped.low, flipped.high) == pytest.approx((-diff.high, -diff.low))


def test_rate_difference_needs_rates() -> None:
    with pytest.raises(ValueError, match="two rates"):
        rate_difference(Estimate(1.0), Estimate(2.0))


def test_difference_of_rates_is_newcombe_and_of_other_metrics_combines_bounds() -> None:
    a, b = rate_estimate([True] * 56 + [False] * 14), rate_estimate([True] * 48 + [False] * 32)
    assert difference(a, b) == rate_difference(a, b)
    # Symmetric intervals: half-widths add in quadrature; asymmetric ones keep their sides.
    d = difference(Estimate(1.0, 0.7, 1.3, n=10), Estimate(0.5, 0.1, 0.9, n=20))
    assert d.method == "mover" and d.n == 30 and d.value == pytest.approx(0.5)
    assert (d.low, d.high) == pytest.approx((0.5 - 0.5, 0.5 + 0.5))
    skew = difference(Estimate(2.0, 1.0, 2.5, n=5), Estimate(1.0, 0.8, 1.6, n=5))
    expected = (1.0 - math.hypot(1.0, 0.6), 1.0 + math.hypot(0.5, 0.2))
    assert (skew.low, skew.high) == pytest.approx(expected)
    assert math.isnan(difference(Estimate(1.0, n=3), Estimate(0.5, 0.1, 0.9, n=3)).low)


def test_bootstrap_of_a_mean_agrees_with_normal_theory() -> None:
    values = np.random.default_rng(1).normal(3.0, 2.0, size=400)
    est = bootstrap_estimate(np.mean, values, seed=0)
    half = Z95 * values.std(ddof=1) / math.sqrt(len(values))
    assert est.value == pytest.approx(values.mean())
    assert est.low == pytest.approx(values.mean() - half, abs=0.15 * half)
    assert est.high == pytest.approx(values.mean() + half, abs=0.15 * half)
    again = bootstrap_estimate(np.mean, values, seed=0)
    assert (again.low, again.high) == (est.low, est.high)  # seeded: the same bounds


def test_normal_bootstrap_of_a_mean_is_value_plus_minus_z_standard_errors() -> None:
    values = np.random.default_rng(2).normal(3.0, 2.0, size=400)
    est = bootstrap_estimate(np.mean, values, seed=0, interval="normal")
    half = Z95 * values.std(ddof=1) / math.sqrt(len(values))
    assert est.method == "bootstrap-normal"
    assert est.high - est.value == pytest.approx(est.value - est.low)  # symmetric about the value
    assert est.high - est.value == pytest.approx(half, rel=0.15)
    with pytest.raises(ValueError, match="interval="):
        bootstrap_estimate(np.mean, values, interval="bca")


def test_wasserstein_interval_holds_its_value_where_the_percentile_one_does_not() -> None:
    # A sample from the reference's own distribution: resamples repeat some values and drop
    # others, so their distances to the reference sit above the sample's.
    rng = np.random.default_rng(3)
    reference, sample = rng.normal(size=2000), rng.normal(size=15)
    percentile = bootstrap_estimate(wasserstein, sample, fixed=[reference], seed=0)
    normal = bootstrap_estimate(
        wasserstein, sample, fixed=[reference], seed=0, interval="normal", floor=0.0
    )
    assert percentile.low > percentile.value  # the bias the normal interval is chosen for
    assert normal.low <= normal.value <= normal.high and normal.low >= 0.0


def test_bootstrap_resamples_arrays_together_and_keeps_fixed_ones() -> None:
    x = np.arange(50.0)
    seen = []

    def paired(a: np.ndarray, b: np.ndarray, offset: float) -> float:
        seen.append(np.array_equal(a + offset, b))
        return float(np.mean(b - a))

    est = bootstrap_estimate(paired, x, x + 7.0, fixed=[7.0], resamples=20)
    assert all(seen) and est.value == est.low == est.high == pytest.approx(7.0)
    assert math.isnan(bootstrap_estimate(np.mean, x[:3], min_count=5).value)
    with pytest.raises(ValueError, match="different lengths"):
        bootstrap_estimate(paired, x, x[:3], fixed=[0.0])


def test_format_and_json_round_trip() -> None:
    est = Estimate(12.5, 8.07, 18.71, n=48, k=6, method="wilson")
    assert format_estimate(est) == "12.5 [8.07, 18.7]"
    assert f"{est:.1f}" == "12.5 [8.1, 18.7]"
    assert format_estimate(Estimate(math.nan, n=3)) == "n/c"
    assert format_estimate(Estimate(2.0)) == "2"
    assert Estimate.from_dict(est.as_dict()) == est
    blank = Estimate(math.nan, n=3).as_dict()
    assert blank["value"] is None and blank["low"] is None
    back = Estimate.from_dict(blank)
    assert math.isnan(back.value) and back.n == 3
