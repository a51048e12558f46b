"""LABEL CORRELATION marks a neuron only on evidence, and its intervals cover what they claim:
seeded simulations with a known truth (neurons of one matrix serve as replications)."""

from __future__ import annotations

import math

import numpy as np

from lazarus.render.neurons import render_label_correlation
from lazarus.results.activations import ActivationMatrix
from lazarus.stats import discover
from lazarus.stats.neurons import EFFECT, SPREAD, Choice, label_correlation

ALPHA = 0.05


def matrix(values: np.ndarray, labels: list[str], neurons=None) -> ActivationMatrix:
    """values [prompts, neurons]."""
    return ActivationMatrix(values=values.astype(np.float32),
                            prompts=tuple(f"p{i}" for i in range(values.shape[0])),
                            neurons=tuple(range(values.shape[1]) if neurons is None else neurons),
                            layer=0, labels=tuple(labels))


def upper_bound(rate: float, trials: int) -> float:
    """rate + 3 binomial standard errors."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / trials)


def excludes_zero(interval) -> bool:
    return interval is not None and (interval[0] > 0 or interval[1] < 0)


def test_a_mark_needs_an_interval_that_excludes_zero():
    labels = ["x", "x", "x", "y", "y", "y"]
    # x [4, -2, 1], y [-1, -1, -1]: r = 0.5 exactly, a "large" r that 3 + 3 prompts cannot
    # tell from 0 (the old rule marked every |r| >= 0.5)
    weak = label_correlation(matrix(np.array([[4, -2, 1, -1, -1, -1]], float).T, labels))
    assert weak[0].effects[0].r == 0.5
    assert weak[0].effects[0].r_ci[0] < 0 < weak[0].effects[0].r_ci[1]
    assert weak[0].effects[0].verdict is None
    strong = label_correlation(matrix(np.array([[5, 6, 7, 0, 1, 2]], float).T, labels))
    assert strong[0].effects[0].r_ci[0] > 0
    assert (strong[0].effects[0].verdict, strong[1].effects[0].verdict) == ("high", "low")
    # on any data, given neurons are marked exactly where the interval excludes 0, by r's sign
    rng = np.random.default_rng(2)
    values = rng.normal(size=(9, 300)) + np.repeat([1.5, 0.0, -0.5], 3)[:, None]
    for summary in label_correlation(matrix(values, ["a"] * 3 + ["b"] * 3 + ["c"] * 3)):
        for effect in summary.effects:
            expected = (None if not excludes_zero(effect.r_ci)
                        else "high" if effect.r > 0 else "low")
            assert effect.verdict == expected


def test_noise_is_marked_at_no_more_than_the_uncorrected_rate():
    # 3 + 3 prompts, 2000 neurons with no effect: the old |r| >= 0.5 rule marked about 31%
    rng = np.random.default_rng(3)
    values = rng.normal(size=(6, 2000))
    summary = label_correlation(matrix(values, ["x"] * 3 + ["y"] * 3))[0]
    marked = np.mean([effect.verdict is not None for effect in summary.effects])
    assert marked <= upper_bound(ALPHA, 2000)


def test_r_intervals_are_printed_and_cover_95_percent_at_every_prompt_count():
    # normal values, sd 1; the first label is 1.5 above the others, which share one mean, so
    # that "the rest" is one population: rho = 1.5 sqrt(pq) / sqrt(1 + 1.5^2 pq). Fisher's z
    # covered about as much from 4 prompts on, but printed nothing below 4 (1 + 2 here)
    draws = 1000  # binomial sd 0.0069 at 0.95
    for sizes in [(1, 2), (2, 2), (3, 3), (5, 5), (8, 8), (2, 10), (1, 2, 3), (3, 4, 5)]:
        rng = np.random.default_rng(sum(sizes))
        labels = [f"l{k}" for k, size in enumerate(sizes) for _ in range(size)]
        values = rng.normal(size=(len(labels), draws)) + 1.5 * (np.array(labels) == "l0")[:, None]
        first = label_correlation(matrix(values, labels))[0]
        p = sizes[0] / sum(sizes)
        rho = 1.5 * math.sqrt(p * (1 - p)) / math.sqrt(1 + 1.5**2 * p * (1 - p))
        assert all(effect.r_ci is not None for effect in first.effects), sizes
        coverage = np.mean([e.r_ci[0] <= rho <= e.r_ci[1] for e in first.effects])
        assert 0.93 <= coverage <= 0.97, (sizes, coverage)


def discovered(values: np.ndarray, labels: list[str], seed: int):
    """What `introspect neurons --auto-discover` computes: the discovery, then LABEL
    CORRELATION of the neurons it shows, chosen by their effect."""
    found = discover.discover(values, labels, top_k=10, permutations=200, seed=seed)
    shown = [f.neuron for f in found.shown]
    choice = Choice(by=EFFECT, among=found.tested,
                    survivors=frozenset(f.neuron for f in found.findings))
    return found, choice, label_correlation(matrix(values[:, shown], labels, shown), choice)


def test_a_table_of_selected_noise_prints_no_mark():
    # 8 + 8 prompts, 576 neurons, no effect at all: the ten shown are the ten largest |d| of
    # the same data. The old rule marked all ten in every replicate; now a table may carry a
    # mark only when a neuron survives the correction, which happens at most ALPHA of the time
    runs, marked = 40, 0
    labels = ["easy"] * 8 + ["hard"] * 8
    for seed in range(runs):
        values = np.random.default_rng(seed).normal(size=(16, 576))
        found, choice, summaries = discovered(values, labels, seed)
        text = render_label_correlation(summaries, 2, choice=choice)
        marked += int("←" in text)
        if not found.findings:
            assert "←" not in text
            assert "no mark: no neuron shown survives --auto-discover's correction" in text
            assert "selected: --auto-discover chose these neurons" in text
    assert marked / runs <= upper_bound(ALPHA, runs)


def test_intervals_of_discovered_neurons_cover_their_correlation():
    # chosen as the largest of 200 on the same prompts, one neuron's 95% interval would cover
    # far less often; the simultaneous interval covers whatever the choice
    rng = np.random.default_rng(8)
    labels = ["on"] * 8 + ["off"] * 8
    effect = np.zeros(200)
    effect[:5] = 2.0  # d = 2 for 5 neurons
    rho = effect * 0.5 / np.sqrt(1 + effect**2 * 0.25)
    covered = shown = 0
    for seed in range(40):
        values = rng.normal(size=(16, 200)) + (np.arange(16) < 8)[:, None] * effect
        _, _, summaries = discovered(values, labels, seed)
        for e in summaries[0].effects:
            shown += 1
            covered += int(e.r_ci[0] <= rho[e.neuron] <= e.r_ci[1])
    assert shown >= 100  # survivors, or with none the largest effects: chosen maxima
    assert covered / shown >= 0.93


def test_the_section_says_how_the_neurons_were_chosen_and_what_a_mark_means():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(8, 6)) + 3.0 * (np.arange(8) < 4)[:, None] * (np.arange(6) == 0)
    summaries = label_correlation(matrix(values, ["a"] * 4 + ["b"] * 4))
    given = render_label_correlation(summaries, 2)
    assert "uncorrected, 6 neurons examined" in given
    assert "uncorrected, 6 neurons examined at each of 4 layers" in render_label_correlation(
        summaries, 2, layers=4)
    assert "selected" not in given
    spread = render_label_correlation(summaries, 2, choice=Choice(by=SPREAD, among=64))
    assert "selected: chosen by their spread on these prompts" in spread
    assert "may cover less than 95%" in spread
    three = label_correlation(matrix(values, ["a", "b", "c", "a", "b", "c", "a", "b"]))
    assert "6 neurons x 3 labels examined" in render_label_correlation(three, 2)


def test_tokens_get_neither_interval_nor_mark():
    # the tokens of one prompt are not independent samples: no interval treats them as such
    values = np.repeat(np.array([[5.0], [6.0], [0.0], [1.0]]), 5, axis=0)  # 4 prompts x 5 tokens
    labels = ["a"] * 10 + ["b"] * 10
    choice = Choice(per_token=True)
    summaries = label_correlation(matrix(values + np.arange(20)[:, None] * 1e-3, labels), choice)
    effect = summaries[0].effects[0]
    assert effect.r > 0.9
    assert (effect.r_ci, effect.verdict) == (None, None)
    text = render_label_correlation(summaries, 2, noun="token", choice=choice)
    assert "not independent samples, so no interval and no mark" in text
    assert "←" not in text


def test_one_label_says_why_r_is_missing():
    # r compares a label with the rest: with one label there is no rest, whatever the spread
    values = np.random.default_rng(5).normal(size=(4, 3))
    summaries = label_correlation(matrix(values, ["a"] * 4))
    assert [effect.r for effect in summaries[0].effects] == [None] * 3
    text = render_label_correlation(summaries, 2)
    assert "one label: r compares a label with the rest" in text
    assert "no spread within the labels" not in text
    assert "1 labels" not in text
    assert "←" not in text
