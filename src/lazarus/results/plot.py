"""Pictures of results, for papers and notebooks: `--plot FILE` (.png or .svg); never prints.

`plot_neurons` draws the activation heatmap (rows = prompts, or every token of every prompt
for position "all"; columns = neurons) on a diverging scale centred at 0 with symmetric limits,
one panel per layer on one shared scale, and, with labels, each label's mean per neuron with
its 95% t-interval of the mean (`lazarus.stats.t_interval`; exact for normal values, and said to
cover less for neurons chosen on these prompts); per token (position "all") the means have no
interval, since the tokens of one prompt are not independent samples. `plot_probe` draws
held-out balanced accuracy by layer (mean ± std over folds) over the shuffled-label baseline's
band (mean ± std over relabellings), with the chance line (50%) and the best layer marked.

matplotlib is an optional extra (`pip install 'lazarus[plot]'`), imported only inside the
functions that draw, through the figure API with the Agg canvas (no pyplot, no GUI, no global
state). Files are written atomically: an error leaves no file behind.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lazarus.errors import LazarusError
from lazarus.io.files import check_writable, write_atomically
from lazarus.stats.neurons import GIVEN, Choice
from lazarus.stats.probe import ProbeReport
from lazarus.stats.t_interval import label_means
from lazarus.text import escape, plural

FORMATS = ("png", "svg")
MISSING = "--plot needs matplotlib (pip install 'lazarus[plot]')"
CMAP = "RdBu_r"  # diverging: blue < 0 < red, white at 0
LABEL_CHARS = 24  # prompt labels on the y axis are cut to this many characters
MAX_TICKS = 40  # more rows or neurons than this: only every k-th tick is labelled
PANELS_ACROSS = 48  # layers side by side while they hold this many neurons in all (1 to 4)
DPI = 100


# --- checks, cheap enough to run before any model loads --------------------------------------


def plot_format(path: str) -> str:
    """"png" or "svg", from the file's extension; anything else is a `LazarusError`."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise LazarusError(f"cannot tell the picture format of {path} (name the --plot file "
                           "with .png or .svg, e.g. --plot heatmap.png)")
    return suffix


def check_plot_path(path: str) -> None:
    """The extension, that matplotlib is installed (without importing it), that `path` is
    writable: everything `--plot` could fail on later, checked now."""
    plot_format(path)
    if not _matplotlib_installed():
        raise LazarusError(MISSING)
    check_writable(path)


def _matplotlib_installed() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken install, or sys.modules["matplotlib"] = None
        return False


def figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise LazarusError(MISSING) from None
    return Figure


# --- neurons ----------------------------------------------------------------------------------


def plot_neurons(result: Any, path: str, size: tuple[float, float] | None = None,
                 dpi: int = DPI) -> None:
    """Draw `result` (see the module docstring) and write it to `path` (.png or .svg)."""
    fmt = plot_format(path)
    save(neurons_figure(result, size, dpi), path, fmt)


