"""Statistics and label correlation, checked against hand arithmetic and np.corrcoef."""

import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from lazarus.results.activations import ActivationMatrix
from lazarus.stats.neurons import (
    label_correlation,
    neuron_stats,
    point_biserial,
)


def matrix(columns, labels=None, neurons=None):
    values = np.array(columns, dtype=np.float32).T  # [prompts, neurons]
    prompts = tuple(f"p{i}" for i in range(values.shape[0]))
    return ActivationMatrix(
        values=values,
        prompts=prompts,
        neurons=tuple(neurons or range(values.shape[1])),
        layer=3,
        labels=None if labels is None else tuple(labels),
    )


def test_stats_by_hand_population_std():
    # [1, 2, 3, 6]: mean 12/4 = 3; deviations -2,-1,0,3; squares sum 14; 14/4 = 3.5
    # [-4, -4, 0, 0]: mean -2; deviations all +-2; variance 4, std 2
    stats = neuron_stats(matrix([[1, 2, 3, 6], [-4, -4, 0, 0]], neurons=[808, 12]))
    assert [s.neuron for s in stats] == [808, 12]
    first, second = stats
    assert (first.min, first.max, first.mean) == (1.0, 6.0, 3.0)
    assert first.std == pytest.approx(math.sqrt(3.5), abs=1e-12)
    assert (second.min, second.max, second.mean, second.std) == (-4.0, 0.0, -2.0, 2.0)


def test_stats_are_float64_and_json_friendly():
    # 0.1 as float32 is 0.100000001490116...; float64 arithmetic keeps that value exactly
    stats = neuron_stats(matrix([[0.1, 0.1]]))
    assert stats[0].mean == float(np.float32(0.1))
    assert stats[0].std == 0.0
    assert json.loads(json.dumps(asdict(stats[0])))["max"] == float(np.float32(0.1))


def test_point_biserial_equals_corrcoef():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.normal(size=9).astype(np.float32)
        member = rng.random(9) < 0.5
        if member.all() or not member.any():
            continue
        expected = np.corrcoef(values.astype(np.float64), member.astype(np.float64))[0, 1]
        assert point_biserial(values, member) == pytest.approx(expected, abs=1e-12)


def test_label_correlation_matches_corrcoef_per_label_and_neuron():
    rng = np.random.default_rng(1)
    labels = ["b", "a", "c", "a", "b", "c", "a"]
    columns = rng.normal(size=(3, 7)) * 50
    summaries = label_correlation(matrix(columns, labels, neurons=[5, 7, 9]))
    for summary in summaries:
        indicator = np.array([label == summary.label for label in labels], dtype=np.float64)
        for effect, column in zip(summary.effects, columns, strict=True):
            column = column.astype(np.float32).astype(np.float64)
            expected = np.corrcoef(column, indicator)[0, 1]
            assert effect.r == pytest.approx(expected, abs=1e-12)


def test_means_counts_and_given_order_on_spec_example():
    # neuron 808 from the spec's map; labels as given there, listed in the order first given
    labels = ["trivial", "trivial", "medium", "hard", "hard"]
    summaries = label_correlation(matrix([[-156, 2, 232, 326, 168]], labels, neurons=[808]))
    assert [(s.label, s.count) for s in summaries] == [("trivial", 2), ("medium", 1), ("hard", 2)]
    hard = summaries[2].effects[0]
    assert hard.neuron == 808
    assert hard.mean == 247.0  # (326 + 168) / 2
    assert hard.rest_mean == 26.0  # (-156 + 2 + 232) / 3
    trivial = summaries[0].effects[0]
    assert trivial.mean == -77.0  # (-156 + 2) / 2
    assert trivial.rest_mean == pytest.approx(726 / 3)  # (232 + 326 + 168) / 3


def test_undefined_correlation_gives_none():
    one_label = label_correlation(matrix([[1, 2, 3]], ["a", "a", "a"]))
    effect = one_label[0].effects[0]
    assert (effect.mean, effect.rest_mean, effect.r, effect.verdict) == (2.0, None, None, None)

    constant = label_correlation(matrix([[7, 7, 7, 7]], ["a", "b", "a", "b"]))
    for summary in constant:
        effect = summary.effects[0]
        assert (effect.mean, effect.rest_mean, effect.r, effect.verdict) == (7.0, 7.0, None, None)


def test_summaries_are_json_friendly():
    summaries = label_correlation(matrix([[1, 2, 3]], ["a", "b", "b"]))
    text = json.dumps([asdict(s) for s in summaries])
    assert json.loads(text)[0]["effects"][0]["mean"] == 1.0


def test_no_labels_is_an_error():
    with pytest.raises(ValueError, match="labels"):
        label_correlation(matrix([[1, 2]]))
