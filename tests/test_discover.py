"""`--auto-discover` in the library: no more false discoveries than promised on noise, a planted
neuron found; the massive-activation flags."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from lazarus.errors import LazarusError
from lazarus.render.neurons import render_discovery, render_label_correlation
from lazarus.stats import discover
from lazarus.stats.neurons import (
    EFFECT,
    MASSIVE_FACTOR,
    Choice,
    label_correlation,
    massive_dimensions,
)
from lazarus.text import p_shown


def binomial_upper(trials: int, rate: float, tail: float = 0.001) -> int:
    """The smallest count c with P(Binomial(trials, rate) > c) < tail."""
    total = 0.0
    for count in range(trials + 1):
        total += math.comb(trials, count) * rate**count * (1 - rate) ** (trials - count)
        if 1 - total < tail:
            return count
    return trials


@pytest.mark.parametrize("correlated", [False, True])
def test_noise_reports_a_survivor_at_no_more_than_the_nominal_rate(correlated):
    # Random labels, 200 seeds: the family-wise error (any survivor) must stay at or below
    # alpha = 0.05, whether the neurons are independent or share a common factor.
    runs, hits = 200, 0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        values = rng.normal(size=(20, 60))
        if correlated:
            values += 2.0 * rng.normal(size=(20, 1)) * rng.normal(size=(1, 60))
        labels = list(rng.permutation(["a"] * 10 + ["b"] * 10))
        found = discover.discover(values, labels, permutations=200, seed=seed)
        hits += int(found.survivors > 0)
        assert found.tested == 60
        assert (found.survivors > 0) == bool(found.findings)
    assert hits <= binomial_upper(runs, 0.05)  # 21 of 200: the 99.9% bound at rate 0.05


def test_noise_shows_candidates_not_findings():
    rng = np.random.default_rng(7)
    values = rng.normal(size=(16, 40))
    labels = ["x", "y"] * 8
    found = discover.discover(values, labels, top_k=4, permutations=500)
    assert found.survivors == 0
    assert found.findings == ()
    assert len(found.candidates) == 4
    assert "none of 40 survives" in found.describe()
    assert "not findings" in found.describe()


def test_planted_neuron_is_found_first_with_small_p_and_an_interval_covering_it():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 300))  # 20 + 20 prompts, 300 neurons, sd 1
    labels = ["on"] * 20 + ["off"] * 20
    values[:20, 123] += 2.0  # population Cohen's d of neuron 123: 2.0 (on minus off)
    found = discover.discover(values, labels, top_k=5)
    assert found.findings[0].neuron == 123
    assert found.findings[0].p_corrected < 0.01
    assert found.findings[0].low <= 2.0 <= found.findings[0].high
    assert found.findings[0].effect > 0  # on minus off, the first label given first
    assert found.survivors == len(found.findings)  # noise neurons do not survive here
    assert found.effect == "Cohen's d"
    assert found.labels == ("on", "off")


def test_three_labels_use_eta_squared():
    rng = np.random.default_rng(5)
    codes = np.repeat([0, 1, 2], 12)
    values = rng.normal(size=(36, 50))
    values[:, 9] += np.array([-2.0, 0.0, 2.0])[codes]  # eta-squared 8/3 / (8/3 + 1) = 0.727
    labels = [("c", "a", "b")[c] for c in codes]
    found = discover.discover(values, labels, top_k=3)
    assert found.effect == "eta-squared"
    assert found.labels == ("c", "a", "b")
    assert found.findings[0].neuron == 9
    assert found.findings[0].low <= 8 / 11 <= found.findings[0].high
    assert 0 <= found.findings[0].effect <= 1


def test_constant_and_missing_neurons_are_not_tested():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(10, 6))
    values[:, 1] = 4.0
    values[3, 4] = np.nan
    found = discover.discover(values, ["a", "b"] * 5, neurons=[10, 11, 12, 13, 14, 15],
                              permutations=100)
    assert found.tested == 4
    assert found.untested == (11, 14)
    assert {f.neuron for f in found.shown} == {10, 12, 13, 15}


def test_smallest_p_counts_the_resamples_without_any_spread():
    # 2 + 2 prompts: a quarter of the resamples draw each label as one prompt repeated, where F
    # is infinite, so no p falls below about 1/4; 10 + 10: such resamples are (1/10^9)^2 rare
    found = discover.discover(np.random.default_rng(0).normal(size=(4, 5)), ["a", "a", "b", "b"],
                              permutations=400)
    assert 0.25 - 3 * 0.0217 < found.smallest_p < 0.25 + 3 * 0.0217  # Binomial(400, 1/4) / 401
    assert all(f.p_corrected >= found.smallest_p for f in found.shown)
    assert "with these label counts no p can fall below 0.05" in found.describe()
    assert "give more prompts" in render_discovery(found, 0)
    assert found.detectable == math.inf
    assert "could not find an effect of any size" in found.describe()
    many = discover.discover(np.random.default_rng(0).normal(size=(20, 5)), ["a", "b"] * 10,
                             permutations=400)
    assert many.smallest_p == 1 / 401


def test_a_label_with_one_prompt_is_refused():
    # Welch's F needs each label's own spread
    with pytest.raises(LazarusError, match="label 'c' has 1"):
        discover.discover(np.random.default_rng(0).normal(size=(5, 3)), ["a", "b", "a", "b", "c"])
    with pytest.raises(LazarusError, match="every label needs at least 2 prompts"):
        discover.check_request(["a", "b", "a"], None, False, [1], "last", 100)


@pytest.mark.parametrize("sizes", [(5, 20), (10, 10)])
def test_equal_means_with_unequal_spreads_find_nothing_beyond_alpha(sizes):
    # The case: equal means, three times the spread in the first (smaller) label, 60
    # neurons, 200 seeds. The old shuffle test of eta-squared found a survivor in 97% (5 + 20)
    # and 19% (10 + 10) of these runs; a test of the means must stay at alpha + 3 SE.
    runs, hits = 200, 0
    spread = np.repeat([3.0, 1.0], sizes)[:, None]
    labels = ["few"] * sizes[0] + ["many"] * sizes[1]
    for seed in range(runs):
        values = np.random.default_rng(seed).normal(size=(sum(sizes), 60)) * spread
        found = discover.discover(values, labels, permutations=200, seed=seed)
        hits += int(found.survivors > 0)
    assert hits / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)  # 19 of 200


def test_power_rises_with_the_difference_in_means():
    # 10 + 10 prompts, 60 neurons, neuron 0 shifted by d standard deviations in the first label
    rates, wrong, runs = [], 0, 60
    for step, d in enumerate((1.5, 2.5, 3.5)):
        hits = 0
        for seed in range(step * runs, (step + 1) * runs):  # new data for every d
            values = np.random.default_rng(seed).normal(size=(20, 60))
            values[:10, 0] += d
            found = discover.discover(values, ["x"] * 10 + ["y"] * 10, permutations=200,
                                      seed=seed)
            hits += int(any(f.neuron == 0 for f in found.findings))
            wrong += int(any(f.neuron != 0 for f in found.findings))
        rates.append(hits / runs)
    assert rates[0] < rates[1] < rates[2]
    assert rates[2] >= 0.9
    # the 59 unshifted neurons still survive in no more than alpha + 3 SE of the runs
    assert wrong / (3 * runs) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / (3 * runs))


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": None}, "needs --labels"),
    ({"neurons": [1, 2]}, "leave out --neurons"),
    ({"direction_given": True}, "leave out --from-direction"),
    ({"labels": ["a", "a", "a"]}, "two different labels"),
    ({"labels": ["a", "b"]}, "more prompts than labels"),
    ({"layers": [1, 2]}, "one layer"),
    ({"position": "all"}, "not independent"),
    ({"permutations": 0}, "from 1 to 100000"),
])
def test_request_errors(kwargs, message):
    request = {"labels": ["a", "b", "a"], "neurons": None, "direction_given": False,
               "layers": [1], "position": "last", "permutations": 100, **kwargs}
    with pytest.raises(LazarusError, match=message):
        discover.check_request(**request)


def test_massive_dimensions_by_hand():
    # mean |value| per neuron: 1, 2, 1, 1, 40, 3; median of (1, 1, 1, 2, 3, 40) = 1.5;
    # 20 x 1.5 = 30: only neuron 4 (40 / 1.5 = 26.7x)
    values = np.array([[1, -2, 1, -1, 40, 3], [-1, 2, 1, 1, -40, -3]], dtype=np.float32)
    flagged = massive_dimensions(values, neurons=np.arange(100, 106))
    assert MASSIVE_FACTOR == 20
    assert [m.neuron for m in flagged] == [104]
    assert flagged[0].mean_abs == 40.0
    assert flagged[0].ratio == pytest.approx(40 / 1.5)
    values[:, 4] = 29.0  # 29 < 30: not flagged
    assert massive_dimensions(values) == ()
    assert massive_dimensions(np.zeros((3, 5))) == ()  # no scale to compare with


def test_a_survivor_s_corrected_p_is_never_shown_rounded_up_to_alpha():
    """A neuron survives at corrected p < alpha; its p beside that sentence must read below
    alpha too (0.0499 is not 0.050)."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 300))
    values[:20, 123] += 2.0
    found = discover.discover(values, ["on"] * 20 + ["off"] * 20, top_k=1)
    edge = dataclasses.replace(found.findings[0], p_corrected=0.0499)
    text = render_discovery(dataclasses.replace(found, findings=(edge,), alpha=0.05), 0)
    assert "corrected p=0.0499" in text
    assert "corrected p < 0.05" in text
    assert p_shown(0.0123, "0.012", 0.05) == "0.012"  # well below: as rounded
    assert p_shown(0.05, "0.050", 0.05) == "0.050"  # not below: as rounded
    assert p_shown(0.049996, "0.050", 0.05) == "0.049996"  # decimals until it reads below


