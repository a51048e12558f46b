"""Statistics that stay honest with unequal classes: the probe's balanced accuracy (chance 50%
whatever the class sizes), the decision threshold printed beside `--test` predictions, and the
ablate control's z marked as descriptive beside its permutation p.

Seeded Monte Carlo on synthetic activation matrices (no model); expected values come from the
construction of the data, from hand-written scoring of the documented rules, or from binomial
bounds; never from the code under test.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from lazarus.render.causal import render_ablation
from lazarus.render.probe import render_accuracy_table, render_predictions, render_projection
from lazarus.results.ablation import AblationResult, Condition, Outcome
from lazarus.results.probe import probe_json
from lazarus.stats.controls import control_summary
from lazarus.stats.folds import fold_count, stratified_folds
from lazarus.stats.probe import ALPHA, probe_layers
from lazarus.stats.probe_predict import score_test


def noise_layers(seed: int, n: int, hidden: int, layers: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {layer: rng.normal(size=(n, hidden)).astype(np.float32) for layer in range(layers)}


# --- balanced accuracy ---


def test_every_accuracy_and_spread_the_report_prints_says_what_it_is():
    """The power sentence of a probe that finds nothing speaks of the table's balanced
    accuracy and its 50% chance, and the in-sample projections are said to be mean ± std."""
    report = probe_layers(noise_layers(3, 5 + 20, 6, 1), 5, permutations=50)
    assert not report.significant
    table = " ".join(render_accuracy_table(report).split())
    assert "Accuracy: held out, balanced" in table
    assert ("Not beating chance is not absence (in balanced accuracy held out, chance 50.0%, "
            "as in the table): with these counts a layer needed about ") in table
    projection = render_projection(report).splitlines()
    where = next(i for i, line in enumerate(projection) if "(  5 prompts)" in line)
    assert projection[where - 1] == "Projection x·direction per class, mean ± std over its prompts:"


def test_noise_at_5_plus_20_scores_chance_and_is_claimed_at_no_more_than_alpha():
    # Pure noise, 5 prompts of one class against 20 of the other, 3 layers of 32 neurons.
    # Plain accuracy put each layer near 75% and the best of three near 80% (always naming
    # the larger class scores 80%); balanced accuracy must put each layer at 50%.
    replicates, layers = 200, 3
    per_layer, best, shuffled_best, claims = [], [], [], 0
    for seed in range(replicates):
        report = probe_layers(noise_layers(seed, 25, 32, layers), 5, permutations=49, seed=seed)
        assert report.chance == 0.5
        scores = [row.accuracy for row in report.layers]
        per_layer.append(np.mean(scores))
        best.append(max(scores))
        shuffled_best.append(np.mean(report.shuffled_best))
        claims += report.significant
    per_layer, best, shuffled_best = map(np.asarray, (per_layer, best, shuffled_best))
    se = per_layer.std(ddof=1) / math.sqrt(replicates)
    gap = best - shuffled_best  # the best layer against the best of as many shuffled layers
    gap_se = gap.std(ddof=1) / math.sqrt(replicates)
    rate_se = math.sqrt(ALPHA * (1 - ALPHA) / replicates)
    print(f"per layer {per_layer.mean():.3f} ± {se:.3f}; best {best.mean():.3f}, best of "
          f"shuffled {shuffled_best.mean():.3f} (gap {gap.mean():+.3f} ± {gap_se:.3f}); "
          f"claims {claims} of {replicates} = {claims / replicates:.3f} ± {rate_se:.3f}")
    assert abs(per_layer.mean() - 0.5) <= 3 * se
    assert abs(gap.mean()) <= 3 * gap_se
    assert claims / replicates <= ALPHA + 3 * rate_se


def _midpoint_says_a(x: np.ndarray, is_a: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The difference method's rule, written out: the side of the midpoint of the class means."""
    mean_a, mean_b = x[train & is_a].mean(axis=0), x[train & ~is_a].mean(axis=0)
    return (x - (mean_a + mean_b) / 2) @ (mean_a - mean_b) > 0


@pytest.mark.parametrize(("count_a", "count_b"), [(5, 20), (3, 8), (10, 10), (4, 4)])
def test_balanced_accuracy_is_the_mean_of_the_two_recalls_and_equal_classes_keep_accuracy(
        count_a, count_b):
    n = count_a + count_b
    x = noise_layers(count_a * 100 + count_b, n, 6, 1)[0].astype(np.float64)
    is_a = np.arange(n) < count_a
    x[is_a, 0] += 0.8  # some signal, so that the scores are neither 0 nor 1
    folds = fold_count(count_a, count_b)
    # the real labelling's folds are the first draw of the seed's generator
    assignment = stratified_folds(is_a, folds, np.random.default_rng(3))
    balanced, plain = [], []
    for fold in range(folds):
        held = assignment == fold
        says_a = _midpoint_says_a(x, is_a, ~held)[held]
        truth = is_a[held]
        balanced.append((np.mean(says_a[truth]) + np.mean(~says_a[~truth])) / 2)
        plain.append(np.mean(says_a == truth))
    report = probe_layers({0: x}, count_a, method="difference", permutations=0, seed=3)
    row = report.layers[0]
    print(f"{count_a} + {count_b}: balanced {np.mean(balanced):.4f}, plain {np.mean(plain):.4f},"
          f" reported {row.accuracy:.4f}")
    assert row.accuracy == pytest.approx(float(np.mean(balanced)), abs=1e-12)
    assert row.accuracy_std == pytest.approx(float(np.std(balanced)), abs=1e-12)
    if count_a == count_b:  # every fold holds out as many A as B: the plain accuracy exactly
        assert row.accuracy == float(np.mean(plain))
        assert row.accuracy_std == float(np.std(plain))
    else:
        assert row.accuracy != pytest.approx(float(np.mean(plain)), abs=1e-6)


