"""A neuron constant within each label but different between them (the labels perfectly
separated) has an infinite standardized effect, not NaN: d = +-inf, eta-squared 1, r = +-1, each
with its interval, a mark on evidence, valid JSON and a note; a neuron constant over every prompt
has no effect at all and stays undefined."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lazarus.cli.main import main
from lazarus.render.neurons import render_discovery, render_label_correlation
from lazarus.results.activations import ActivationMatrix
from lazarus.results.neurons import discovery_json, neurons_json
from lazarus.stats.discover import discover
from lazarus.stats.effects import cohens_d, eta_squared
from lazarus.stats.intervals import d_interval, eta_squared_interval, r_interval
from lazarus.stats.neurons import Choice, label_correlation, neuron_stats, separation_chance


def _values(per_label: int, seed: int = 0) -> np.ndarray:
    """[2 x per_label, 4] float32: column 0 separated (higher on the first label), 1 separated
    (lower), 2 constant everywhere, 3 noise."""
    rng = np.random.default_rng(seed)
    first, second = np.full(per_label, 0.7), np.full(per_label, 0.2)
    return np.stack([np.r_[first, second], np.r_[second, first],
                     np.full(2 * per_label, 0.3), rng.normal(size=2 * per_label)],
                    axis=1).astype(np.float32)


def _matrix(per_label: int) -> ActivationMatrix:
    values = _values(per_label)
    return ActivationMatrix(values=values, prompts=tuple(f"p{i}" for i in range(len(values))),
                            neurons=(10, 11, 12, 13), layer=1,
                            labels=("a",) * per_label + ("b",) * per_label)


def test_effects_of_a_separated_neuron_are_infinite_and_of_a_constant_one_undefined():
    values = _values(6).astype(np.float64)  # float32 0.7 and 0.2: rounding must not matter
    codes = np.r_[np.zeros(6, int), np.ones(6, int)]
    d = cohens_d(values, codes)
    assert (d[0], d[1]) == (math.inf, -math.inf)
    assert np.isnan(d[2])
    assert np.isfinite(d[3])
    eta2 = eta_squared(values, codes)
    assert (eta2[0], eta2[1]) == (1.0, 1.0)
    assert np.isnan(eta2[2])
    low, high = d_interval(d, 6, 6)
    assert (low[0], high[0], low[1], high[1]) == (math.inf, math.inf, -math.inf, -math.inf)
    assert np.isnan(low[2]) and np.isnan(high[2])
    assert low[3] < d[3] < high[3]
    low, high = eta_squared_interval(np.array([1.0]), [4, 4, 4])
    assert (low[0], high[0]) == (1.0, 1.0)
    low, high = r_interval(np.array([1.0, -1.0]), 6, 6)
    assert list(low) == [1.0, -1.0] and list(high) == [1.0, -1.0]


def test_label_correlation_marks_a_separation_only_when_chance_cannot_make_it():
    for per_label, marked in ((6, True), (2, False)):
        summaries = label_correlation(_matrix(per_label))
        first = summaries[0].effects
        print(per_label, "per label: chance", separation_chance(per_label, per_label),
              [(e.r, e.r_ci, e.verdict) for e in first[:3]])
        assert (first[0].r, first[1].r) == (1.0, -1.0)
        assert (first[0].r_ci, first[1].r_ci) == ((1.0, 1.0), (-1.0, -1.0))
        assert (first[0].verdict, first[1].verdict) == (("high", "low") if marked
                                                        else (None, None))
        assert (first[2].r, first[2].r_ci, first[2].verdict) == (None, None, None)
    assert separation_chance(6, 6) == pytest.approx(2 / 924)
    assert separation_chance(2, 2) == pytest.approx(1 / 3)
    text = render_label_correlation(label_correlation(_matrix(6)), 2)
    assert "r=+1.00 [+1.00, +1.00]  ← fires high for a" in text
    assert "r = ±1: the labels perfectly separated, no spread within either" in text
    assert "nan" not in text


def test_discovery_shows_infinite_d_with_a_note_and_writes_valid_json():
    matrix = _matrix(6)
    found = discover(matrix.values, matrix.labels, matrix.neurons, permutations=200)
    assert 12 in found.untested  # constant over every prompt: no effect, not tested
    shown = {f.neuron: f for f in found.shown}
    assert (shown[10].effect, shown[10].low, shown[10].high) == (math.inf,) * 3
    assert (shown[11].effect, shown[11].low, shown[11].high) == (-math.inf,) * 3
    assert shown[10].separated and shown[11].separated
    assert {f.neuron for f in found.findings} >= {10, 11}  # survivors, not dropped
    text = render_discovery(found, 1)
    assert "d= +inf  95% CI [+inf, +inf]" in text
    assert "d= -inf  95% CI [-inf, -inf]" in text
    assert "d = ±inf: the labels perfectly separated" in text
    assert "nan" not in text
    document = discovery_json(found)
    json.dumps(document, allow_nan=False)
    rows = {f["neuron"]: f for f in document["findings"]}
    assert (rows[10]["effect"], rows[10]["ci95"]) == (None, [None, None])
    assert (rows[10]["perfect_separation"], rows[10]["effect_text"]) == (True, "+inf")
    assert (rows[11]["perfect_separation"], rows[11]["effect_text"]) == (True, "-inf")
    whole = neurons_json(matrix, neuron_stats(matrix), label_correlation(matrix), None,
                         {"discovery": document})
    assert json.loads(json.dumps(whole, allow_nan=False)) == whole
    assert whole["label_correlation"]["a"]["neurons"]["10"]["r_ci95"] == [1.0, 1.0]


def test_the_cli_shows_infinite_d_on_a_tiny_model(llama_dir, tmp_path, capsys):
    """At the first token after BOS, every prompt of a label starts with the same token, so
    every neuron there is constant within each label (causal attention): perfectly separated.
    At BOS itself nothing differs at all, and the command says no neuron varies."""
    prompts = "a x y|a z w|a q|a b c|b x y|b z|b q r|b w"
    labels = "A|A|A|A|B|B|B|B"
    output, picture = tmp_path / "n.json", tmp_path / "n.png"
    base = ["introspect", "neurons", "-m", str(llama_dir), "-l", "1", "--prompts", prompts,
            "--labels", labels, "--auto-discover", "--top-k", "3", "--permutations", "200"]
    assert main([*base, "--position", "1", "-o", str(output), "--plot", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "d = ±inf: the labels perfectly separated" in out
    assert "95% CI [+inf, +inf]" in out
    assert "nan" not in out.lower()
    document = json.loads(output.read_text(), parse_constant=lambda name: pytest.fail(name))
    findings = document["discovery"]["findings"]
    assert len(findings) == 3
    assert all(f["perfect_separation"] and f["effect"] is None for f in findings)
    assert {f["effect_text"] for f in findings} <= {"+inf", "-inf"}
    for neuron in document["neurons"]:
        effect = document["label_correlation"]["A"]["neurons"][str(neuron)]
        assert abs(effect["r"]) == 1.0
        assert effect["r_ci95"] == [effect["r"], effect["r"]]
        assert effect["verdict"] == ("high" if effect["r"] > 0 else "low")  # 2/C(8,4) < 0.05
    assert picture.stat().st_size > 0
    assert main([*base, "--position", "0"]) == 2
    assert "no neuron of this layer varies" in capsys.readouterr().err


def test_per_token_samples_get_no_separation_note():
    """Per token there is no interval and no mark, so nothing to say about them at r = +-1."""
    summaries = label_correlation(_matrix(6), Choice(per_token=True))
    assert summaries[0].effects[0].r == 1.0
    text = render_label_correlation(summaries, 2, choice=Choice(per_token=True))
    assert "perfectly separated" not in text
    assert "[+1.00" not in text
