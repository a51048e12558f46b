"""The picture of a patching result (`--plot FILE`, `PatchResult.plot`): one heatmap per site,
layers down (layer 0 at the top), token positions (or heads) across, on a diverging scale
centred at 0 ('RdBu_r', readable with the common colour-vision deficiencies: blue below 0, red
above), from -1 to 1 unless some cell goes further. Positions where a pair's clean and
corrupted tokens differ are marked with '*'. Cells show their value while the grid is small
enough to read them. matplotlib is imported only when drawing (`results.plot_common`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lazarus.engine.sites import unit_label
from lazarus.results.plot_common import (
    DPI,
    colour_map,
    figure_class,
    plot_format,
    save,
    tick_text,
    ticks,
)
from lazarus.text import plural

ANNOTATE = 400  # cells per panel up to which each shows its value


def plot_patch(result: Any, path: str, size: tuple[float, float] | None = None,
               dpi: int = DPI) -> None:
    """Draw a `PatchResult` and write it to `path` (.png or .svg)."""
    fmt = plot_format(path)
    save(patch_figure(result, size, dpi), path, fmt)


def patch_figure(result: Any, size: tuple[float, float] | None = None, dpi: int = DPI) -> Any:
    """The matplotlib `Figure` of `plot_patch`; `size` in inches (default: fits the grids)."""
    figure_type = figure_class()
    grids = result.grids
    widest = max(grid.values.shape[1] for grid in grids)
    rows = len(result.layers)
    panel_h = min(max(1.2 + 0.3 * rows, 2.5), 9.0)
    if size is None:
        size = (min(max(3.0 + 0.55 * widest, 6.0), 16.0), len(grids) * (panel_h + 0.6) + 0.6)
    figure = figure_type(figsize=size, dpi=dpi, layout="constrained")
    finite = np.concatenate([np.abs(g.values[np.isfinite(g.values)]).ravel() for g in grids])
    limit = max(1.0, float(finite.max()) if finite.size else 1.0)
    colours = colour_map()
    image = None
    for index, grid in enumerate(grids):
        axes = figure.add_subplot(len(grids), 1, index + 1)
        values = np.ma.masked_invalid(grid.values)
        image = axes.imshow(values, cmap=colours, vmin=-limit, vmax=limit, aspect="auto",
                            interpolation="nearest")
        columns = result.columns(grid)
        if grid.axis == "head":
            labels = [unit_label(grid.site, head) for head, _, _ in columns]
            axes.set_xlabel("head (patched at every position)")
        else:
            labels = [tick_text(token) + ("*" if differs else "")
                      for _, token, differs in columns]
            axes.set_xlabel("token (* = clean and corrupted differ)")
        ticks(axes.set_xticks, labels, rotate=len(labels) > 8)
        ticks(axes.set_yticks, [str(layer) for layer in result.layers])
        axes.set_ylabel("layer")
        axes.tick_params(length=2, labelsize=8)
        axes.set_title(f"{grid.site}: {result.direction_text}", fontsize=9)
        if values.size <= ANNOTATE:
            _annotate(axes, grid.values, limit)
    figure.suptitle(f"activation patching, {result.metric} normalised: 1 = clean run, "
                    f"0 = corrupted run ({plural(result.pairs, 'pair')})", fontsize=10)
    bar = figure.colorbar(image, ax=figure.axes, shrink=0.9, aspect=40)
    bar.set_label("normalised score (white = 0 = corrupted)")
    return figure


def _annotate(axes: Any, values: np.ndarray, limit: float) -> None:
    for (row, column), value in np.ndenumerate(values):
        if np.isfinite(value):
            strong = abs(value) > 0.6 * limit  # white text on the dark ends of the scale
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if strong else "black")
