"""The probe's honesty: the permutation test of the whole layer search, its false-positive rate
on noise, planted signals, the smallest possible p, test labels, and the solver's two forms.

Expected values come from the construction of the data, from a hand-written re-implementation
of the documented protocol (difference method, the documented order of random draws), or from
the other form of the solver; never from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lazarus.errors import LazarusError
from lazarus.render.probe import render_probe_report
from lazarus.results.probe import probe_json
from lazarus.stats.probe import ALPHA, probe_layers, smallest_p, to_direction
from lazarus.stats.probe_predict import score_test
from lazarus.stats.solver import coordinates, logistic_batch


def noise_layers(seed: int, n: int, hidden: int, layers: int = 3) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {layer: rng.normal(size=(n, hidden)).astype(np.float32) for layer in range(layers)}


def binomial_upper(trials: int, rate: float, tail: float) -> int:
    """The smallest k with P(X >= k) < tail for X ~ Binomial(trials, rate)."""
    for k in range(trials + 1):
        above = sum(math.comb(trials, j) * rate ** j * (1 - rate) ** (trials - j)
                    for j in range(k, trials + 1))
        if above < tail:
            return k
    return trials + 1


# --- noise and planted signals ---


def test_noise_claims_a_significant_layer_at_no_more_than_the_nominal_rate():
    # 200 seeds of pure noise, three layers each; widths 8 (the primal form: 16 training rows)
    # and 32 (the dual form). A per-layer baseline would be beaten by the best of three layers
    # far more often than 5% of the time; the test of the whole search must not be.
    seeds = 200
    claims = 0
    for seed in range(seeds):
        report = probe_layers(noise_layers(seed, 20, 8 if seed % 2 else 32), 10,
                              permutations=99, seed=seed)
        claims += report.significant
        assert report.significant == (report.best_layer is not None)
    bound = binomial_upper(seeds, ALPHA, 0.001)
    print(f"{claims} of {seeds} noise runs claimed a significant layer (bound {bound})")
    assert claims < bound


def test_a_planted_layer_is_found_with_p_below_one_percent():
    rng = np.random.default_rng(7)
    layers = noise_layers(8, 24, 64, layers=4)
    planted = rng.normal(size=(24, 64))
    planted[:12, 5] += 5.0
    layers[2] = planted.astype(np.float32)
    report = probe_layers(layers, 12)
    print(f"p = {report.p_value}, accuracies {[row.accuracy for row in report.layers]}")
    assert report.best_layer == 2
    assert report.significant
    assert report.p_value < 0.01
    assert int(np.argmax(np.abs(report.fit.direction))) == 5


# --- the p-value by hand ---


def _hand_folds(is_a: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """The documented fold rule: each class shuffled, then dealt round-robin, class A first."""
    assignment = np.empty(is_a.size, dtype=int)
    start = 0
    for members in (np.flatnonzero(is_a), np.flatnonzero(~is_a)):
        order = rng.permutation(members)
        for i, prompt in enumerate(order):
            assignment[prompt] = (start + i) % folds
        start = (start + order.size) % folds
    return assignment


def _hand_accuracy(x: np.ndarray, is_a: np.ndarray, assignment: np.ndarray, folds: int) -> float:
    """Mean over folds of the balanced accuracy (the mean of the two classes' recall) of the
    midpoint rule of mean(A) - mean(B), written out."""
    shares = []
    for fold in range(folds):
        train, test = assignment != fold, assignment == fold
        mean_a = x[train & is_a].mean(axis=0)
        mean_b = x[train & ~is_a].mean(axis=0)
        gap = mean_a - mean_b
        says_a = (x[test] - (mean_a + mean_b) / 2) @ gap > 0
        truth = is_a[test]
        shares.append((np.mean(says_a[truth]) + np.mean(~says_a[~truth])) / 2)
    return float(np.mean(shares))


def test_p_value_matches_a_hand_computation():
    layers = noise_layers(3, 12, 5)
    layers[1][:6, 0] += 2.5  # some signal, so that the count is neither 0 nor everything
    layers = {k: v.astype(np.float64) for k, v in layers.items()}
    permutations, folds = 30, 5
    is_a = np.arange(12) < 6
    rng = np.random.default_rng(4)
    labellings = [(is_a, _hand_folds(is_a, folds, rng))]
    for _ in range(permutations):
        shuffled = rng.permutation(is_a)
        labellings.append((shuffled, _hand_folds(shuffled, folds, rng)))
    table = np.array([[_hand_accuracy(layers[layer], labels, assignment, folds)
                       for layer in sorted(layers)] for labels, assignment in labellings])
    observed = table[0].max()
    best_of_shuffles = table[1:].max(axis=1)
    count = int(np.sum(best_of_shuffles >= observed - 1e-12))
    expected = (1 + count) / (1 + permutations)
    print(f"observed {observed}, {count} of {permutations} shuffles at least as good")

    report = probe_layers(layers, 6, method="difference", permutations=permutations, seed=4)
    np.testing.assert_allclose([row.accuracy for row in report.layers], table[0], atol=1e-12)
    np.testing.assert_allclose(report.shuffled_best, best_of_shuffles, atol=1e-12)
    assert report.exceeding == count
    assert report.p_value == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(("count_a", "count_b", "permutations", "splits"), [
    (2, 2, 200, 3),  # {ab|cd, ac|bd, ad|bc}
    (3, 3, 200, 10),  # C(6,3) / 2
    (2, 5, 200, 21),  # C(7,2): unequal sizes, so swapping the names is another labelling
    (10, 10, 200, None),  # far more splits than shuffles: 1 / 201
    (10, 10, 0, None),  # no shuffles: p is 1
])
def test_smallest_possible_p(count_a, count_b, permutations, splits):
    expected = 1 / splits if splits is not None else 1 / (1 + permutations)
    assert smallest_p(count_a, count_b, permutations) == pytest.approx(expected, rel=1e-12)


# --- when nothing is found ---


def test_two_against_two_is_never_significant_and_says_why():
    report = probe_layers(noise_layers(5, 4, 16, layers=4), 2, label_a="a", label_b="b")
    assert report.hopeless
    assert not report.significant
    assert report.best_layer is None
    text = render_probe_report(report)
    assert "← best" not in text
    lines = [line for line in text.splitlines() if line.startswith("No layer beats chance")]
    assert len(lines) == 1
    assert "only 3 distinct ways" in " ".join(text.split())
    assert "NOT SIGNIFICANT" in text
    with pytest.raises(LazarusError, match="--force-save"):
        to_direction(report)
    forced = to_direction(report, force=True)
    assert forced.metrics["significant"] == 0.0
    assert forced.metrics["p_value"] == report.p_value


def test_alpha_and_permutations_are_checked():
    layers = noise_layers(6, 12, 8)
    for settings in ({"alpha": 0.0}, {"alpha": 1.5}, {"permutations": -1}):
        with pytest.raises(LazarusError):
            probe_layers(layers, 6, **settings)


def test_alpha_decides_significance():
    layers = noise_layers(9, 16, 8, layers=2)
    layers[0][:8, 2] += 0.8  # a weak signal
    loose = probe_layers(layers, 8, alpha=0.99)
    strict = probe_layers(layers, 8, alpha=loose.p_value)  # p < alpha fails at p == alpha
    assert loose.significant
    assert not strict.significant
    assert loose.p_value == strict.p_value


# --- labels of every figure, test prompts ---


def test_every_section_says_held_out_or_in_sample():
    layers = noise_layers(10, 12, 8)
    layers[0][:6, 1] += 4.0
    report = probe_layers(layers, 6, label_a="hard", label_b="easy")
    test = score_test(report.fit, layers[0][[0, 1, 7]], ["hard", "easy", "easy"])
    text = render_probe_report(report, test_prompts=["x", "y", "z"], test=test)
    flat = " ".join(text.split())
    assert "Accuracy: held out" in flat
    assert "Separation (in-sample)" in flat
    assert "PROJECTION ON THE DIRECTION AT LAYER 0 (IN-SAMPLE)" in text
    assert "TEST PREDICTIONS (HELD OUT)" in text
    assert "Test accuracy (held out): 2 of 3" in flat


def test_test_labels_give_a_held_out_accuracy_and_the_json_holds_projections():
    layers = noise_layers(11, 12, 8, layers=1)
    layers[0][:6, 1] += 5.0
    report = probe_layers(layers, 6, label_a="hard", label_b="easy")
    rows = np.random.default_rng(12).normal(size=(4, 8))
    rows[:2, 1] += 5.0
    test = score_test(report.fit, rows, ["hard", "hard", "easy", "easy"])
    by_hand = rows @ report.fit.direction
    np.testing.assert_allclose(test.projections, by_hand, rtol=1e-12)
    right = sum(p.label == t for p, t in zip(test.predictions, test.labels, strict=True))
    assert test.correct == right
    assert test.accuracy == pytest.approx(right / 4)
    document = probe_json(report, prompts=[f"p{i}" for i in range(12)],
                          test_prompts=["a", "b", "c", "d"], test=test)
    assert [row["projection"] for row in document["predictions"]] == pytest.approx(
        by_hand.tolist())
    assert [row["true_label"] for row in document["predictions"]] == [
        "hard", "hard", "easy", "easy"]
    assert all(row["in_sample"] is False for row in document["predictions"])
    train = document["training_projections"]
    assert len(train) == 12
    assert all(row["in_sample"] is True for row in train)
    assert [row["label"] for row in train] == ["hard"] * 6 + ["easy"] * 6
    assert [row["projection"] for row in train] == pytest.approx(
        (layers[0].astype(np.float64) @ report.fit.direction).tolist())
    assert document["test_accuracy"] == pytest.approx(right / 4)
    with pytest.raises(LazarusError, match="neither class"):
        score_test(report.fit, rows, ["hard", "hard", "easy", "medium"])


# --- the solver's two forms ---


@pytest.mark.parametrize(("n", "hidden", "signal"), [(200, 30, 0.0), (200, 30, 2.5),
                                                     (120, 100, 1.0)])
def test_primal_and_dual_forms_give_the_same_fit(n, hidden, signal):
    rng = np.random.default_rng(n + hidden)
    x = rng.normal(size=(n, hidden)) * rng.uniform(0.5, 3.0, size=hidden) + 20.0
    is_a = np.arange(n) < n // 3
    x[:, 0] += signal * is_a
    _, z, _ = coordinates(x)
    labels = np.array([is_a] + [rng.permutation(is_a) for _ in range(7)], dtype=np.float64)
    train = rng.random(labels.shape) > 0.2
    primal = logistic_batch(z, labels, train, hidden, form="primal")
    dual = logistic_batch(z, labels, train, hidden, form="dual")
    scale = np.abs(dual[0]).max()
    print(f"largest difference {np.abs(primal[0] - dual[0]).max():.2e} of {scale:.2e}")
    np.testing.assert_allclose(primal[0], dual[0], atol=1e-7 * scale)
    np.testing.assert_allclose(primal[1], dual[1], atol=1e-7 * max(1.0, np.abs(dual[1]).max()))
