"""The exact intervals of `lazarus.stats.intervals`: their distribution functions against closed
forms, each other and numpy's samplers, and their coverage by seeded simulation with a known
truth, at the prompt counts people use (scipy is not installed: there is no library oracle)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lazarus.stats import discover, intervals

# 1000 draws at a true coverage of 0.95: binomial sd 0.0069, so 0.93..0.97 is 2.9 sd each side
DRAWS = 1000
LOW, HIGH = 0.93, 0.97


def sampled_nct(rng: np.random.Generator, df: int, nc: float, size: int) -> np.ndarray:
    return (rng.normal(size=size) + nc) / np.sqrt(rng.chisquare(df, size=size) / df)


def test_noncentral_t_against_closed_forms_and_the_noncentral_f():
    t = np.array([-40.0, -3.0, -1.0, 0.0, 0.5, 2.0, 10.0, 100.0])
    # central t: Cauchy for 1 degree of freedom, 1/2 + t / (2 sqrt(2 + t^2)) for 2
    assert intervals.nct_cdf(t, 1, 0.0) == pytest.approx(0.5 + np.arctan(t) / math.pi, abs=1e-7)
    assert intervals.nct_cdf(t, 2, 0.0) == pytest.approx(0.5 + t / (2 * np.sqrt(2 + t * t)),
                                                         abs=1e-7)
    # |T| <= t  <=>  T^2 <= t^2, and T^2 is F(1, df) with noncentrality nc^2: two unrelated
    # computations (quadrature of Phi; a Poisson sum of incomplete beta functions)
    positive = np.array([0.3, 1.0, 3.0, 10.0, 30.0])
    for df in (1, 3, 20, 500):
        for nc in (0.0, 1.0, 5.0, 20.0):
            inside = intervals.nct_cdf(positive, df, nc) - intervals.nct_cdf(-positive, df, nc)
            assert inside == pytest.approx(intervals.ncf_cdf(positive**2, 1, df, nc**2),
                                           abs=2e-7)


def test_noncentral_f_against_a_closed_form_and_both_against_numpy_samplers():
    f = np.array([0.1, 1.0, 3.0, 10.0, 100.0])
    for df2 in (1, 4, 30):  # central F with 2 numerator degrees of freedom
        assert intervals.ncf_cdf(f, 2, df2, 0.0) == pytest.approx(
            1 - (1 + 2 * f / df2) ** (-df2 / 2), abs=1e-12)
    rng = np.random.default_rng(0)
    size = 200_000  # the empirical cdf at 0.3 has sd 0.001: allow 0.005
    for df, nc in ((1, 2.0), (4, -1.5), (40, 6.0)):
        draws = sampled_nct(rng, df, nc, size)
        points = np.quantile(draws, [0.025, 0.3, 0.7, 0.975])
        assert intervals.nct_cdf(points, df, nc) == pytest.approx([0.025, 0.3, 0.7, 0.975],
                                                                  abs=0.005)
    for df1, df2, nc in ((2, 5, 3.0), (4, 40, 100.0)):
        points = np.quantile(rng.noncentral_f(df1, df2, nc, size=size), [0.025, 0.3, 0.7, 0.975])
        assert intervals.ncf_cdf(points, df1, df2, nc) == pytest.approx(
            [0.025, 0.3, 0.7, 0.975], abs=0.005)


def test_the_d_interval_puts_two_and_a_half_percent_beyond_each_end():
    # the defining property, checked with numpy's sampler rather than our own cdf: at the lower
    # end the observed t is exceeded 2.5% of the time, at the upper end undercut 2.5%
    rng = np.random.default_rng(1)
    n0, n1, d = 4, 6, 1.3
    scale = math.sqrt(n0 * n1 / (n0 + n1))
    low, high = intervals.d_interval(np.array([d]), n0, n1)
    t = d * scale
    size = 400_000  # sd of a 2.5% share: 0.00025
    assert np.mean(sampled_nct(rng, n0 + n1 - 2, low[0] * scale, size) >= t) == pytest.approx(
        0.025, abs=0.0012)
    assert np.mean(sampled_nct(rng, n0 + n1 - 2, high[0] * scale, size) <= t) == pytest.approx(
        0.025, abs=0.0012)


def normal_labels(rng: np.random.Generator, means: list[float], sizes: tuple[int, ...]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """DRAWS columns of values [prompts, DRAWS], normal with sd 1 around each label's mean, and
    the labels' codes: each column is one replication of the experiment."""
    codes = np.repeat(np.arange(len(sizes)), sizes)
    return rng.normal(size=(codes.size, DRAWS)) + np.array(means)[codes][:, None], codes


@pytest.mark.parametrize("sizes", [(2, 2), (3, 3), (5, 5), (8, 8), (3, 12), (20, 20)])
def test_d_intervals_cover_95_percent_at_every_prompt_count(sizes):
    # the percentile bootstrap this replaces covered 47% at 2 + 2, 74% at 3 + 3, 90% at 8 + 8
    rng = np.random.default_rng(sum(sizes))
    for d in (0.0, 1.5):
        values, codes = normal_labels(rng, [d, 0.0], sizes)
        low, high = intervals.effect_interval(values, codes)
        coverage = np.mean((low <= d) & (d <= high))
        assert LOW <= coverage <= HIGH, (sizes, d, coverage)


@pytest.mark.parametrize("sizes", [(2, 2, 2), (3, 5, 8), (10, 10, 10)])
def test_eta_squared_intervals_cover_95_percent(sizes):
    # means -1, 0, 1 with these shares: eta2 = B / (B + 1), B the share-weighted variance of
    # the means (at eta2 = 0 a two-sided interval clamped at 0 covers 97.5%, so not tested)
    means = np.array([-1.0, 0.0, 1.0])
    shares = np.array(sizes) / sum(sizes)
    between = float((shares * (means - (shares * means).sum()) ** 2).sum())
    truth = between / (between + 1.0)
    values, codes = normal_labels(np.random.default_rng(len(sizes) + sum(sizes)), list(means),
                                  sizes)
    low, high = intervals.effect_interval(values, codes)
    coverage = np.mean((low <= truth) & (truth <= high))
    assert LOW <= coverage <= HIGH, (sizes, coverage)


def test_simultaneous_intervals_cover_the_largest_of_many():
    # --auto-discover shows the largest effects of every neuron tested; 200 neurons of 8 + 8
    # prompts, 5 with d = 2 and the rest with none. One neuron's interval, put on the neuron
    # chosen as the largest, covers its d far less often than 95% (the bootstrap: 29-72%);
    # the interval simultaneous over the 200 does not care how the neuron was chosen.
    rng = np.random.default_rng(11)
    runs, covered, shown = 60, 0, 0
    truth = np.zeros(200)
    truth[:5] = 2.0
    for seed in range(runs):
        values = rng.normal(size=(16, 200)) + (np.arange(16) < 8)[:, None] * truth
        found = discover.discover(values, ["on"] * 8 + ["off"] * 8, top_k=5, permutations=200,
                                  seed=seed)
        for finding in found.shown:
            shown += 1
            covered += int(finding.low <= truth[finding.neuron] <= finding.high)
    assert shown >= runs * 2  # survivors, or with none the largest effects: chosen maxima
    assert covered / shown >= LOW  # simultaneous coverage is at least 95% by design
