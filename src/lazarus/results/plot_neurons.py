"""The `neurons` picture (`--plot FILE`, `NeuronsResult.plot`): the activation heatmap (rows =
prompts, or every token of every prompt for position "all"; columns = neurons), one panel per
layer, each on its own diverging scale centred at 0 with symmetric limits ±(that layer's largest
|value|) and its own colour bar, so that a layer of small values is not washed out beside a
layer of large ones. Per token, rows are named by prompt number and token text, and the
tokenizer's prefix token (BOS, `NeuronsResult.prefix_rows`: an attention sink, 10-100x the
other tokens) is left out of the limit: its rows are hatched and clipped to the scale's ends,
which the colour bar and title say with the value it reaches. With labels, each row carries
its label's colour (`palette.category`, hatched from the fifth label on: `category_hatch`; in
order of first appearance) in a strip left of the heatmap, and a panel under it shows each
label's mean per neuron, in the same colour, with its 95% t-interval of the mean
(`lazarus.stats.t_interval`; exact for normal values, and said to cover less for neurons chosen
on these prompts); per token (position "all") the means have no interval, since the tokens of
one prompt are not independent samples. matplotlib is imported only when drawing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lazarus.results import palette
from lazarus.results.plot_common import (
    DPI,
    MAX_TICKS,
    colour_map,
    draw,
    figure_class,
    tick_text,
    title_text,
)
from lazarus.results.plot_common import ticks as set_ticks
from lazarus.stats.neurons import GIVEN, Choice
from lazarus.stats.t_interval import label_means
from lazarus.text import plural

PANELS_ACROSS = 48  # layers side by side while they hold this many neurons in all (1 to 4)
STRIP = 0.6  # width of the label-colour strip left of a heatmap, in columns


def plot_neurons(result: Any, path: str, size: tuple[float, float] | None = None,
                 dpi: int = DPI) -> None:
    """Draw `result` (see the module docstring) and write it to `path` (.png or .svg)."""
    draw(neurons_figure, result, path, size, dpi)


def layer_limit(values: np.ndarray, prefix: np.ndarray | None = None) -> float:
    """The colour limit of one layer's panel: its largest finite |value| over the rows that are
    not a tokenizer prefix token (`prefix`: a flag per row; every row when all are), 1 when
    there is none, or it is 0."""
    values = np.asarray(values, dtype=np.float64)
    if prefix is not None and not prefix.all():
        values = values[~prefix]
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def prefix_peak(values: np.ndarray, prefix: np.ndarray) -> float | None:
    """The largest finite |value| of the prefix rows, or None without any."""
    found = np.abs(np.asarray(values, dtype=np.float64)[prefix])
    found = found[np.isfinite(found)]
    return float(found.max()) if found.size else None


def row_names(result: Any) -> list[str]:
    """The heatmap's row labels: per token "prompt number: token text", else the prompts."""
    if result.position == "all" and result.tokens is not None:
        return [f"{i + 1}: {tick_text(token)}" for i, tokens in enumerate(result.tokens)
                for token in tokens]
    return [tick_text(p) for p in result.layers[0].matrix.prompts]