def neurons_figure(result: Any, size: tuple[float, float] | None = None,
                   dpi: int = DPI) -> Any:
    """The matplotlib `Figure` of `plot_neurons` for a `NeuronsResult`; `size` in inches
    (default: fits the data)."""
    figure_type = figure_class()
    layers = result.layers
    labelled = layers[0].matrix.labels is not None
    samples, neurons = layers[0].matrix.values.shape
    columns = min(len(layers), 4, max(1, PANELS_ACROSS // max(neurons, 1)))
    rows = math.ceil(len(layers) / columns)
    panel_w = min(max(1.8 + 0.35 * neurons, 4.0), 12.0)
    heat_h = min(max(0.8 + 0.2 * min(samples, MAX_TICKS), 2.5), 9.0)
    label_h = 2.8 if labelled else 0.0
    if size is None:
        size = (columns * panel_w + 1.2, rows * (heat_h + label_h) + 0.6)
    figure = figure_type(figsize=size, dpi=dpi, layout="constrained")
    grid = figure.add_gridspec(rows * (2 if labelled else 1), columns,
                               height_ratios=[heat_h, label_h] * rows if labelled else None)
    finite = np.concatenate([np.abs(layer.matrix.values[np.isfinite(layer.matrix.values)])
                             for layer in layers])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    colours = colour_map()
    position = "" if result.position == "last" else f", position {result.position}"
    image = None
    for i, layer in enumerate(layers):
        row, column = divmod(i, columns)
        axes = figure.add_subplot(grid[row * (2 if labelled else 1), column])
        image = _heatmap(axes, layer.matrix, colours, limit, result.position == "all")
        axes.set_title(f"layer {layer.matrix.layer} ({result.site}{position})")
        if labelled:
            handles = _label_panel(figure.add_subplot(grid[row * 2 + 1, column]), layer.matrix,
                                   result.choice)
    if labelled:
        figure.legend(handles=handles, loc="outside lower center", fontsize=8,
                      ncols=min(len(handles), 6))
    bar = figure.colorbar(image, ax=figure.axes[0::2] if labelled else figure.axes,
                          shrink=0.9, aspect=40)
    bar.set_label("activation (white = 0)")
    return figure


def colour_map() -> Any:
    from matplotlib import colormaps

    # NaN (grey): an MoE unit whose expert the token was not routed to
    return colormaps[CMAP].with_extremes(bad="#bdbdbd")


def _heatmap(axes: Any, matrix: Any, colours: Any, limit: float, tokens: bool) -> Any:
    values = np.ma.masked_invalid(np.asarray(matrix.values, dtype=np.float64))
    image = axes.imshow(values, cmap=colours, vmin=-limit, vmax=limit, aspect="auto",
                        interpolation="nearest")
    ticks(axes.set_yticks, [tick_text(p) for p in matrix.prompts])
    ticks(axes.set_xticks, [f"N{n}" for n in matrix.neurons], rotate=len(matrix.neurons) > 8)
    axes.set_xlabel("neuron")
    axes.set_ylabel("token of prompt" if tokens else "prompt")
    axes.tick_params(length=2, labelsize=8)
    return image


def ticks(setter: Any, texts: list[str], rotate: bool = False) -> None:
    step = max(1, math.ceil(len(texts) / MAX_TICKS))
    places = list(range(0, len(texts), step))
    extra = {"rotation": 90} if rotate else {}
    setter(places, [texts[i] for i in places], **extra)


def tick_text(text: str) -> str:
    text = escape(text)
    if len(text) > LABEL_CHARS:
        text = text[:LABEL_CHARS - 1] + "…"
    return text.replace("$", r"\$")  # a '$' would start mathtext


def _label_panel(axes: Any, matrix: Any, choice: Choice) -> list[Any]:
    """Each label's mean per neuron, with its t-interval when the samples are prompts; returns
    the legend's handles."""
    noun = "token" if choice.per_token else "prompt"
    found = label_means(matrix.values, matrix.labels)
    count = len(found)
    width = 0.8 / count
    x = np.arange(len(matrix.neurons), dtype=np.float64)
    handles = []
    for i, (label, (means, halves, _)) in enumerate(found.items()):
        name = f"{tick_text(label)} ({plural(matrix.labels.count(label), noun)})"
        handles.append(axes.errorbar(x - 0.4 + width * (i + 0.5), means,
                                     yerr=None if choice.per_token else np.nan_to_num(halves),
                                     fmt="o", markersize=4,
                                     capsize=2, linewidth=1, label=name))
    axes.axhline(0.0, color="0.5", linewidth=0.8)
    axes.set_xlim(-0.5, len(matrix.neurons) - 0.5)
    ticks(axes.set_xticks, [f"N{n}" for n in matrix.neurons], rotate=len(matrix.neurons) > 8)
    axes.set_ylabel("mean activation")
    axes.set_title(_label_title(choice), fontsize=9)
    axes.tick_params(length=2, labelsize=8)
    return handles


def _label_title(choice: Choice) -> str:
    """What the label panel's bars claim (as LABEL CORRELATION says of its intervals)."""
    if choice.per_token:
        return ("per-label mean over tokens (no interval: the tokens of one prompt are not "
                "independent samples)")
    title = "per-label mean over prompts ± 95% t-interval of the mean (normal values)"
    if choice.by != GIVEN:
        title += "\nneurons chosen on these prompts: the intervals may cover less than 95%"
    return title


# --- probe ------------------------------------------------------------------------------------


def plot_probe(report: ProbeReport, path: str, size: tuple[float, float] | None = None,
               dpi: int = DPI) -> None:
    """Draw `report` (see the module docstring) and write it to `path` (.png or .svg)."""
    fmt = plot_format(path)
    save(probe_figure(report, size, dpi), path, fmt)


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
        axes.fill_between(layers, baseline - spread, baseline + spread, color="0.8", alpha=0.7,
                          linewidth=0, label="shuffled labels (mean ± std)")
        axes.plot(layers, baseline, color="0.5", linewidth=1, linestyle="--")
    axes.axhline(report.chance, color="0.3", linewidth=0.8, linestyle=":",
                 label=f"chance ({report.chance:.0%})")
    accuracy = np.array([s.accuracy for s in report.layers])
    axes.errorbar(layers, accuracy, yerr=[s.accuracy_std for s in report.layers], fmt="o-",
                  color="tab:red", capsize=3, markersize=4,
                  label=f"balanced accuracy (mean ± std over {report.folds} folds)")
    if report.best_layer is not None:
        best = report.top
        axes.plot([best.layer], [best.accuracy], marker="*", markersize=16, color="tab:red",
                  markeredgecolor="black", linestyle="none",
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


# --- writing ----------------------------------------------------------------------------------


def save(figure: Any, path: str, fmt: str) -> None:
    metadata = {"Date": None} if fmt == "svg" else {}  # the same picture, the same bytes

    def write(temp: Path) -> None:
        with warnings.catch_warnings():  # e.g. a prompt's glyph missing from the font
            warnings.simplefilter("ignore", UserWarning)
            figure.savefig(temp, format=fmt, metadata=metadata)

    write_atomically(path, write)
