"""The per-token neurons heatmap and strips set the tokenizer's prefix token (BOS) apart: each
layer's colour limit is max |value| over the other rows (computed here by hand from the result
matrix, the prefix rows found from the tokenizer's own ids), the prefix rows are hatched and
clipped to the scale's ends, rows are named "prompt number: token"; and the label categories
keep a CIE76 ΔE of at least 40 (computed here from the sRGB and CIELAB definitions) from every
colour of matplotlib's RdBu_r, from white and from the missing-value grey."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.colors import to_rgb, to_rgba
from transformers import AutoTokenizer

from lazarus.api import Model
from lazarus.render.layers import render_strips
from lazarus.results import palette
from lazarus.results.activations import ActivationMatrix
from lazarus.results.neurons import LayerResult, NeuronsResult
from lazarus.results.plot_neurons import neurons_figure
from lazarus.stats import neurons as analysis

matplotlib = pytest.importorskip("matplotlib")

TOKENS = (("<s>", "a", "b"), ("<s>", "c", "d", "e"))
PROMPTS = ("ab", "cde")


def per_token_result(per_layer: dict[int, np.ndarray], labels: tuple[str, ...] | None = None,
                     prefixes: tuple[int, ...] | None = (1, 1)) -> NeuronsResult:
    rows = [len(t) for t in TOKENS]
    layers = []
    for layer, values in per_layer.items():
        values = np.asarray(values, dtype=np.float32)
        sample_labels = None if labels is None else tuple(
            label for label, n in zip(labels, rows, strict=True) for _ in range(n))
        matrix = ActivationMatrix(values=values, prompts=tuple(
            f"{p}[{j}]" for p, n in zip(PROMPTS, rows, strict=True) for j in range(n)),
            neurons=tuple(range(values.shape[1])), layer=layer, labels=sample_labels)
        layers.append(LayerResult(matrix=matrix, stats=analysis.neuron_stats(matrix),
                                  label_summaries=None,
                                  per_token=(values[:3], values[3:])))
    return NeuronsResult(layers=tuple(layers), neurons=tuple(range(values.shape[1])),
                         prompts=PROMPTS, labels=labels, site="resid_post", position="all",
                         selection=None, choice=analysis.Choice(per_token=True), tokens=TOKENS,
                         prefixes=prefixes)


def heatmaps(figure):
    return [axes for axes in figure.axes if axes.images]


def test_the_limit_leaves_the_prefix_out_and_the_prefix_is_clipped_and_hatched():
    rng = np.random.default_rng(1)
    values = {0: rng.uniform(-3, 3, (7, 4)), 2: rng.uniform(-1, 1, (7, 4))}
    values[0][0, 2], values[0][3, 1] = 80.0, -50.0  # the two BOS rows: an attention sink
    values[2][3, 0] = 9.0
    figure = neurons_figure(per_token_result(values))
    for axes, (layer, matrix) in zip(heatmaps(figure), values.items(), strict=True):
        others = np.abs(np.delete(matrix.astype(np.float32), [0, 3], axis=0)).max()
        image = axes.images[0]
        assert image.get_clim() == pytest.approx((-others, others), rel=1e-6)
        assert axes.get_title() == (f"layer {layer} (resid_post, position all), "
                                    f"scale ±{others:.3g} without prefix <s>")
        hatched = sorted(p.get_gid() for p in axes.patches
                         if (p.get_gid() or "").startswith("prefix-row-"))
        assert hatched == ["prefix-row-0", "prefix-row-3"]
        assert all(p.get_hatch() for p in axes.patches if p.get_gid() in hatched)
        # a BOS value beyond the limit is drawn as the scale's end, like the limit itself
        row, column = np.unravel_index(np.abs(matrix[[0, 3]]).argmax(), (2, 4))
        beyond = float(matrix[[0, 3][row], column])
        assert abs(beyond) > others
        assert image.to_rgba(np.array([[beyond]]))[0, 0].tolist() == image.to_rgba(
            np.array([[math.copysign(others, beyond)]]))[0, 0].tolist()
        names = [t.get_text() for t in axes.get_yticklabels()]
        assert names == ["1: <s>", "1: a", "1: b", "2: <s>", "2: c", "2: d", "2: e"]
    bars = [axes for axes in figure.axes if axes.get_ylabel().startswith("activation")]
    peaks = [np.abs(matrix[[0, 3]].astype(np.float32)).max() for matrix in values.values()]
    for bar, peak in zip(bars, peaks, strict=True):
        assert bar.get_ylabel() == ("activation (white = 0)\nprefix <s> (hatched) clipped: "
                                    f"it reaches ±{peak:.3g}")


def test_a_prefix_within_the_scale_is_hatched_but_not_said_clipped():
    values = np.arange(28, dtype=np.float64).reshape(7, 4) - 14.0  # rows 0, 3: -14..-11, -2..1
    figure = neurons_figure(per_token_result({1: values}))
    (axes,) = heatmaps(figure)
    others = np.abs(np.delete(values, [0, 3], axis=0)).max()
    assert others == 13.0  # row 6: 10..13; row 1: -10..-7
    assert axes.images[0].get_clim() == (-13.0, 13.0)
    assert [a.get_ylabel() for a in figure.axes if a is not axes and a.get_ylabel()] == [
        "activation (white = 0)\nprefix <s> (hatched) clipped: it reaches ±14"]
    # a tokenizer without a prefix: every row sets the limit, nothing hatched, nothing said
    plain = neurons_figure(per_token_result({1: values}, prefixes=(0, 0)))
    (axes,) = heatmaps(plain)
    assert axes.images[0].get_clim() == (-14.0, 14.0)
    assert not [p for p in axes.patches if (p.get_gid() or "").startswith("prefix-row-")]
    assert axes.get_title().endswith("scale ±14")


def test_per_token_rows_on_the_model_mark_the_tokenizers_bos(tiny_model_dirs):
    prompts = ["ab+c", "12*3=", "xyz"]
    for arch in ("llama", "gpt2"):  # with and without a BOS token
        folder = tiny_model_dirs[arch]
        result = Model(str(folder)).neurons(prompts, layers=[0, 1], position="all",
                                            neurons=[1, 5, 9])
        tokenizer = AutoTokenizer.from_pretrained(folder)
        ids = [tokenizer(p)["input_ids"] for p in prompts]
        bos = [tokenizer.bos_token_id if arch == "llama" else None]
        is_bos = np.array([i in bos and j == 0 for row in ids for j, i in enumerate(row)])
        assert is_bos.sum() == (len(prompts) if arch == "llama" else 0)
        assert result.prefix_rows().tolist() == is_bos.tolist()
        figure = neurons_figure(result)
        for axes, layer in zip(heatmaps(figure), [0, 1], strict=True):
            matrix = result.to_numpy(layer)
            limit = float(np.abs(matrix[~is_bos]).max())
            assert axes.images[0].get_clim() == pytest.approx((-limit, limit))
            names = [t.get_text() for t in axes.get_yticklabels()]
            assert names == [f"{k + 1}: {tokenizer.decode([i])}" for k, row in enumerate(ids)
                             for i in row]


def test_text_strips_scale_without_the_prefix_and_clip_it():
    values = np.array([[90.0], [1.0], [3.0], [-70.0], [2.0], [5.0], [4.0]])
    text = render_strips(per_token_result({0: values}), per_token_result({0: values}).layers[0])
    assert "over every token but the tokenizer's prefix: N0 +1.0 to +5.0" in text
    assert ("(prefix <s> clipped to each scale's ends: its values reach -70.0 to +90.0; not "
            "counted in the statistics below)") in text
    lines = text.splitlines()
    # levels by hand on 1..5 (floor(4 (v - 1) / 4)): a 0, b 2 | c 1, d 4, e 3; BOS clipped:
    # +90 -> 5 (level 4, █), -70 -> 1 (level 0, blank)
    first, second = (lines[i + 2] for i, line in enumerate(lines) if line[:2] in ("1.", "2."))
    cells = len("  tokens ")  # the strip's name column
    assert (first[:cells], first[cells:]) == ("  N0     ", "███   ▒")
    assert second[cells:] == "    ░ █ ▓"


# --- label colours --------------------------------------------------------------------------


def lab(colour: tuple[float, float, float]) -> np.ndarray:
    """CIELAB (D65) of sRGB 0..1, from the standards' formulas."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in colour]
    matrix = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    x, y, z = matrix @ np.array(linear) / np.array([0.95047, 1.0, 1.08883])
    f = [t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29
         for t in (x, y, z)]
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_label_colours_keep_away_from_the_scale_white_and_grey():
    scale = matplotlib.colormaps["RdBu_r"]
    others = {"deep blue end": scale(0.0)[:3], "deep red end": scale(1.0)[:3],
              "white": (1.0, 1.0, 1.0), "missing grey": to_rgb("#bdbdbd")}
    others.update({f"scale {v:.3f}": scale(v)[:3] for v in np.linspace(0, 1, 256)})
    points = {name: lab(colour) for name, colour in others.items()}

    def nearest(hex_colour: str) -> float:
        mine = lab(to_rgb(hex_colour))
        return min(float(np.linalg.norm(mine - point)) for point in points.values())

    okabe_ito = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
                 "#000000"]
    assert nearest("#56b4e9") < 15  # the old second label's sky blue sat on the blue arm
    clear = [c for c in okabe_ito if nearest(c) >= 40]
    assert sorted(palette.CATEGORIES) == sorted(clear)
    assert palette.CATEGORIES[-1] == "#f0e442"  # yellow last: faint as a marker on white
    assert len(clear) >= 4
    for index in range(12):  # a fifth label repeats a colour, hatched and with its own marker
        assert nearest(palette.category(index)) >= 40
    assert palette.category(4) == palette.category(0)
    assert palette.category_hatch(4) != palette.category_hatch(0)
    assert palette.category_marker(4) != palette.category_marker(0)