# --- the decision threshold beside test predictions ---


_ROW = re.compile(r"^(\S+)\s+\| (\S+)\s+\| (\S+)\s+\|\s+\S+%\s+\|\s+(\S+)$")


@pytest.mark.parametrize("method", ["logistic", "difference"])
def test_each_printed_prediction_agrees_with_its_projection_and_the_shown_threshold(method):
    rng = np.random.default_rng(21)
    rows_checked = positive_b = 0
    for seed in range(40):
        layers = noise_layers(seed, 25, 8, 1)
        layers[0][:5, 0] += 1.5  # 5 + 20 prompts, a weak signal
        report = probe_layers(layers, 5, method=method, label_a="hard", label_b="easy",
                              permutations=0)
        fit = report.fit
        t = fit.threshold
        # test rows around the boundary: spread out, and within float rounding of it
        offsets = np.concatenate([rng.normal(0, 2, 6), [1e-9, -1e-9, 3e-7, -3e-7]])
        tests = rng.normal(size=(offsets.size, 8))
        tests -= np.outer(tests @ fit.direction, fit.direction)  # orthogonal to the direction
        tests += np.outer(t + offsets, fit.direction)
        truth = ["hard" if k % 3 == 0 else "easy" for k in range(offsets.size)]
        test = score_test(fit, tests, truth)
        text = render_predictions([f"p{k}" for k in range(offsets.size)], test)
        flat = " ".join(text.split())
        shown = re.search(r"Decision: hard when the projection is above t = (\S+), else easy",
                          flat)
        assert shown is not None, text
        threshold = float(shown.group(1))
        rows = [m for m in map(_ROW.match, text.splitlines()) if m and m.group(1) != "Prompt"]
        assert len(rows) == offsets.size
        for match, offset in zip(rows, offsets, strict=True):
            label, projection = match.group(3), float(match.group(4))
            assert label == ("hard" if offset > 0 else "easy")
            assert projection != threshold  # the printed numbers say which side it is on
            assert label == ("hard" if projection > threshold else "easy"), (match.group(0), t)
            positive_b += projection > 0 and label == "easy"
            rows_checked += 1
        document = probe_json(report, test_prompts=[f"p{k}" for k in range(offsets.size)],
                              test=test)
        assert document["threshold"] == pytest.approx(t, rel=1e-12)
        assert document["decision"] == "hard when projection > threshold, else easy"
        for entry in document["predictions"]:
            assert (entry["label"] == "hard") == (entry["projection"] > document["threshold"])
    print(f"{method}: {rows_checked} rows, {positive_b} with a positive projection called easy")
    assert positive_b > 0  # "positive = hard" alone would have misled on these


