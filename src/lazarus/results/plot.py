"""Pictures of results, for papers and notebooks (`--plot FILE`, .png or .svg; never prints):
every drawing function in one import. Each lives in its own module: `plot_neurons` (the
heatmap), `plot_probe` (accuracy by layer), `plot_causal` (ablate, steer), `plot_examples` (the
corpus histogram), `patch_plot`, `attribute_plot`; `plot_common` holds what they share (the
checks run before a model loads, the atomic write). matplotlib is an optional extra (`pip
install 'lazarus[plot]'`), imported only inside the functions that draw."""

from __future__ import annotations

from lazarus.results.plot_causal import (
    ablation_figure,
    plot_ablation,
    plot_steer,
    steer_figure,
)
from lazarus.results.plot_common import (
    DPI,
    FORMATS,
    MISSING,
    check_plot_path,
    figure_class,
    plot_format,
    save,
)
from lazarus.results.plot_examples import examples_figure, plot_examples
from lazarus.results.plot_neurons import neurons_figure, plot_neurons
from lazarus.results.plot_probe import plot_probe, probe_figure

__all__ = ["DPI", "FORMATS", "MISSING", "ablation_figure", "check_plot_path", "examples_figure",
           "figure_class", "neurons_figure", "plot_ablation", "plot_examples", "plot_format",
           "plot_neurons", "plot_probe", "plot_steer", "probe_figure", "save", "steer_figure"]