def test_strip_means_and_legend_share_the_category_colours():
    labels = ("one", "two", "three", "four", "five")
    tokens = tuple(("<s>", "x") for _ in labels)
    values = np.arange(20, dtype=np.float32).reshape(10, 2)
    matrix = ActivationMatrix(values=values, prompts=tuple(str(i) for i in range(10)),
                              neurons=(0, 1), layer=0,
                              labels=tuple(label for label in labels for _ in range(2)))
    result = NeuronsResult(
        layers=(LayerResult(matrix=matrix, stats=analysis.neuron_stats(matrix),
                            label_summaries=None),),
        neurons=(0, 1), prompts=tuple(labels), labels=labels, site="resid_post",
        position="all", selection=None, choice=analysis.Choice(per_token=True), tokens=tokens,
        prefixes=(1,) * 5)
    figure = neurons_figure(result)
    (axes,) = heatmaps(figure)
    strips = {p.get_gid(): p for p in axes.patches if (p.get_gid() or "").startswith("label-")}
    for row in range(10):
        k = row // 2
        assert strips[f"label-row-{row}"].get_facecolor() == to_rgba(palette.category(k))
        assert strips[f"label-row-{row}"].get_hatch() == palette.category_hatch(k)
    means = next(a for a in figure.axes if a.get_ylabel() == "mean activation")
    drawn = [line for line in means.lines if line.get_marker() not in (None, "None", "")]
    assert sorted((to_rgba(line.get_color()), line.get_marker()) for line in drawn) == sorted(
        (to_rgba(palette.category(k)), palette.category_marker(k)) for k in range(5))
    legend = figure.legends[0]
    assert [to_rgba(p.get_facecolor()) for p in legend.get_patches()] == [
        to_rgba(palette.category(k)) for k in range(5)]