def _gradient_descent_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The documented penalised logistic regression (centred x, penalty = mean neuron
    variance, unpenalised intercept), by plain gradient descent: weights and bias on x - mean."""
    centred = x - x.mean(axis=0)
    penalty = np.var(x, axis=0).mean()
    w, b = np.zeros(x.shape[1]), 0.0
    step = 1.0 / ((np.linalg.norm(np.c_[centred, np.ones(len(x))], 2) ** 2) / 4 + penalty)
    for _ in range(20000):
        p = 1.0 / (1.0 + np.exp(-(centred @ w + b)))
        w, b = w - step * (centred.T @ (p - y) + penalty * w), b - step * np.sum(p - y)
    return w, b


@pytest.mark.parametrize("method", ["logistic", "difference"])
def test_the_threshold_is_the_fitted_boundary_on_the_projection(method):
    layers = noise_layers(30, 25, 8, 1)
    layers[0][:5, 0] += 1.5
    x = layers[0].astype(np.float64)
    is_a = np.arange(25) < 5
    fit = probe_layers(layers, 5, method=method, permutations=0).fit
    middle = (x[is_a] @ fit.direction).mean() / 2 + (x[~is_a] @ fit.direction).mean() / 2
    if method == "logistic":  # where w.(x - mean) + b = 0, along w / |w|
        w, b = _gradient_descent_logistic(x, is_a.astype(np.float64))
        expected = x.mean(axis=0) @ (w / np.linalg.norm(w)) - b / np.linalg.norm(w)
        assert fit.threshold > middle  # 5 against 20: the boundary leans toward the smaller A
    else:  # the midpoint of the class means
        expected = middle
    print(f"{method}: threshold {fit.threshold:.6f}, expected {expected:.6f}, "
          f"midpoint {middle:.6f}")
    assert fit.threshold == pytest.approx(expected, rel=1e-6, abs=1e-9)
    on_it = fit.direction * fit.threshold
    assert score_test(fit, on_it[None]).predictions[0].probability_a == pytest.approx(0.5)


def test_test_labels_give_a_balanced_accuracy_beside_the_plain_one():
    layers = noise_layers(40, 25, 8, 1)
    layers[0][:5, 0] += 3.0
    report = probe_layers(layers, 5, label_a="hard", label_b="easy", permutations=0)
    rows = noise_layers(41, 8, 8, 1)[0]
    rows[:2, 0] += 3.0
    truth = ["hard", "hard"] + ["easy"] * 6
    test = score_test(report.fit, rows, truth)
    said = [p.label for p in test.predictions]
    recall_a = sum(s == "hard" for s in said[:2]) / 2
    recall_b = sum(s == "easy" for s in said[2:]) / 6
    assert test.balanced_accuracy == pytest.approx((recall_a + recall_b) / 2, abs=1e-15)
    text = " ".join(render_predictions([f"p{k}" for k in range(8)], test).split())
    assert (f"Balanced (held out): {100 * (recall_a + recall_b) / 2:.1f}%, the mean of the two "
            f"classes' recall (hard {round(recall_a * 2)} of 2, easy {round(recall_b * 6)} of 6); "
            "chance 50.0%.") in text
    document = probe_json(report, test_prompts=[f"p{k}" for k in range(8)], test=test)
    assert document["test_balanced_accuracy"] == pytest.approx((recall_a + recall_b) / 2)
    assert document["chance"] == 0.5
    assert document["score"].startswith("balanced accuracy")
    one_class = score_test(report.fit, rows[2:], truth[2:])
    assert one_class.balanced_accuracy is None  # one class's recall is not a balanced figure
    # a test prompt that is also a training prompt is not held out, so it is not counted
    seen = score_test(report.fit, rows, truth, in_sample=[False, True] + [False] * 6)
    assert seen.recalls()[0] == ("hard", int(said[0] == "hard"), 1)
    assert seen.balanced_accuracy == pytest.approx(
        (int(said[0] == "hard") + recall_b) / 2, abs=1e-15)


# --- the ablate control's z ---


def _ablation(effect: float, draws: np.ndarray) -> AblationResult:
    control = control_summary(effect, draws.tolist(), 0, [[[k]] for k in range(draws.size)])
    outcome = Outcome(continuation="x", kl=effect)
    return AblationResult(
        model_id="synthetic", prompts=("p",), answers=None, labels=None, site="mlp_post",
        component=None, neurons=(3,), selection="given", method="zero", reference=(),
        resampled_from=None, sweep=False, seed=0, effect_name="mean KL",
        baseline=(Outcome(continuation="x"),),
        conditions=(Condition(layers=(0,), outcomes=(outcome,), effect=effect,
                              control=control),))


def test_ablate_z_is_labelled_descriptive_because_skewed_draws_push_it_past_1_645():
    # Random neurons' effects are skewed: most near 0, a few large. With the chosen neurons'
    # effect drawn from the same law as 100 control draws (gamma, shape 0.5), p <= 0.05 comes
    # at the nominal rate and z > 1.645 does not: so z is printed as a description only.
    rng = np.random.default_rng(0)
    replicates = 4000
    z_over = p_under = 0
    example = None
    for _ in range(replicates):
        values = rng.gamma(0.5, size=101)
        control = control_summary(values[0], values[1:].tolist(), 0, [])
        z_over += control.z > 1.645
        p_under += control.p <= ALPHA
        if example is None and control.z > 1.645 and control.p > ALPHA:
            example = values
    se = math.sqrt(ALPHA * (1 - ALPHA) / replicates)
    print(f"z > 1.645: {z_over / replicates:.3f}, p <= 0.05: {p_under / replicates:.3f} "
          f"(alpha + 3 SE = {ALPHA + 3 * se:.3f})")
    assert p_under / replicates <= ALPHA + 3 * se
    assert z_over / replicates > ALPHA + 3 * se

    assert example is not None
    result = _ablation(float(example[0]), example[1:])
    control = result.conditions[0].control
    lines = render_ablation(result).splitlines()
    p_line = next(line for line in lines if line.strip().startswith("p = "))
    z_line = next(line for line in lines if line.strip().startswith("z = "))
    assert p_line.endswith("(1 + 100)): the test")
    assert z_line.strip() == (f"z = {control.z:+.2f}: descriptive, not a test (the effect "
                              "minus the draws' mean, in their std; the draws need not be "
                              "normal)")
    document = result.to_json()["conditions"][0]["control"]
    assert document["z"] == pytest.approx(control.z)
    assert document["z_note"].startswith("descriptive, not a test")
