"""The probe's numbers: planted signals, decoys, cross-validation, baselines, the logistic fit,
scale invariance, predictions, the direction file and the rendered report.

Every expected value comes from the construction of the data or from an independent route
(plain gradient descent, the optimality conditions of the penalised likelihood, a hand-written
mean difference), never from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lazarus.errors import LazarusError
from lazarus.io.directions import load_direction, save_direction
from lazarus.render.probe import BAR_WIDTH, render_probe_report
from lazarus.results.probe import probe_json
from lazarus.stats.folds import fold_count, stratified_folds
from lazarus.stats.probe import METHODS, PERMUTATIONS, TIE_BREAK, probe_layers, to_direction
from lazarus.stats.probe_fit import RANKING, predict, predict_rows, score_test
from lazarus.stats.solver import fit_logistic

HIDDEN = 64
SIGNAL = 17  # carries +8 for class A, -8 for class B
BIG = 5  # huge magnitude (around 500), not separating
TINY = 9  # tiny spread (1e-4), not separating


def planted(seed: int = 0, count_a: int = 3, count_b: int = 8, big_spread: float = 5.0,
            signal: float = 8.0, tiny_gap: float = 0.0) -> np.ndarray:
    """[count_a + count_b, HIDDEN] float32, class A first; neurons N(0, 1) except the planted."""
    rng = np.random.default_rng(seed)
    n = count_a + count_b
    is_a = np.arange(n) < count_a
    x = rng.normal(size=(n, HIDDEN))
    x[:, SIGNAL] += np.where(is_a, signal, -signal)
    x[:, BIG] = 500.0 + big_spread * rng.normal(size=n)
    x[:, TINY] = 1e-4 * rng.normal(size=n) + np.where(is_a, tiny_gap, -tiny_gap)
    return x.astype(np.float32)


def noise(seed: int, n: int, hidden: int = HIDDEN) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, hidden)).astype(np.float32)


# --- the planted layer ---


@pytest.mark.parametrize("method", METHODS)
def test_planted_layer_is_found_and_its_direction_is_the_signal(method):
    x = planted()
    report = probe_layers({0: noise(1, 11), 1: x, 2: noise(2, 11)}, 3, method=method,
                          label_a="hard", label_b="easy")
    fit = report.fit
    print(f"{method}: accuracies {[row.accuracy for row in report.layers]}")

    assert report.best_layer == 1
    assert report.top.accuracy == 1.0
    assert report.top.accuracy_std == 0.0
    assert fit.layer == 1
    assert int(np.argmax(np.abs(fit.direction))) == SIGNAL
    assert fit.direction[SIGNAL] > 0  # positive means class A, which has +8
    assert np.linalg.norm(fit.direction) == pytest.approx(1.0, abs=1e-9)
    top = [n.neuron for n in fit.top_neurons(3)]
    assert top[0] == SIGNAL
    assert BIG not in top
    assert TINY not in top
    assert fit.class_a.mean > fit.class_b.mean
    assert fit.separation > 0


def test_difference_direction_is_the_normalised_mean_difference():
    x = planted()
    fit = probe_layers({0: x}, 3, method="difference", permutations=0).fit
    by_hand = x[:3].astype(np.float64).mean(axis=0) - x[3:].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(fit.direction, by_hand / np.linalg.norm(by_hand), atol=1e-12)


def test_projection_statistics_are_mean_and_std_of_each_prompts_projection():
    x = planted()
    fit = probe_layers({0: x}, 3, permutations=0).fit
    proj = x.astype(np.float64) @ fit.direction
    assert fit.class_a.mean == pytest.approx(proj[:3].mean(), rel=1e-12)
    assert fit.class_a.std == pytest.approx(np.std(proj[:3], ddof=1), rel=1e-9)
    assert fit.class_b.mean == pytest.approx(proj[3:].mean(), rel=1e-12)
    assert fit.class_b.std == pytest.approx(np.std(proj[3:], ddof=1), rel=1e-9)
    pooled = np.sqrt((2 * np.var(proj[:3], ddof=1) + 7 * np.var(proj[3:], ddof=1)) / 9)
    assert fit.separation == pytest.approx((proj[:3].mean() - proj[3:].mean()) / pooled,
                                           rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_logistic_ignores_a_high_spread_dimension_whose_gap_is_chance(seed):
    # neuron BIG: 500 +- 50, so its class means differ by chance by tens of units
    x = planted(seed, big_spread=50.0)
    fit = probe_layers({0: x}, 3, permutations=0).fit
    gap = abs(x[:3, BIG].mean() - x[3:, BIG].mean())
    print(f"seed {seed}: chance gap of the big neuron {gap:.1f}, weights "
          f"signal {fit.direction[SIGNAL]:+.3f} big {fit.direction[BIG]:+.3f}")
    assert int(np.argmax(np.abs(fit.direction))) == SIGNAL
    top = [n.neuron for n in fit.top_neurons(3)]
    assert top[0] == SIGNAL
    assert BIG not in top


@pytest.mark.parametrize("method", METHODS)
def test_a_tiny_neuron_that_separates_is_not_ranked_above_the_real_one(method):
    # neuron TINY: +-1e-3 around 0 with spread 1e-4, an effect size of 20 standard deviations
    # but no weight in raw units; a standardised fit mapped back to raw units would inflate it
    x = planted(tiny_gap=1e-3)
    fit = probe_layers({0: x}, 3, method=method, permutations=0).fit
    top = [n.neuron for n in fit.top_neurons(3)]
    assert top[0] == SIGNAL
    assert TINY not in top
    assert abs(fit.direction[TINY]) < 1e-3


# --- cross-validation and baselines ---


def test_shuffled_baseline_is_near_chance_and_far_below_the_real_accuracy():
    x = planted(3, count_a=10, count_b=10)
    report = probe_layers({0: x}, 10)
    row = report.layers[0]
    print(f"accuracy {row.accuracy} baseline {row.baseline} +- {row.baseline_std}")
    assert row.accuracy == 1.0
    assert 0.2 <= row.baseline <= 0.8
    assert row.baseline_std > 0
    assert report.permutations == PERMUTATIONS
    assert report.significant
    assert report.p_value < 0.01


@pytest.mark.parametrize("method", METHODS)
def test_a_layer_without_signal_is_near_chance(method):
    report = probe_layers({0: noise(4, 40, hidden=256)}, 20, method=method)
    row = report.layers[0]
    print(f"{method}: accuracy {row.accuracy} baseline {row.baseline}")
    assert 0.2 <= row.accuracy <= 0.8


@pytest.mark.parametrize(("count_a", "count_b", "expected"),
                         [(3, 3, 3), (3, 8, 3), (2, 100, 2), (10, 10, 5), (7, 6, 5), (100, 4, 4)])
def test_fold_count_never_exceeds_the_smaller_class_or_five(count_a, count_b, expected):
    assert fold_count(count_a, count_b) == expected


@pytest.mark.parametrize(("count_a", "count_b"), [(3, 3), (3, 8), (2, 9), (7, 6), (12, 30)])
def test_folds_are_stratified_and_each_holds_out_both_classes(count_a, count_b):
    is_a = np.arange(count_a + count_b) < count_a
    folds = fold_count(count_a, count_b)
    assignment = stratified_folds(is_a, folds, np.random.default_rng(0))
    assert sorted(set(assignment.tolist())) == list(range(folds))
    for members in (is_a, ~is_a):
        per_fold = np.bincount(assignment[members], minlength=folds)
        assert per_fold.min() >= 1  # every fold tests both classes, so training keeps both too
        assert per_fold.max() - per_fold.min() <= 1
        assert per_fold.max() < members.sum()


def test_report_uses_three_folds_for_three_prompts_per_class():
    x = planted(5, count_a=3, count_b=3)
    report = probe_layers({0: x}, 3)
    assert report.folds == 3
    assert report.top.accuracy == 1.0
    assert report.count_a == 3
    assert report.count_b == 3


@pytest.mark.parametrize(("count_a", "total"), [(1, 6), (5, 6), (0, 6)])
def test_a_class_with_fewer_than_two_prompts_is_a_one_line_user_error(count_a, total):
    with pytest.raises(LazarusError) as caught:
        probe_layers({0: noise(0, total)}, count_a, label_a="hard", label_b="easy")
    message = str(caught.value)
    assert "\n" not in message
    assert "at least 2" in message


def test_unknown_method_is_a_user_error():
    with pytest.raises(LazarusError):
        probe_layers({0: planted()}, 3, method="svm")


def test_non_finite_activations_are_a_user_error():
    x = planted()
    x[2, 4] = np.nan
    with pytest.raises(LazarusError):
        probe_layers({7: x}, 3)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_report(method):
    acts = {0: noise(8, 11), 1: planted(9)}
    first = probe_layers(acts, 3, method=method, seed=11)
    second = probe_layers(acts, 3, method=method, seed=11)
    assert first.layers == second.layers
    assert first.top_layer == second.top_layer
    assert first.p_value == second.p_value
    np.testing.assert_array_equal(first.fit.direction, second.fit.direction)
    np.testing.assert_array_equal(first.fit.importance, second.fit.importance)


def test_ties_go_to_the_larger_heldout_separation_then_to_the_earlier_layer():
    weak, strong = planted(0, signal=4.0), planted(0, signal=8.0)
    assert probe_layers({0: weak, 1: strong}, 3, permutations=0).top_layer == 1
    assert probe_layers({0: strong, 1: weak}, 3, permutations=0).top_layer == 0
    same = probe_layers({3: strong, 4: strong.copy()}, 3, permutations=0)
    assert same.top_layer == 3
    assert "earlier layer" in TIE_BREAK


# --- the logistic fit against independent checks ---


def _penalised_gradient(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float,
                        penalty: float) -> np.ndarray:
    """Gradient of sum log(1 + e^f) - y f + penalty/2 |w|^2, f = x.w + b, over (w, b)."""
    p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
    return np.append(x.T @ (p - y) + penalty * w, np.sum(p - y))


@pytest.mark.parametrize(("n", "hidden"), [(11, 64), (10, 2880)])
def test_logistic_solution_is_a_stationary_point_of_the_penalised_likelihood(n, hidden):
    x = noise(12, n, hidden).astype(np.float64) * 3.0 + 40.0
    y = (np.arange(n) < n // 2).astype(np.float64)
    x[:, 3] += 2.0 * y
    fit = fit_logistic(x, y.astype(bool))
    penalty = np.var(x, axis=0).mean()  # the documented rule, computed here independently
    assert fit.penalty == pytest.approx(penalty, rel=1e-10)
    gradient = _penalised_gradient(x, y, fit.weights, fit.bias, penalty)
    scale = np.linalg.norm((x - x.mean(axis=0)).T @ (y - y.mean()))
    print(f"|gradient| {np.linalg.norm(gradient):.2e} against a scale of {scale:.2e}")
    assert np.linalg.norm(gradient) < 1e-6 * scale


def test_logistic_matches_plain_gradient_descent_on_a_small_problem():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(12, 5)) * np.array([1.0, 2.0, 0.5, 3.0, 1.0])
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float64)
    x[:, 0] += 1.5 * y
    penalty = np.var(x, axis=0).mean()
    centred = x - x.mean(axis=0)
    w, b = np.zeros(5), 0.0
    lipschitz = (np.linalg.norm(np.c_[centred, np.ones(12)], 2) ** 2) / 4 + penalty
    for _ in range(20000):
        gradient = _penalised_gradient(centred, y, w, b, penalty)
        w, b = w - gradient[:5] / lipschitz, b - gradient[5] / lipschitz
    assert np.linalg.norm(_penalised_gradient(centred, y, w, b, penalty)) < 1e-9
    fit = fit_logistic(x, y.astype(bool))
    np.testing.assert_allclose(fit.weights, w, atol=1e-8)
    assert fit.bias == pytest.approx(b - w @ x.mean(axis=0), abs=1e-8)


# --- scale invariance ---


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [1000.0, 0.001])
def test_scaling_all_activations_changes_nothing(method, factor):
    acts = {0: noise(14, 11), 1: planted(15), 2: planted(16, signal=3.0)}
    scaled = {layer: (x * np.float32(factor)).astype(np.float32) for layer, x in acts.items()}
    plain = probe_layers(acts, 3, method=method)
    other = probe_layers(scaled, 3, method=method)
    assert other.top_layer == plain.top_layer
    assert other.p_value == plain.p_value
    for a, b in zip(plain.layers, other.layers, strict=True):
        assert b.accuracy == a.accuracy
        assert b.accuracy_std == a.accuracy_std
        assert b.baseline == a.baseline
        assert b.heldout_separation == pytest.approx(a.heldout_separation, rel=1e-4)
    np.testing.assert_allclose(other.fit.direction, plain.fit.direction, atol=1e-5)
    np.testing.assert_allclose(other.fit.importance, plain.fit.importance, rtol=1e-4, atol=1e-6)
    assert other.fit.separation == pytest.approx(plain.fit.separation, rel=1e-4)
    assert other.fit.class_a.mean == pytest.approx(plain.fit.class_a.mean * factor, rel=1e-4)
    row = acts[plain.top_layer][0]
    assert predict(other.fit, row * factor).probability_a == pytest.approx(
        predict(plain.fit, row).probability_a, abs=1e-5)


# --- predictions ---


def test_logistic_probabilities_sum_to_the_class_size_over_the_training_prompts():
    # stationarity in the unpenalised intercept: sum_i (p_i - y_i) = 0
    x = planted(17, count_a=4, count_b=7, signal=1.0)
    fit = probe_layers({0: x}, 4, permutations=0).fit
    predictions = predict_rows(fit, x)
    assert sum(p.probability_a for p in predictions) == pytest.approx(4.0, abs=1e-6)


def test_difference_probability_is_the_gaussian_posterior_of_the_projection():
    x = planted(18)
    fit = probe_layers({0: x}, 3, method="difference", permutations=0).fit
    gap = x[:3].astype(np.float64).mean(axis=0) - x[3:].astype(np.float64).mean(axis=0)
    unit = gap / np.linalg.norm(gap)
    proj = x.astype(np.float64) @ unit
    mean_a, mean_b = proj[:3].mean(), proj[3:].mean()
    variance = (np.sum((proj[:3] - mean_a) ** 2) + np.sum((proj[3:] - mean_b) ** 2)) / 9
    test = x[0] * 0.2 + x[5] * 0.8  # between the classes, so the probability is not 0 or 1
    logit = (mean_a - mean_b) / variance * (test @ unit - (mean_a + mean_b) / 2)
    expected = 1.0 / (1.0 + np.exp(-logit))
    prediction = predict(fit, test)
    print(f"expected P(A) {expected:.6f}, got {prediction.probability_a:.6f}")
    assert prediction.probability_a == pytest.approx(expected, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_predictions_name_the_more_probable_class(method):
    x = planted(19)
    fit = probe_layers({0: x}, 3, method=method, label_a="hard", label_b="easy").fit
    hard, easy = predict(fit, x[0]), predict(fit, x[6])
    assert hard.label == "hard"
    assert hard.probability == hard.probability_a
    assert hard.probability > 0.5
    assert easy.label == "easy"
    assert easy.probability == pytest.approx(1.0 - easy.probability_a)
    assert easy.probability > 0.5


# --- the direction file ---


def test_direction_file_round_trips_with_importance_and_plain_arrays(tmp_path):
    report = probe_layers({0: noise(20, 11), 1: planted(21)}, 3, label_a="hard",
                          label_b="easy")
    path = tmp_path / "difficulty.npz"
    save_direction(str(path), to_direction(report, model_id="tiny/model"))

    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert all(value.dtype != object for value in arrays.values())
    for key in ("direction", "layer", "label_positive", "label_negative", "model_id", "method",
                "accuracy", "separation", "class_a_mean_projection", "class_b_mean_projection",
                "hidden_size", "importance", "ranking", "lazarus_version"):
        assert key in arrays
    assert arrays["direction"].dtype == np.float32
    assert int(arrays["hidden_size"]) == HIDDEN

    loaded = load_direction(str(path))
    assert loaded.layer == 1
    assert loaded.label_positive == "hard"
    assert loaded.label_negative == "easy"
    assert loaded.model_id == "tiny/model"
    assert loaded.method == "logistic"
    assert loaded.ranking == RANKING
    assert loaded.metrics["accuracy"] == report.top.accuracy
    assert loaded.metrics["separation"] == pytest.approx(report.fit.separation)
    assert loaded.metrics["class_a_mean_projection"] == pytest.approx(report.fit.class_a.mean)
    np.testing.assert_allclose(loaded.direction, report.fit.direction, atol=1e-7)
    assert loaded.top_neurons(5) == [n.neuron for n in report.fit.top_neurons(5)]
    assert loaded.top_neurons(1) == [SIGNAL]


# --- the rendered report ---


def test_report_sections_bars_and_best_mark():
    report = probe_layers({0: noise(22, 11), 1: planted(23), 2: noise(24, 11)}, 3,
                          label_a="hard", label_b="easy")
    text = render_probe_report(report, test_prompts=["47*47=", "2+2="],
                               test=score_test(report.fit, planted(23)[[0, 5]]))
    titles = ["PROBE ACCURACY BY LAYER", "PROJECTION ON THE DIRECTION AT LAYER 1",
              "TOP 10 NEURONS AT LAYER 1", "TEST PREDICTIONS"]
    positions = [text.index(title) for title in titles]
    assert positions == sorted(positions)
    assert "=" * 80 + "\n" + titles[0] in text
    rows = [line for line in text.splitlines() if line[:5].strip() in ("0", "1", "2")
            and " | " in line]
    assert len(rows) == 3
    marked = [line for line in rows if line.endswith("← best")]
    assert len(marked) == 1
    assert marked[0].lstrip().startswith("1 |")
    for line, row in zip(rows, report.layers, strict=True):
        assert line.count("█") == round(BAR_WIDTH * row.accuracy)
    assert f"Ranked by importance (in-sample): {RANKING}" in " ".join(text.split())
    assert f"Neuron   {SIGNAL}: weight=+" in text
    assert "47*47=" in text


def test_json_is_strict_json_with_the_report_fields():
    report = probe_layers({0: planted(25), 1: planted(25)}, 3, label_a="hard", label_b="easy")
    data = probe_json(report, model_id="tiny/model", top_k=3, test_prompts=["q"],
                      test=score_test(report.fit, planted(25)[:1]))
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["best_layer"] == 0
    assert back["tie_break"] == TIE_BREAK
    assert back["ranking"] == RANKING
    assert [n["neuron"] for n in back["top_neurons"]][0] == SIGNAL
    assert len(back["layers"]) == 2
    assert back["predictions"][0]["label"] == "hard"
    assert back["projection"]["class_a"]["label"] == "hard"
