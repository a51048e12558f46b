"""Every statistic of `lazarus.stats.effects` against an independent route: hand arithmetic,
textbook loops, exact enumeration of all labellings, or simulation with a known truth. (scipy is
not installed here, so there is no library oracle; the intervals are in test_intervals.py.)"""

from __future__ import annotations

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