def test_statistics_per_token_leave_the_tokenizer_s_prefix_out():
    """With position "all" the map keeps every token, BOS included, but the statistics, label
    means and correlations are over the prompts' own tokens: the BOS row (the same in every
    prompt) would otherwise weigh more in the label of shorter prompts. Oracle: numpy over the
    matrix's rows that the tokenizer's own ids say are not its prefix."""
    model = Model("lazarus:demo")
    prompts = ["2+3=", "45*45=", "7-1=", "123+456="]
    labels = ["easy", "hard", "easy", "hard"]
    result = model.neurons(prompts, layers=[3], position="all", neurons=[5, 17, 40],
                           labels=labels)
    tokenizer = AutoTokenizer.from_pretrained(model.info.source)
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    assert all(row[0] == tokenizer.bos_token_id for row in ids)  # this model adds BOS
    own = np.concatenate([np.arange(len(row)) >= 1 for row in ids])
    layer = result.layers[0]
    values = layer.matrix.values
    assert values.shape[0] == sum(len(row) for row in ids)  # the map: every token
    assert not np.allclose(values[~own], values[own].mean(axis=0))  # BOS stands apart
    for stats, column in zip(layer.stats, values[own].T.astype(np.float64), strict=True):
        assert stats.mean == pytest.approx(column.mean(), abs=1e-9)
        assert stats.std == pytest.approx(column.std(), abs=1e-9)
        assert (stats.min, stats.max) == (column.min(), column.max())
    sample_labels = np.array([label for label, row in zip(labels, ids, strict=True)
                              for _ in row])
    for summary in layer.label_summaries:
        rows = own & (sample_labels == summary.label)
        expected = values[rows].astype(np.float64).mean(axis=0)
        assert [e.mean for e in summary.effects] == pytest.approx(expected, abs=1e-9)
        assert [e.count for e in summary.effects] == [int(rows.sum())] * 3


def test_the_label_panel_leaves_the_prefix_out_as_the_statistics_do():
    values = np.array([[80.0, -9.0], [1.0, 2.0], [3.0, 4.0],            # ab:  <s> a b
                       [80.0, -9.0], [5.0, 6.0], [7.0, 9.0], [9.0, 1.0]])  # cde: <s> c d e
    figure = neurons_figure(per_token_result({0: values}, labels=("x", "y")))
    panel = next(axes for axes in figure.axes if axes.get_title().startswith("per-label"))
    means = [list(line.get_ydata()) for line in panel.lines  # one per label, x then y
             if line.get_marker() not in (None, "None", "")]
    assert means == [[2.0, 3.0], [7.0, pytest.approx(16 / 3)]]


def test_the_legend_counts_the_tokens_the_means_are_over():
    """Each label's count in the legend leaves the prefix rows out, as its means do."""
    values = np.arange(14, dtype=np.float32).reshape(7, 2)
    figure = neurons_figure(per_token_result({0: values}, labels=("x", "y")))
    texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert texts == ["x (2 tokens)", "y (3 tokens)"]  # ab: <s> a b; cde: <s> c d e
