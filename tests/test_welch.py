"""`lazarus.stats.welch` against independent routes: Welch's F by hand and by a textbook loop,
the bootstrap test against a loop over the same resamples and against the exact bootstrap
distribution (every resample enumerated)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lazarus.stats import welch


def textbook_welch(groups: list[np.ndarray], floor: float = 0.0) -> float:
    """Welch (1951), one label at a time; a variance below `floor` counts as `floor`."""
    k = len(groups)
    sizes = [g.size for g in groups]
    means = [float(g.mean()) for g in groups]
    variances = [max(float(g.var(ddof=1)), floor) for g in groups]
    weights = [n / v for n, v in zip(sizes, variances, strict=True)]
    total = sum(weights)
    centre = sum(w * m for w, m in zip(weights, means, strict=True)) / total
    between = sum(w * (m - centre) ** 2 for w, m in zip(weights, means, strict=True)) / (k - 1)
    spread = sum((1 - w / total) ** 2 / (n - 1) for w, n in zip(weights, sizes, strict=True))
    return between / (1 + 2 * (k - 2) * spread / (k * k - 1))


def test_welch_f_of_two_labels_is_welch_t_squared_by_hand():
    # [1, 2, 3]: mean 2, variance 1; [2, 4, 6, 8]: mean 5, variance 20/3;
    # t^2 = 3^2 / (1/3 + (20/3)/4) = 9 / 2
    values = np.array([1.0, 2, 3, 2, 4, 6, 8])[:, None]
    codes = np.array([0, 0, 0, 1, 1, 1, 1])
    assert welch.welch_f(values, codes)[0, 0] == pytest.approx(4.5, abs=1e-12)
    assert welch.welch_f(values, 1 - codes)[0, 0] == pytest.approx(4.5, abs=1e-12)


def test_welch_f_matches_the_textbook_formula_with_three_labels():
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], [4, 7, 5])
    values = rng.normal(size=(16, 6)) * np.array([1.0, 3.0, 0.5])[codes][:, None] * 10
    values += np.array([0.0, 4.0, -2.0])[codes][:, None]
    got = welch.welch_f(values, codes)[0]
    for column in range(6):
        groups = [values[codes == g, column] for g in range(3)]
        assert got[column] == pytest.approx(textbook_welch(groups), rel=1e-10)


def test_within_label_draws_stay_within_each_label_and_are_seeded():
    codes = np.array([1, 0, 1, 1, 0, 2, 2])
    draws = welch.within_label_draws(codes, 300, seed=0)
    assert draws.shape == (300, 7)
    for group in range(3):
        assert np.all(draws[:, codes == group].sum(axis=1) == (codes == group).sum())
    assert np.array_equal(draws, welch.within_label_draws(codes, 300, seed=0))
    assert not np.array_equal(draws, welch.within_label_draws(codes, 300, seed=1))
    # each prompt drawn n_label / n_label = once per resample on average
    assert draws.mean(axis=0) == pytest.approx(np.ones(7), abs=0.15)


def test_bootstrap_test_equals_a_loop_over_the_same_resamples():
    rng = np.random.default_rng(2)
    codes = np.repeat([0, 1, 2], [6, 7, 8])
    values = rng.normal(size=(21, 5)) * np.array([2.0, 1.0, 0.5])[codes][:, None]
    values[:, 3] += np.array([0.0, 4.0, 8.0])[codes]  # one neuron with a clear signal
    draws = welch.within_label_draws(codes, 300, seed=5)
    # no label drawn as one prompt repeated here (the loop below needs each label's spread)
    assert all((draws[:, codes == g].max(axis=1) < (codes == g).sum()).all() for g in range(3))
    result = welch.bootstrap_test(values, codes, draws)
    observed = [textbook_welch([values[codes == g, j] for g in range(3)]) for j in range(5)]
    null = np.empty((300, 5))
    for b, counts in enumerate(draws):
        rows = np.repeat(np.arange(21), counts)  # the resample, label by label
        for j in range(5):
            centred = [values[rows[codes[rows] == g], j] - values[codes == g, j].mean()
                       for g in range(3)]
            null[b, j] = textbook_welch(centred)
    assert result.statistic == pytest.approx(observed, rel=1e-10)
    assert result.max_null == pytest.approx(null.max(axis=1), rel=1e-9)
    for j in range(5):
        assert result.p[j] == (1 + np.sum(null[:, j] >= observed[j] * (1 - 1e-9))) / 301
        assert result.p_corrected[j] == (1 + np.sum(null.max(axis=1) >= observed[j]
                                                    * (1 - 1e-9))) / 301
    assert np.all(result.p_corrected >= result.p)
    assert result.p_corrected[3] < 0.05 < result.p_corrected.max()


def test_bootstrap_p_converges_to_the_exact_bootstrap_p_over_every_resample():
    # 3 + 3 prompts: 27 x 27 equally likely resamples. A label drawn as one prompt repeated has
    # no spread: its variance counts as FLOOR x the column's variance, and where both labels
    # are like that, F is infinite (the module's rule, applied here by hand).
    rng = np.random.default_rng(3)
    codes = np.array([0, 0, 0, 1, 1, 1])
    values = rng.normal(size=(6, 3)) * np.array([3.0, 1.0])[codes][:, None]
    values[:3, 0] += 2.0
    centred = values - np.stack([values[:3].mean(axis=0), values[3:].mean(axis=0)])[codes]
    floors = welch.FLOOR * values.var(axis=0)
    observed = [textbook_welch([values[:3, j], values[3:, j]]) for j in range(3)]
    every = []
    for first in itertools.product(range(3), repeat=3):
        for second in itertools.product(range(3, 6), repeat=3):
            flat = len(set(first)) == 1 and len(set(second)) == 1
            every.append([np.inf if flat else
                          textbook_welch([centred[list(first), j], centred[list(second), j]],
                                         floors[j]) for j in range(3)])
    every = np.array(every)
    exact = [(every[:, j] >= observed[j] * (1 - 1e-9)).mean() for j in range(3)]
    exact_max = [(every.max(axis=1) >= observed[j] * (1 - 1e-9)).mean() for j in range(3)]
    result = welch.bootstrap_test(values, codes, welch.within_label_draws(codes, 20000, seed=0))
    # 20,000 resamples: the binomial standard error is at most 0.0036
    assert result.p == pytest.approx(exact, abs=0.015)
    assert result.p_corrected == pytest.approx(exact_max, abs=0.015)
    assert result.degenerate / 20000 == pytest.approx(1 / 81, abs=0.003)


def test_resamples_without_any_spread_set_the_smallest_p():
    # 2 + 2 prompts: each label is one prompt repeated in half the resamples, both in a quarter
    rng = np.random.default_rng(4)
    codes = np.array([0, 0, 1, 1])
    result = welch.bootstrap_test(rng.normal(size=(4, 6)), codes,
                                  welch.within_label_draws(codes, 4000, seed=1))
    assert 1000 - 3 * 27.4 < result.degenerate < 1000 + 3 * 27.4  # Binomial(4000, 1/4)
    assert result.smallest_p == (1 + result.degenerate) / 4001
    assert np.all(result.p_corrected >= result.smallest_p)
    assert np.sum(np.isinf(result.max_null)) == result.degenerate


def test_constant_columns_and_lone_labels_are_refused():
    codes = np.array([0, 0, 1, 1, 1])
    draws = welch.within_label_draws(codes, 10, seed=0)
    with pytest.raises(ValueError, match="variance"):
        welch.bootstrap_test(np.ones((5, 2)), codes, draws)
    lone = np.array([0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="two rows"):
        welch.bootstrap_test(np.arange(10.0).reshape(5, 2), lone,
                             welch.within_label_draws(lone, 10, seed=0))


def test_a_neuron_silent_on_all_prompts_but_one_does_not_hide_the_others():
    """A neuron that is 0 on every prompt but one (a ReLU unit, a router weight) has no spread
    in any label in each resample that misses that prompt (about 35% of them at 10 + 10), and
    there its F is the floor's artefact, about 1e11. Such resamples say nothing about the
    other neurons: a clear effect elsewhere must survive as it does without the silent neuron,
    and the silent neuron's own resamples without spread count against it alone."""
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1], 10)
    values = rng.normal(size=(20, 50))
    values[:10, 0] += 3.0
    draws = welch.within_label_draws(codes, 500, seed=0)
    alone = welch.bootstrap_test(values, codes, draws)
    values[:, 1] = 0.0
    values[15, 1] = 1.0
    both = welch.bootstrap_test(values, codes, draws)
    assert alone.p_corrected[0] < 0.05
    assert both.p_corrected[0] == pytest.approx(alone.p_corrected[0], abs=0.01)
    assert np.isfinite(both.max_null).all() and both.max_null.max() < 1e6
    missed = np.sum(draws[:, 15] == 0)  # resamples without the one prompt where it fires
    assert both.p[1] >= (1 + missed) / 501 and both.p_corrected[1] >= both.p[1]


