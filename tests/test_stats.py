"""Intervals, paired differences, verdicts and seed aggregates (`ponder.stats`), against hand-computed
cases and simulated binomials."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.stats import across_seeds, bootstrap_means, interval, paired, percentile_interval, t_quantile, verdict


def test_bootstrap_of_two_values_matches_the_hand_computed_distribution():
    # resampling [0, 1] twice gives means 0, 0.5, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    means = bootstrap_means([0.0, 1.0], seed=0, resamples=20000)
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert abs((means == 0.0).mean() - 0.25) < 0.015
    assert abs((means == 0.5).mean() - 0.50) < 0.015
    iv = interval([0.0, 1.0], seed=0, resamples=20000)
    assert iv == {"mean": 0.5, "lo": 0.0, "hi": 1.0, "n": 2}


def test_interval_of_a_constant_is_the_constant():
    assert interval([1.0] * 50, seed=3) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 50}


def test_interval_width_matches_the_normal_approximation():
    # 1,000 problems at 70%: the standard error is sqrt(.7*.3/1000) = 1.449 points, the 95% half-width 2.84
    values = [1.0] * 700 + [0.0] * 300
    iv = interval(values, seed=1)
    assert iv["mean"] == pytest.approx(0.7)
    assert (iv["hi"] - iv["lo"]) / 2 == pytest.approx(1.96 * math.sqrt(0.7 * 0.3 / 1000), abs=0.003)


def test_interval_is_seeded():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5]
    assert interval(values, seed=7) == interval(values, seed=7)
    assert interval(values, seed=7) != interval(values, seed=8)


def test_bootstrap_interval_covers_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(123)
    p, n, trials = 0.6, 200, 400
    covered = 0
    for t in range(trials):
        draws = (rng.random(n) < p).astype(float)
        iv = interval(draws, seed=t, resamples=1000)
        covered += iv["lo"] <= p <= iv["hi"]
    # binomial(400, 0.95) has sd 4.4: 0.90-0.99 is a wide but falsifiable band
    assert 0.90 <= covered / trials <= 0.99


def test_empty_values_have_no_interval():
    assert interval([], seed=0) == {"mean": None, "lo": None, "hi": None, "n": 0}
    assert paired([], [], seed=0)["diff"] is None


def test_non_finite_or_nested_values_are_refused():
    with pytest.raises(ValueError, match="finite"):
        interval([1.0, float("nan")], seed=0)
    with pytest.raises(ValueError, match="flat"):
        interval([[1.0, 0.0]], seed=0)


def test_paired_difference_of_identical_methods_is_exactly_zero():
    a = [1.0, 0.0, 1.0, 0.0, 1.0]
    assert paired(a, a, seed=0) == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "n": 5}


def test_paired_difference_is_narrower_than_the_unpaired_intervals_suggest():
    # B solves what A solves plus 30 more of 1,000: a 3-point gain, hidden by the unpaired intervals
    rng = np.random.default_rng(0)
    a = (rng.random(1000) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:30]] = 1.0
    d = paired(b, a, seed=0)
    assert d["diff"] == pytest.approx(0.03)
    assert d["lo"] > 0  # decided when paired
    ia, ib = interval(a, seed=0), interval(b, seed=1)
    assert ib["lo"] < ia["hi"]  # the separate intervals overlap


def test_paired_needs_the_same_problems():
    with pytest.raises(ValueError, match="different problem sets"):
        paired([1.0, 0.0], [1.0], seed=0)


def test_paired_difference_has_the_sign_of_a_minus_b():
    d = paired([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0], seed=0)
    assert d["diff"] == pytest.approx(0.5)
    assert d["lo"] >= 0 and d["hi"] <= 1


@pytest.mark.parametrize("lo,hi,direction,expected", [
    (0.01, 0.05, 1, "holds"),
    (-0.05, -0.01, 1, "contradicted"),
    (-0.01, 0.03, 1, "within noise"),
    (0.0, 0.03, 1, "within noise"),   # touching zero is not outside it
    (-0.05, -0.01, -1, "holds"),      # the claim says the effect is negative
    (0.01, 0.05, -1, "contradicted"),
    (-0.02, 0.02, -1, "within noise"),
    (None, None, 1, "not measured"),
    (float("nan"), 0.1, 1, "not measured"),
])
def test_verdict_rules(lo, hi, direction, expected):
    assert verdict(lo, hi, direction) == expected


def test_verdict_refuses_a_bad_direction_or_interval():
    with pytest.raises(ValueError, match="direction"):
        verdict(0.1, 0.2, 0)
    with pytest.raises(ValueError, match="lo > hi"):
        verdict(0.2, 0.1)


def test_percentile_interval_of_a_known_sample():
    lo, hi = percentile_interval(np.arange(1001, dtype=float))
    assert (lo, hi) == (pytest.approx(25.0), pytest.approx(975.0))


def test_across_seeds_by_hand():
    agg = across_seeds([0.80, 0.84, 0.82])
    assert agg["mean"] == pytest.approx(0.82)
    assert agg["sd"] == pytest.approx(0.02)
    assert agg["spread"] == pytest.approx(0.04)
    assert (agg["min"], agg["max"], agg["seeds"]) == (0.80, 0.84, 3)
    half = 4.303 * 0.02 / math.sqrt(3)
    assert agg["lo"] == pytest.approx(0.82 - half) and agg["hi"] == pytest.approx(0.82 + half)
    assert agg["values"] == [0.80, 0.84, 0.82]


def test_across_seeds_with_one_seed_or_missing_values():
    one = across_seeds([0.5])
    assert one["mean"] == 0.5 and one["sd"] is None and one["lo"] is None
    some = across_seeds([0.5, None, 0.7])
    assert some["seeds"] == 2 and some["mean"] == pytest.approx(0.6)
    assert across_seeds([None])["mean"] is None


def test_t_quantiles():
    assert t_quantile(1) == 12.706 and t_quantile(2) == 4.303 and t_quantile(100) == 1.96
    with pytest.raises(ValueError):
        t_quantile(0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=60), st.integers(0, 2**32))
def test_interval_always_brackets_the_mean_within_the_range(values, seed):
    iv = interval(values, seed=seed, resamples=200)
    assert min(values) <= iv["lo"] <= iv["mean"] <= iv["hi"] <= max(values)
