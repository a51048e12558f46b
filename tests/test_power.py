"""`lazarus.stats.power`: the smallest effect a test would have found with 80% power, checked
against a simulation of the test itself (the 80% point of its power curve lies within 10% of
it), and the sentences that print it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lazarus.render.probe import render_accuracy_table
from lazarus.results.probe import probe_json
from lazarus.stats import power
from lazarus.stats.probe import probe_layers
from lazarus.stats.welch import bootstrap_test, within_label_draws


def test_critical_value_by_hand():
    # 9 draws 1..9, alpha 0.5: p = (1 + k) / 10 < 0.5 allows k <= 3 draws at or above it, so
    # the statistic must exceed the 4th largest, 6
    null = np.arange(1.0, 10.0)
    assert power.critical_value(null, 0.5) == 6.0
    assert (1 + np.sum(null >= 6.5)) / 10 < 0.5 <= (1 + np.sum(null >= 6.0)) / 10
    # 199 draws, alpha 0.05: (1 + k) / 200 < 0.05 allows k <= 8 (10 / 200 is not below 0.05)
    assert power.critical_value(np.arange(199.0), 0.05) == 190.0
    assert power.critical_value(np.arange(10.0), 0.05) == math.inf  # 1/11 > 0.05 already


def test_accuracy_and_held_out_d_by_the_normal_distribution():
    # Phi(1) = 0.8413447460685429: a midway threshold between means 2 sd apart
    assert power.accuracy_to_d(0.8413447460685429) == pytest.approx(2.0, abs=1e-9)
    assert power.accuracy_to_d(0.5) == 0.0
    # the accuracy found is the one whose 20th percentile is the critical value
    found = power.detectable_accuracy(0.7, 0.1)
    z80 = 0.8416212335729143
    assert found - z80 * 2 * 0.1 * math.sqrt(found * (1 - found)) == pytest.approx(0.7, abs=1e-9)
    assert power.detectable_accuracy(1.0, 0.1) == math.inf


def _survives(sizes: tuple[int, ...], step: float, neurons: int, seed: int) -> bool:
    """One simulated run of the test: neuron 0's label means step * (0, ..., 1), sd 1."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    values = rng.normal(size=(codes.size, neurons))
    values[:, 0] += step * codes / (len(sizes) - 1)
    test = bootstrap_test(values, codes, within_label_draws(codes, 200, seed + 1))
    return bool(test.p_corrected[0] < 0.05)


def _step(sizes: tuple[int, ...], effect: float) -> float:
    """The range of evenly spaced label means with this effect (d, or eta-squared)."""
    if len(sizes) == 2:
        return effect
    shares = np.asarray(sizes) / sum(sizes)
    pattern = np.arange(len(sizes)) / (len(sizes) - 1)
    spread = float(np.sum(shares * (pattern - np.sum(shares * pattern)) ** 2))
    return math.sqrt(effect / (1 - effect) / spread)


@pytest.mark.parametrize("sizes", [(10, 10), (8, 8, 8)])
def test_smallest_detectable_effect_is_the_simulated_80_percent_point(sizes):
    # Ten null runs (50 neurons, 200 resamples) give the test's critical value and the effect it
    # finds 80% of the time; then the test itself, run on a neuron with 0.9x and 1.1x that
    # effect, must find it less and more than 80% of the time: the simulated 80% point lies
    # within 10%.
    codes = np.repeat(np.arange(len(sizes)), sizes)
    effects = []
    for seed in range(10):
        values = np.random.default_rng(1000 + seed).normal(size=(codes.size, 50))
        test = bootstrap_test(values, codes, within_label_draws(codes, 200, seed))
        effects.append(power.detectable_welch(power.critical_value(test.max_null, 0.05), sizes))
    effect = float(np.mean(effects))
    runs = 300
    below = np.mean([_survives(sizes, _step(sizes, 0.9 * effect), 50, s) for s in range(runs)])
    above = np.mean([_survives(sizes, _step(sizes, 1.1 * effect), 50, s) for s in range(runs)])
    assert below < power.POWER < above, (effect, below, above)


def _noise_probe(count: int, shift: float, seed: int):
    """A probe of one layer, 8 neurons, count + count prompts; class A shifted by `shift` sd
    along neuron 0; 100 shuffles."""
    rows = np.random.default_rng(seed).normal(size=(2 * count, 8))
    rows[:count, 0] += shift
    return probe_layers({0: rows}, count, permutations=100, seed=seed)


def test_probe_accuracy_needed_is_the_simulated_80_percent_point():
    # The accuracy the probe needed (normal approximation, from ten null runs) against the
    # probe itself run on planted shifts: where it beats chance 80% of the time, its mean held-out
    # accuracy lies within 10% (of the distance from chance) of the one predicted.
    needed = np.mean([power.detectable_accuracy(
        power.critical_value(np.array(r.shuffled_best), 0.05), r.top.baseline_std)
        for r in (_noise_probe(10, 0.0, 1000 + s) for s in range(10))])
    rates, accuracies = [], []
    for shift in (1.75, 2.25, 2.75):
        reports = [_noise_probe(10, shift, s) for s in range(100)]
        rates.append(np.mean([r.significant for r in reports]))
        accuracies.append(np.mean([r.top.accuracy for r in reports]))
    assert rates[0] < power.POWER < rates[-1]
    simulated = float(np.interp(power.POWER, rates, accuracies))
    assert abs(simulated - needed) <= 0.1 * (needed - 0.5), (needed, simulated, rates)


def test_probe_says_what_nothing_found_rules_out():
    report = _noise_probe(10, 0.0, 7)
    assert not report.significant
    document = probe_json(report)
    detectable = document["smallest_detectable"]
    assert detectable["power"] == 0.8
    assert 0.5 < detectable["accuracy"] < 1.0
    assert detectable["heldout_d"] == pytest.approx(power.accuracy_to_d(detectable["accuracy"]))
    assert detectable["method"].startswith("normal approximation")
    text = " ".join(render_accuracy_table(report).split())  # unwrapped
    assert (f"a layer needed about {100 * detectable['accuracy']:.1f}% held out (held-out d = "
            f"{detectable['heldout_d']:.2g}) to beat chance with 80% power") in text
    assert "normal approximation" in text
    found = _noise_probe(10, 4.0, 7)
    assert found.significant
    assert "Not beating chance" not in render_accuracy_table(found)