def label_colours(labels: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Each label's colour: `palette.category` in order of first appearance."""
    return {label: palette.category(i) for i, label in enumerate(dict.fromkeys(labels))}


def label_order(labels: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Each label's category index (first appearance), for `palette.category_*`."""
    return {label: i for i, label in enumerate(dict.fromkeys(labels))}


def neurons_figure(result: Any, size: tuple[float, float] | None = None,
                   dpi: int = DPI) -> Any:
    """The matplotlib `Figure` of `plot_neurons` for a `NeuronsResult`; `size` in inches
    (default: fits the data)."""
    figure_type = figure_class()
    layers = result.layers
    labels = layers[0].matrix.labels
    labelled = labels is not None
    samples, neurons = layers[0].matrix.values.shape
    columns = min(len(layers), 4, max(1, PANELS_ACROSS // max(neurons, 1)))
    rows = math.ceil(len(layers) / columns)
    panel_w = min(max(2.6 + 0.35 * neurons, 4.6), 12.6)
    heat_h = min(max(0.8 + 0.2 * min(samples, MAX_TICKS), 2.5), 9.0)
    label_h = 2.8 if labelled else 0.0
    if size is None:
        size = (columns * panel_w + 0.6, rows * (heat_h + label_h) + (1.0 if labelled else 0.6))
    figure = figure_type(figsize=size, dpi=dpi, layout="constrained")
    grid = figure.add_gridspec(rows * (2 if labelled else 1), columns,
                               height_ratios=[heat_h, label_h] * rows if labelled else None)
    colours = colour_map()
    position = "" if result.position == "last" else f", position {result.position}"
    marks = label_order(labels) if labelled else {}
    prefix = result.prefix_rows()
    # the rows the label means (and their counts) are over: not the prefix (BOS), unless that
    # is every row
    counted = ~prefix if not prefix.all() else np.ones_like(prefix)
    names = row_names(result)
    first = _prefix_text(result)
    for i, layer in enumerate(layers):
        row, column = divmod(i, columns)
        axes = figure.add_subplot(grid[row * (2 if labelled else 1), column])
        limit = layer_limit(layer.matrix.values, prefix)
        peak = prefix_peak(layer.matrix.values, prefix)
        clipped = peak is not None and peak > limit and not prefix.all()
        image = _heatmap(axes, layer.matrix, colours, limit, result.position == "all", marks,
                         names, prefix)
        scale = f"scale ±{limit:.3g}" + (f" without prefix {first}" if prefix.any() else "")
        axes.set_title(f"layer {layer.matrix.layer} ({result.site}{position}), {scale}",
                       fontsize=9)
        bar = figure.colorbar(image, ax=axes, shrink=0.9, aspect=30, pad=0.01,
                              extend="both" if clipped else "neither")
        bar.set_label("activation (white = 0)" + (
            f"\nprefix {first} (hatched) clipped: it reaches ±{peak:.3g}" if clipped else ""),
            fontsize=8)
        bar.ax.tick_params(labelsize=7)
        if labelled:
            _label_panel(figure.add_subplot(grid[row * 2 + 1, column]), layer.matrix,
                         counted, result.choice, marks)
    if labelled:
        from matplotlib.patches import Patch

        noun = "token" if result.choice.per_token else "prompt"
        kept = [label for label, keep in zip(labels, counted, strict=True) if keep]
        handles = [Patch(facecolor=palette.category(i), hatch=palette.category_hatch(i),
                         edgecolor="white", linewidth=0,
                         label=f"{tick_text(label)} ({plural(kept.count(label), noun)})")
                   for label, i in marks.items()]
        figure.legend(handles=handles, loc="outside lower center", fontsize=8,
                      ncols=min(len(handles), 6), title="label (row strip and means)",
                      title_fontsize=8)
    return figure


def _prefix_text(result: Any) -> str:
    """The prefix tokens' texts, for notes (e.g. "<s>")."""
    if result.tokens is None or result.prefixes is None:
        return ""
    found = dict.fromkeys(token for tokens, count in zip(result.tokens, result.prefixes,
                                                         strict=False) for token in tokens[:count])
    return title_text(" ".join(found))


def _heatmap(axes: Any, matrix: Any, colours: Any, limit: float, tokens: bool,
             marks: dict[str, int], names: list[str], prefix: np.ndarray) -> Any:
    from matplotlib.patches import Rectangle

    values = np.ma.masked_invalid(np.asarray(matrix.values, dtype=np.float64))
    image = axes.imshow(values, cmap=colours, vmin=-limit, vmax=limit, aspect="auto",
                        interpolation="nearest")  # beyond ±limit: the scale's end colours
    for row in np.flatnonzero(prefix):  # not in the scale: hatched over
        axes.add_patch(Rectangle((-0.5, row - 0.5), len(matrix.neurons), 1.0, fill=False,
                                 hatch="///", edgecolor="0.6", linewidth=0,
                                 gid=f"prefix-row-{row}"))
    if marks:  # a strip of label colours, one cell per row, left of the first neuron
        for row, label in enumerate(matrix.labels):
            axes.add_patch(Rectangle((-0.5 - STRIP, row - 0.5), STRIP * 0.8, 1.0,
                                     facecolor=palette.category(marks[label]),
                                     hatch=palette.category_hatch(marks[label]),
                                     edgecolor="white", linewidth=0, gid=f"label-row-{row}"))
        axes.set_xlim(-0.5 - STRIP, len(matrix.neurons) - 0.5)
    set_ticks(axes.set_yticks, names)
    set_ticks(axes.set_xticks, [f"N{n}" for n in matrix.neurons],
              rotate=len(matrix.neurons) > 8)
    axes.set_xlabel("neuron")
    axes.set_ylabel("token of prompt" if tokens else "prompt")
    axes.tick_params(length=2, labelsize=8)
    return image


def _label_panel(axes: Any, matrix: Any, counted: np.ndarray, choice: Choice,
                 marks: dict[str, int]) -> None:
    """Each label's mean per neuron (in its colour) over the `counted` rows (not the
    tokenizer's prefix, as LABEL CORRELATION), with its t-interval when the samples are
    prompts."""
    labels = tuple(label for label, keep in zip(matrix.labels, counted, strict=True) if keep)
    found = label_means(matrix.values[counted], labels)
    width = 0.8 / len(found)
    x = np.arange(len(matrix.neurons), dtype=np.float64)
    for i, (label, (means, halves, _)) in enumerate(found.items()):
        axes.errorbar(x - 0.4 + width * (i + 0.5), means,
                      yerr=None if choice.per_token else np.nan_to_num(halves),
                      fmt=palette.category_marker(marks[label]),
                      markersize=4, capsize=2, linewidth=1,
                      color=palette.category(marks[label]),
                      label=tick_text(label))
    axes.axhline(0.0, color="0.5", linewidth=0.8)
    axes.set_xlim(-0.5, len(matrix.neurons) - 0.5)
    set_ticks(axes.set_xticks, [f"N{n}" for n in matrix.neurons],
              rotate=len(matrix.neurons) > 8)
    axes.set_ylabel("mean activation")
    axes.set_title(_label_title(choice), fontsize=9)
    axes.tick_params(length=2, labelsize=8)


def _label_title(choice: Choice) -> str:
    """What the label panel's bars claim (as LABEL CORRELATION says of its intervals)."""
    if choice.per_token:
        return ("per-label mean over tokens\n(no interval: the tokens of one prompt are not "
                "independent samples)")
    title = "per-label mean over prompts\n± 95% t-interval of the mean (normal values)"
    if choice.by != GIVEN:
        title += "\nneurons chosen on these prompts: the intervals may cover less than 95%"
    return title
