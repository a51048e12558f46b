"""`--auto-discover` in the library: no more false discoveries than promised on noise, a planted
neuron found; the massive-activation flags."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lazarus.errors import LazarusError
from lazarus.stats import discover
from lazarus.stats.neurons import MASSIVE_FACTOR, massive_dimensions


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


def test_smallest_p_by_counting_labellings():
    # 2 + 2: 6 labellings, and swapping the two labels gives the same |d|: 2/6
    assert discover.smallest_p(np.array([0, 0, 1, 1])) == pytest.approx(1 / 3)
    # 3 + 2: 10 labellings; 2 + 2 + 1: 30
    assert discover.smallest_p(np.array([0, 0, 0, 1, 1])) == pytest.approx(1 / 10)
    assert discover.smallest_p(np.array([0, 0, 1, 1, 2])) == pytest.approx(1 / 30)
    found = discover.discover(np.random.default_rng(0).normal(size=(4, 5)), ["a", "a", "b", "b"],
                              permutations=100)
    assert "no p can fall below 0.05" in found.describe()


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
