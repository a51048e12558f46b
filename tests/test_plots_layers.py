"""The neurons heatmap and the probe curve as drawn (`results.plot_neurons`,
`results.plot_probe`): each layer's panel on its own colour scale, ±(its largest |value|), with
its own colour bar; rows marked by their label's colour with a legend; the probe's fold spread
the folds' lowest to highest accuracy (recomputed here fold by fold), never outside 0-100%."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from lazarus.results import palette
from lazarus.results.activations import ActivationMatrix
from lazarus.results.neurons import LayerResult, NeuronsResult
from lazarus.results.plot_neurons import neurons_figure
from lazarus.results.plot_probe import probe_figure
from lazarus.stats import neurons as analysis
from lazarus.stats import probe
from lazarus.stats.folds import cross_validate, fold_count, plan_fits

matplotlib = pytest.importorskip("matplotlib")


def make_result(per_layer: dict[int, np.ndarray], labels: list[str] | None = None):
    first = next(iter(per_layer.values()))
    prompts = tuple(f"prompt {i}" for i in range(first.shape[0]))
    neurons = tuple(range(first.shape[1]))
    layers = []
    for layer, values in per_layer.items():
        matrix = ActivationMatrix(values=np.asarray(values, dtype=np.float32), prompts=prompts,
                                  neurons=neurons, layer=layer,
                                  labels=None if labels is None else tuple(labels))
        layers.append(LayerResult(matrix=matrix, stats=analysis.neuron_stats(matrix),
                                  label_summaries=analysis.label_correlation(matrix)
                                  if labels else None))
    return NeuronsResult(layers=tuple(layers), neurons=neurons, prompts=prompts,
                         labels=None if labels is None else tuple(labels), site="resid_post",
                         position="last", selection=None)


def heatmaps(figure):
    return [axes for axes in figure.axes if axes.images]


def test_each_layer_has_its_own_scale_and_colour_bar():
    rng = np.random.default_rng(0)
    small = rng.uniform(-1, 1, (5, 4))
    small[2, 1] = -8.0  # layer 0: largest |value| 8 (negative)
    large = rng.uniform(-1, 1, (5, 4))
    large[4, 3] = 22.0  # layer 3: 22
    figure = neurons_figure(make_result({0: small, 3: large}))
    (first, second) = heatmaps(figure)
    assert first.images[0].get_clim() == pytest.approx((-8.0, 8.0))
    assert second.images[0].get_clim() == pytest.approx((-22.0, 22.0))
    assert first.get_title().endswith("scale ±8") and second.get_title().endswith("scale ±22")
    # each panel's extreme is the scale's end: the small layer's -8 as deep as the large's -22
    image_0, image_3 = first.images[0], second.images[0]
    assert image_0.to_rgba(np.array([[-8.0]]))[0, 0].tolist() == \
        image_3.to_rgba(np.array([[-22.0]]))[0, 0].tolist()
    bars = [axes for axes in figure.axes if axes.get_ylabel() == "activation (white = 0)"]
    assert sorted(tuple(np.round(b.get_ylim(), 6)) for b in bars) == [(-22.0, 22.0),
                                                                      (-8.0, 8.0)]


def test_an_all_zero_layer_keeps_a_unit_scale():
    figure = neurons_figure(make_result({0: np.zeros((3, 2)), 1: np.eye(3, 2) * 4}))
    assert [a.images[0].get_clim() for a in heatmaps(figure)] == [(-1.0, 1.0), (-4.0, 4.0)]


def test_rows_carry_their_labels_colour_with_a_legend():
    labels = ["hard", "easy", "hard", "odd", "easy"]
    figure = neurons_figure(make_result({0: np.eye(5, 3), 1: -np.eye(5, 3)}, labels))
    order = {"hard": 0, "easy": 1, "odd": 2}  # first appearance
    for axes in heatmaps(figure):
        strips = {p.get_gid(): p for p in axes.patches if (p.get_gid() or "").startswith(
            "label-row-")}
        assert len(strips) == len(labels)
        for row, label in enumerate(labels):
            strip = strips[f"label-row-{row}"]
            assert strip.get_facecolor() == to_rgba(palette.category(order[label]))
            assert strip.get_y() == row - 0.5 and strip.get_x() + strip.get_width() < -0.5
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["hard (2 prompts)",
                                                           "easy (2 prompts)",
                                                           "odd (1 prompt)"]
    assert [to_rgba(h.get_facecolor()) for h in legend.legend_handles] == [
        to_rgba(palette.category(i)) for i in range(3)]
    means = [axes for axes in figure.axes if axes.get_ylabel() == "mean activation"]
    assert len(means) == 2
    colours = {bars.get_label(): to_rgba(bars.lines[0].get_color())
               for bars in means[0].containers}
    assert colours == {label: to_rgba(palette.category(i)) for label, i in order.items()}


def _report():
    """12 prompts, 5 folds; at layer 1 the folds score 0.5 .. 1.0 with mean 0.9 and std 0.2:
    mean + std is above 100%."""
    rng = np.random.default_rng(2)
    sign = np.r_[np.ones(6), -np.ones(6)][:, None]
    rows = {layer: rng.normal(size=(12, 8)) + 0.5 * layer * sign for layer in range(4)}
    return rows, probe.probe_layers(rows, 6, label_a="hard", label_b="easy", permutations=50)


def test_probe_fold_spread_is_the_folds_range_within_0_and_1():
    rows, report = _report()
    assert any(s.accuracy + s.accuracy_std > 1 for s in report.layers)  # the old bar's flaw
    is_a = np.arange(12) < 6
    plan = plan_fits(is_a, fold_count(6, 6), 0, report.seed)  # the same real folds
    folds = {layer: cross_validate(rows[layer], plan, report.method)[0][0] for layer in rows}
    for score in report.layers:
        assert score.accuracy == pytest.approx(folds[score.layer].mean(), abs=1e-12)
        assert (score.accuracy_min, score.accuracy_max) == (folds[score.layer].min(),
                                                            folds[score.layer].max())
    axes = probe_figure(report).axes[0]
    (bars,) = axes.containers
    segments = bars.lines[2][0].get_segments()  # one vertical segment per layer
    assert len(segments) == len(report.layers)
    for segment, score in zip(segments, report.layers, strict=True):
        (x0, low), (x1, high) = segment
        assert x0 == x1 == score.layer
        assert low == pytest.approx(folds[score.layer].min(), abs=1e-12)
        assert high == pytest.approx(folds[score.layer].max(), abs=1e-12)
        assert 0.0 <= low <= high <= 1.0
    (band,) = axes.collections[:1]
    corners = np.concatenate([path.vertices for path in band.get_paths()])
    assert corners[:, 1].min() >= 0.0 and corners[:, 1].max() <= 1.0
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert f"balanced accuracy (mean over {report.folds} folds; bar: the folds' lowest to " \
           "highest)" in legend
