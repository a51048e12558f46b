"""The `probe` picture (`--plot FILE`, `ProbeResult.plot`): held-out balanced accuracy by layer
(the mean over folds, with a bar from the lowest to the highest fold: a range of accuracies, so
it stays inside 0-100%, where mean ± std need not) over the shuffled-label baseline's band (mean
± std over relabellings, cut to 0-100%), with the chance line (50%) and the best layer marked.
matplotlib is imported only when drawing."""

from __future__ import annotations

from typing import Any

import numpy as np

from lazarus.results import palette
from lazarus.results.plot_common import DPI, draw, figure_class, tick_text
from lazarus.stats.probe import ProbeReport

BASELINE = "0.8"  # the shuffled-label band: neutral grey, under the data


def plot_probe(report: ProbeReport, path: str, size: tuple[float, float] | None = None,
               dpi: int = DPI) -> None:
    """Draw `report` (see the module docstring) and write it to `path` (.png or .svg)."""
    draw(probe_figure, report, path, size, dpi)


def probe_figure(report: ProbeReport, size: tuple[float, float] | None = None,
                 dpi: int = DPI) -> Any:
    """The matplotlib `Figure` of `plot_probe`."""
    figure_type = figure_class()
    layers = np.array([s.layer for s in report.layers])
    if size is None:
        size = (min(max(4.0 + 0.25 * len(layers), 6.0), 16.0), 4.5)
    figure = figure_type(figsize=size, dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    baseline = np.array([s.baseline for s in report.layers])
    spread = np.array([s.baseline_std for s in report.layers])
    if np.isfinite(baseline).any():
        # one layer: a band between two equal x has no area, so it spans the layer's ±0.3
        along = layers if len(layers) > 1 else np.r_[layers - 0.3, layers + 0.3]
        baseline, spread = np.resize(baseline, len(along)), np.resize(spread, len(along))
        axes.fill_between(along, np.clip(baseline - spread, 0.0, 1.0),
                          np.clip(baseline + spread, 0.0, 1.0), color=BASELINE, alpha=0.7,
                          linewidth=0, label="shuffled labels (mean ± std, within 0-100%)")
        axes.plot(along, baseline, color="0.5", linewidth=1, linestyle="--")
    axes.axhline(report.chance, color="0.3", linewidth=0.8, linestyle=":",
                 label=f"chance ({report.chance:.0%})")
    accuracy = np.array([s.accuracy for s in report.layers])
    low = np.array([s.accuracy_min for s in report.layers])
    high = np.array([s.accuracy_max for s in report.layers])
    axes.errorbar(layers, accuracy, yerr=[accuracy - low, high - accuracy], fmt="o-",
                  color=palette.POSITIVE, capsize=3, markersize=4,
                  label=f"balanced accuracy (mean over {report.folds} folds; bar: the folds' "
                        "lowest to highest)")
    if report.best_layer is not None:
        best = report.top
        axes.plot([best.layer], [best.accuracy], marker="*", markersize=16,
                  color=palette.POSITIVE, markeredgecolor="black", linestyle="none",
                  label=f"best: layer {best.layer} (p = {report.p_value:.2g})")
    axes.set_ylim(0.0, 1.05)
    axes.set_xlabel("layer")
    axes.set_ylabel("held-out balanced accuracy")
    if len(layers) <= 40:
        axes.set_xticks(layers)
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    title = (f"{tick_text(report.label_a)} vs {tick_text(report.label_b)}: {report.method} "
             f"probe, {report.count_a} + {report.count_b} prompts")
    if report.best_layer is None:  # in the title, where no legend can cover it
        title += f"\nno layer beats chance (p = {report.p_value:.2g})"
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="best")
    return figure