def test_silent_neurons_keep_the_family_wise_error_at_alpha():
    """Random labels, 10 + 10 prompts, 40 normal neurons and 10 silent on all prompts but one or
    two: at most alpha of 200 runs may find a survivor (plus sampling error)."""
    runs, hits = 200, 0
    codes = np.repeat([0, 1], 10)
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        values = np.zeros((20, 50))
        values[:, :40] = rng.normal(size=(20, 40))
        for j in range(40, 50):
            fires = rng.choice(20, size=1 + j % 2, replace=False)
            values[fires, j] = rng.exponential(size=fires.size)
        result = welch.bootstrap_test(values, codes, welch.within_label_draws(codes, 200, seed))
        hits += bool(np.any(result.p_corrected < 0.05))
    assert hits <= 19  # Binomial(200, 0.05): P(more than 19) < 0.001


def test_a_neuron_tied_within_every_label_keeps_its_test():
    """Constant within each label, different between them: every resample of it is tied too,
    and its null F is about 0 there (not an artefact), so it is found as before."""
    rng = np.random.default_rng(1)
    codes = np.repeat([0, 1], 5)
    values = rng.normal(size=(10, 20))
    values[:, 3] = np.repeat([1.0, 2.0], 5)
    result = welch.bootstrap_test(values, codes, welch.within_label_draws(codes, 300, seed=0))
    assert result.p[3] == 1 / 301
    assert result.p_corrected[3] < 0.05
