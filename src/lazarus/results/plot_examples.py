"""The `examples` picture (`--plot FILE`, `ExamplesResult.plot`): per neuron (the first
`MAX_PANELS`), the histogram of its values over every token of the corpus, exactly the bins and
counts of the report and the JSON (`histogram_edges`, `histogram_counts`: the quantile sketch's
buckets put into equal bins between the neuron's min and max, so approximate within a bucket),
each bar coloured on the diverging scale of `palette` by its bin's centre, with the quantiles
(p1 ... p99, from the same sketch) marked as vertical lines and the mean as a solid one.
matplotlib is imported only when drawing."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np

from lazarus.results import palette
from lazarus.results.plot_common import DPI, draw, figure_class, title_text
from lazarus.text import plural

MAX_PANELS = 16  # neurons drawn (the first ones, in the result's order; the title says so)
ACROSS = 4  # panels per row
MEDIAN = "p50"
TITLE_CHARS_PER_INCH = 12  # of the 9 pt title: wrapped to the figure, never cut at its edges


def plot_examples(result: Any, path: str, size: tuple[float, float] | None = None,
                  dpi: int = DPI) -> None:
    """Draw an `ExamplesResult` (see the module docstring) and write it to `path`."""
    draw(examples_figure, result, path, size, dpi)


def examples_figure(result: Any, size: tuple[float, float] | None = None,
                    dpi: int = DPI) -> Any:
    """The matplotlib `Figure` of `plot_examples`; `size` in inches (default: fits)."""
    neurons = result.neurons[:MAX_PANELS]
    columns = max(1, min(ACROSS, len(neurons)))
    rows = max(1, math.ceil(len(neurons) / columns))
    if size is None:
        size = (3.6 * columns + 0.4, 2.9 * rows + 0.9)
    figure = figure_class()(figsize=size, dpi=dpi, layout="constrained")
    for index, neuron in enumerate(neurons):
        _histogram(figure.add_subplot(rows, columns, index + 1), neuron)
    title = (f"layer {result.layer} ({result.site}): values over "
             f"{plural(result.tokens, 'token')} of {title_text(result.corpus)}")
    if len(result.neurons) > MAX_PANELS:
        title += (f"\nthe first {MAX_PANELS} of {len(result.neurons)} neurons (choose "
                  "others with -n)")
    title += ("\nbars: tokens per bin (each value counted at its sketch bucket's value); "
              "dashed: quantiles; solid: mean")
    width = max(20, int(size[0] * TITLE_CHARS_PER_INCH))
    figure.suptitle("\n".join(textwrap.fill(line, width) for line in title.split("\n")),
                    fontsize=9)
    return figure


def _histogram(axes: Any, neuron: Any) -> None:
    edges = np.asarray(neuron.histogram_edges, dtype=np.float64)
    counts = np.asarray(neuron.histogram_counts, dtype=np.float64)
    widths = np.diff(edges)
    left = edges[:-1]
    if not np.any(widths > 0):  # one value only: a bar of nominal width around it
        widths = np.full(len(counts), 0.1 * max(1.0, abs(float(edges[0]))) / len(counts))
        left = edges[0] - widths.sum() / 2 + widths * np.arange(len(counts))
    limit = float(np.max(np.abs(edges))) if edges.size else 1.0
    centres = left + widths / 2
    axes.bar(left, counts, width=widths, align="edge", edgecolor="0.3", linewidth=0.4,
             color=[palette.hex_colour(float(c), limit) for c in centres], gid="histogram")
    top = float(counts.max()) if counts.size and counts.max() > 0 else 1.0
    shown = [(name, value) for name, value in neuron.quantiles.items() if np.isfinite(value)]
    for tier, (name, value) in enumerate(shown):
        axes.axvline(value, color="black", linewidth=1.0 if name == MEDIAN else 0.7,
                     linestyle="--", gid=f"quantile-{name}", zorder=2)
        # on a white ground (the line does not strike it through), neighbours on two tiers
        axes.text(value, top * (1.04 if tier % 2 == 0 else 1.14), name, fontsize=6,
                  ha="center", va="bottom", zorder=4, gid=f"quantile-label-{name}",
                  bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6})
    if np.isfinite(neuron.mean):  # black: a red or blue line would read as a value's colour
        axes.axvline(neuron.mean, color="black", linewidth=1.4, gid="mean", zorder=3)
    axes.set_ylim(0, top * 1.26)
    axes.set_title(f"N{neuron.neuron}: mean {neuron.mean:.3g}, std {neuron.std:.3g}, "
                   f"{neuron.fraction_positive:.0%} > 0", fontsize=8)
    axes.set_xlabel("value", fontsize=8)
    axes.set_ylabel("tokens", fontsize=8)
    axes.tick_params(length=2, labelsize=7)
