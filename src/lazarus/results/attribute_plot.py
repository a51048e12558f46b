"""The picture of an attribution (`--plot FILE`, .png or .svg): per site, the largest |estimate|
of each layer's units; with a self-check, each checked unit's estimate against its real patch
effect, on the diagonal where the estimate is right (the top units and the random ones marked
apart). matplotlib is imported only when drawing (`results.plot_common`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lazarus.results.plot_common import DPI, figure_class, plot_format, save


def plot_attribution(result: Any, path: str, size: tuple[float, float] | None = None,
                     dpi: int = DPI) -> None:
    """Draw an `AttributionResult` and write it to `path` (.png or .svg)."""
    fmt = plot_format(path)
    save(attribution_figure(result, size, dpi), path, fmt)


def attribution_figure(result: Any, size: tuple[float, float] | None = None,
                       dpi: int = DPI) -> Any:
    check = result.check
    panels = 2 if check is not None else 1
    figure = figure_class()(figsize=size or (5.5 * panels, 4.2), dpi=dpi,
                             layout="constrained")
    profile = figure.add_subplot(1, panels, 1)
    for site, rows in result.estimates.items():
        largest = [float(np.max(np.abs(row))) if len(row) else 0.0 for row in rows]
        profile.plot(result.layers, largest, "o-", markersize=4, label=site)
    if len(result.layers) <= 40:  # whole layers, not matplotlib's 0.5 steps
        profile.set_xticks(result.layers)
    profile.set_xlabel("layer")
    profile.set_ylabel("largest |estimate| of a unit")
    profile.set_title(f"{result.method} estimate, normalised ({result.metric})", fontsize=10)
    profile.legend(fontsize=8)
    if check is not None:
        _check_panel(figure.add_subplot(1, panels, 2), check)
    return figure


def _check_panel(axes: Any, check: Any) -> None:
    estimate = np.array([u.estimate for u in check.units])
    real = np.array(check.real)
    top = np.arange(len(estimate)) < check.top_count
    values = np.concatenate([estimate, real])
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low or 1.0)
    axes.plot([low - pad, high + pad], [low - pad, high + pad], color="0.6", linewidth=0.8,
              linestyle="--", label="estimate = real")
    axes.scatter(estimate[top], real[top], color="tab:red", s=18,
                 label=f"top {int(top.sum())} by |estimate|")
    if (~top).any():
        axes.scatter(estimate[~top], real[~top], color="tab:blue", s=18,
                     label=f"{int((~top).sum())} random")
    axes.set_xlabel("estimated effect")
    axes.set_ylabel("real patch effect")
    def shown(rho: float) -> str:
        return f"{rho:.2f}" if np.isfinite(rho) else "undefined"

    # two lines: on one, the verdict ran past the 5.5-inch panel's right edge
    axes.set_title(f"self-check: {len(estimate)} of {check.total} units ({check.verdict})\n"
                   f"Spearman {shown(check.spearman)} over all, {shown(check.spearman_top)} "
                   f"within the top {check.top_count}", fontsize=9)
    axes.legend(fontsize=8)
