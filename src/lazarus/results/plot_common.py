"""What every picture (`--plot FILE`, `result.plot(path)`) shares: the format from the file's
extension, the checks run before any model loads, matplotlib's figure class (imported only here,
inside functions: it is an optional extra, `pip install 'lazarus[plot]'`), the diverging colour
map of `palette`, tick labels, and the atomic write (an error leaves no file behind).

Figures are drawn through the figure API with the Agg canvas: no pyplot, no GUI, no global
state.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any

from lazarus.errors import LazarusError
from lazarus.io.files import check_writable, write_atomically
from lazarus.results import palette
from lazarus.text import escape

FORMATS = ("png", "svg")
MISSING = "--plot needs matplotlib (pip install 'lazarus[plot]')"
CMAP = palette.CMAP  # diverging: blue < 0 < red, white at 0
LABEL_CHARS = 24  # prompt labels on the y axis are cut to this many characters
MAX_TICKS = 40  # more rows or neurons than this: only every k-th tick is labelled
DPI = 100


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


def colour_map() -> Any:
    from matplotlib import colormaps

    # NaN (grey): an MoE unit whose expert the token was not routed to
    return colormaps[CMAP].with_extremes(bad="#{:02x}{:02x}{:02x}".format(*palette.MISSING))


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


def title_text(text: str) -> str:
    """`text` for a title: escaped like `tick_text`, not cut."""
    return escape(text).replace("$", r"\$")


def draw(figure_of: Any, result: Any, path: str, size: tuple[float, float] | None,
         dpi: int) -> None:
    """Check `path`'s extension, draw `figure_of(result, size, dpi)` and write it to `path`."""
    fmt = plot_format(path)
    save(figure_of(result, size, dpi), path, fmt)


def save(figure: Any, path: str, fmt: str) -> None:
    metadata = {"Date": None} if fmt == "svg" else {}  # the same picture, the same bytes

    def write(temp: Path) -> None:
        with warnings.catch_warnings():  # e.g. a prompt's glyph missing from the font
            warnings.simplefilter("ignore", UserWarning)
            figure.savefig(temp, format=fmt, metadata=metadata)

    write_atomically(path, write)
