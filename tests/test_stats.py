"""Every statistic of `lazarus.stats.effects` against an independent route: hand arithmetic,
textbook loops, exact enumeration of all labellings or resamples, or simulation with a known truth.
(scipy is not installed here, so there is no library oracle.)"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lazarus.stats import effects as stats


def textbook_d(first: np.ndarray, second: np.ndarray) -> float:
    pooled = ((first.size - 1) * first.var(ddof=1) + (second.size - 1) * second.var(ddof=1)) \
        / (first.size + second.size - 2)
    return float((first.mean() - second.mean()) / math.sqrt(pooled))


def textbook_eta(column: np.ndarray, codes: np.ndarray) -> float:
    grand = column.mean()
    between = sum((codes == g).sum() * (column[codes == g].mean() - grand) ** 2
                  for g in set(codes.tolist()))
    return float(between / ((column - grand) ** 2).sum())


def test_label_codes_keep_the_order_first_given():
    codes, names = stats.label_codes(["hard", "easy", "hard", "mid", "easy"])
    assert names == ("hard", "easy", "mid")
    assert codes.tolist() == [0, 1, 0, 2, 1]


def test_cohens_d_by_hand():
    # [2, 4, 6] mean 4, squares 4+0+4 = 8; [1, 3] mean 2, squares 1+1 = 2;
    # pooled variance 10 / (5 - 2) = 10/3; d = 2 / sqrt(10/3) = 1.0954451150103321
    values = np.array([[2.0], [4.0], [6.0], [1.0], [3.0]])
    codes = np.array([0, 0, 0, 1, 1])
    assert stats.cohens_d(values, codes)[0] == pytest.approx(2 / math.sqrt(10 / 3), abs=1e-12)
    assert stats.cohens_d(values, 1 - codes)[0] == pytest.approx(-2 / math.sqrt(10 / 3),
                                                                 abs=1e-12)


def test_cohens_d_matches_textbook_formula_on_random_data():
    rng = np.random.default_rng(0)
    codes = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1])
    values = rng.normal(size=(9, 6)) * 10
    got = stats.cohens_d(values, codes)
    for column in range(6):
        expected = textbook_d(values[codes == 0, column], values[codes == 1, column])
        assert got[column] == pytest.approx(expected, abs=1e-10)


def test_eta_squared_by_hand_and_as_r_squared():
    # groups [1,2,3], [4,5,6], [7,8,9]: means 2, 5, 8, grand mean 5;
    # between 3 * (9 + 0 + 9) = 54, total 16+9+4+1+0+1+4+9+16 = 60 -> 0.9
    values = np.arange(1.0, 10.0)[:, None]
    assert stats.eta_squared(values, np.repeat([0, 1, 2], 3))[0] == pytest.approx(0.9, abs=1e-12)
    rng = np.random.default_rng(1)
    codes = rng.permutation(np.repeat([0, 1], 7))
    column = rng.normal(size=14)
    r = np.corrcoef(column, codes)[0, 1]  # two labels: eta-squared is r squared
    assert stats.eta_squared(column[:, None], codes)[0] == pytest.approx(r**2, abs=1e-12)
    codes3 = rng.permutation(np.repeat([0, 1, 2], 5))
    column = rng.normal(size=15)
    assert stats.eta_squared(column[:, None], codes3)[0] == pytest.approx(
        textbook_eta(column, codes3), abs=1e-12)


def test_constant_column_has_no_effect():
    values = np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 5.0], [3.0, 4.0]])
    codes = np.array([0, 0, 1, 1])
    assert np.isnan(stats.eta_squared(values, codes)[0])
    assert np.isnan(stats.cohens_d(values, codes)[0])
    assert np.isfinite(stats.cohens_d(values, codes)[1])


def test_stratified_resamples_keep_each_label_within_itself():
    codes = np.array([1, 0, 1, 1, 0, 2, 2])
    resamples = stats.stratified_resamples(codes, 200, seed=0)
    assert resamples.shape == (200, 7)
    # every resample lists label 0's rows, then label 1's, then label 2's, as many as each has
    for row in resamples:
        assert codes[row].tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert len({tuple(row) for row in resamples.tolist()}) > 100  # really random


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    # 3 + 3 prompts: every stratified resample (27 x 27, equally likely) enumerated
    first, second = np.array([1.0, 2.5, 4.0]), np.array([-1.0, 0.5, 3.0])
    values = np.concatenate([first, second])[:, None]
    codes = np.array([0, 0, 0, 1, 1, 1])
    exact = []
    for a in itertools.product(first, repeat=3):
        for b in itertools.product(second, repeat=3):
            a_, b_ = np.array(a), np.array(b)
            pooled = (((a_ - a_.mean()) ** 2).sum() + ((b_ - b_.mean()) ** 2).sum()) / 4
            if pooled > 0:
                exact.append((a_.mean() - b_.mean()) / math.sqrt(pooled))
    exact = np.sort(exact)
    low, high = stats.bootstrap_interval(values, codes,
                                         stats.stratified_resamples(codes, 40000, seed=1))
    # the Monte Carlo quantile must sit where the exact distribution puts 2.5% / 97.5%
    assert np.mean(exact <= low[0]) == pytest.approx(0.025, abs=0.006)
    assert np.mean(exact >= high[0]) == pytest.approx(0.025, abs=0.006)


@pytest.mark.parametrize("effect", ["d", "eta"])
def test_bootstrap_intervals_cover_a_known_effect_about_95_percent(effect):
    # normal groups with known population effect; 400 draws: binomial sd of the coverage at
    # 0.95 is 0.011, and the percentile bootstrap runs slightly short at this size: 0.92..0.98
    rng = np.random.default_rng(11)
    if effect == "d":
        codes, shift, truth = np.repeat([0, 1], 50), np.repeat([1.0, 0.0], 50), 1.0
    else:  # means -0.6, 0, 0.6 of sd 1: between-variance 0.24, eta-squared 0.24 / 1.24
        codes, shift = np.repeat([0, 1, 2], 50), np.repeat([-0.6, 0.0, 0.6], 50)
        truth = 0.24 / 1.24
    covered = 0
    draws = 400
    for draw in range(draws):
        values = (rng.normal(size=codes.size) + shift)[:, None]
        low, high = stats.bootstrap_interval(values, codes,
                                             stats.stratified_resamples(codes, 1000, draw))
        covered += int(low[0] <= truth <= high[0])
    assert 0.92 <= covered / draws <= 0.98


def test_correlation_interval_textbook_value_and_coverage():
    # r = 0.5 from 28 pairs: z = atanh(0.5) = 0.5493, se = 1/5; 0.5493 -+ 0.392 -> tanh:
    # (0.156, 0.736), the interval tabulated in textbooks for this case
    low, high = stats.correlation_interval(0.5, 28)
    assert (round(low, 3), round(high, 3)) == (0.156, 0.736)
    assert stats.correlation_interval(0.5, 3) is None
    assert stats.correlation_interval(None, 30) is None
    # bivariate normal with rho = 0.4, n = 30: about 95% of the intervals hold rho
    rng = np.random.default_rng(4)
    rho, covered, draws = 0.4, 0, 2000
    for _ in range(draws):
        x = rng.normal(size=30)
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=30)
        low, high = stats.correlation_interval(float(np.corrcoef(x, y)[0, 1]), 30)
        covered += int(low <= rho <= high)
    assert 0.93 <= covered / draws <= 0.97  # binomial sd 0.005