def test_too_few_resamples_are_named_as_the_floor_of_p():
    """With 19 resamples p cannot go below 1/20 = 0.05 whatever the labels: the message names
    the resamples and their option, not the label counts."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 30))
    values[:20, 7] += 2.0
    found = discover.discover(values, ["on"] * 20 + ["off"] * 20, permutations=19)
    assert found.smallest_p == pytest.approx(0.05)
    assert "with 19 resamples no p can fall below 0.05" in found.describe()
    assert "give more --permutations" in render_discovery(found, 0)


def test_a_candidate_whose_interval_excludes_0_is_not_called_chance():
    """5 + 5 prompts, 192 neurons, one 6 sd apart with one spread: the bootstrap test (which
    allows unequal spreads, and is the stricter with so few prompts) finds no survivor, yet the
    candidate's interval, simultaneous over all 192, excludes 0. The text must not call that
    effect large "by chance alone": it says the interval excludes 0 and what that assumes."""
    values = np.random.default_rng(0).normal(size=(10, 192))
    values[:5, 0] += 6.0
    found = discover.discover(values, ["a"] * 5 + ["b"] * 5, permutations=300)
    best = found.candidates[0]
    assert found.survivors == 0
    assert (best.neuron, best.low > 0) == (0, True)
    text = render_discovery(found, 0)
    assert "by chance alone" not in text
    assert "simultaneous 95% interval excludes 0" in text
    assert "one spread per label" in text
    # and LABEL CORRELATION, which shows the same candidates unmarked, says so too
    shown = [f.neuron for f in found.candidates]
    matrix = SimpleNamespace(values=values[:, shown].astype(np.float32), neurons=shown,
                             labels=["a"] * 5 + ["b"] * 5)
    choice = Choice(by=EFFECT, among=found.tested)
    notes = render_label_correlation(label_correlation(matrix, choice), 2, choice=choice)
    assert "an interval here excludes 0 but assumes one spread per label" in notes
    assert "by chance alone" not in notes
    # noise alone: the largest statistic keeps its warning
    noise = discover.discover(np.random.default_rng(1).normal(size=(10, 192)),
                              ["a"] * 5 + ["b"] * 5, permutations=300)
    assert noise.candidates[0].low <= 0 <= noise.candidates[0].high
    assert "expected to be large by chance alone" in render_discovery(noise, 0)


@pytest.mark.parametrize("units", [4, 16])
def test_a_survivor_among_few_units_carries_the_measured_caveat(units):
    # Over few units the bootstrap was measured above alpha with skewed values (welch.py): a
    # survivor among fewer than FEW_UNITS says so; among FEW_UNITS or more it does not.
    rng = np.random.default_rng(3)
    values = rng.normal(size=(20, units))
    values[:10, 0] += 4.0
    found = discover.discover(values, ["a"] * 10 + ["b"] * 10, permutations=200, seed=0)
    assert found.survivors >= 1
    text = render_discovery(found, 0)
    assert (f"over only {units} units" in text) == (units < 16)


def test_nothing_found_because_silent_units_set_the_bar_says_so():
    # Units at one value on most prompts (ReLU-like) fill the null's maxima with huge F's when
    # a resample misses their few other values: a planted neuron found alone is lost among
    # them, and the report says why instead of only 'no neuron survives'.
    rng = np.random.default_rng(0)
    labels = ["a"] * 10 + ["b"] * 10
    values = rng.normal(size=(20, 50))
    values[:10, 0] += 3.0
    assert discover.discover(values, labels, permutations=500).survivors == 1
    assert discover.discover(values, labels, permutations=500).sparse == 0
    for j in range(1, 11):
        values[:, j] = 0.0
        fires = [rng.integers(0, 10), rng.integers(10, 20)] + [rng.integers(0, 20)] * (j % 2)
        values[fires, j] = rng.exponential(size=len(fires)) * 10.0 ** -rng.integers(0, 3)
    found = discover.discover(values, labels, permutations=500)
    assert found.survivors == 0
    assert found.sparse == 10
    assert found.sparse_share >= 0.5
    assert "take one value on at least half the prompts" in render_discovery(found, 0)


def test_noise_without_silent_units_gets_no_silent_unit_note():
    rng = np.random.default_rng(5)
    found = discover.discover(rng.normal(size=(16, 40)), ["x", "y"] * 8, permutations=300)
    assert found.survivors == 0
    assert found.sparse == 0
    assert found.sparse_note() is None
    assert "at least half the prompts" not in render_discovery(found, 0)


def test_silent_on_most_is_one_exact_value_on_at_least_half_the_rows():
    # 0 on rows 0, 1, 4 (3 of 5); 5 on rows 1, 2, 3 (3 of 5, not the smallest value); 3 on 2
    values = np.array([[0.0, 1.0, 1.0], [0.0, 5.0, 2.0], [2.0, 5.0, 3.0], [3.0, 5.0, 3.0],
                       [0.0, 9.0, 4.0]])
    assert discover._silent_on_most(values).tolist() == [True, True, False]


def test_a_resample_where_every_unit_lacks_spread_has_no_largest_f_to_attribute():
    # 3 + 3 prompts, a unit silent on most and one tied in pairs: a resample that misses the
    # silent unit's one value and the other's odd ones leaves both without spread, so it has no
    # largest F; it was put on column 0, and the share said depended on the columns' order
    from lazarus.stats.welch import bootstrap_test

    labels = ["a"] * 3 + ["b"] * 3
    paired = [1.0, 1.0, 2.0, 3.0, 3.0, 4.0]
    silent = [0.0, 0.0, 0.0, 0.0, 0.0, 5.0]
    first = discover.discover(np.array([silent, paired]).T, labels, permutations=1000)
    last = discover.discover(np.array([paired, silent]).T, labels, permutations=1000)
    assert first.sparse == last.sparse == 1
    assert first.sparse_share == last.sparse_share
    codes = np.array([0, 0, 0, 1, 1, 1])
    test = bootstrap_test(np.array([silent, paired]).T, codes,
                          discover.within_label_draws(codes, 1000, 0))
    assert np.isneginf(test.max_null).any()
    assert (test.max_column[np.isneginf(test.max_null)] == -1).all()
