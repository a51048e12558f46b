"""The one colour scheme of lazarus: terminal (`--color`), HTML and pictures share it.

A diverging scale centred at 0, ColorBrewer's RdBu reversed (matplotlib's "RdBu_r"): deep blue
for the most negative value, near-white at 0, deep red for the most positive. ColorBrewer marks
it colour-blind safe (the two arms differ in lightness as well as hue, so they stay apart for
the common red-green deficiencies and in greyscale by their distance from white).

How to use it (numpy only, no matplotlib; lives in results/ so render/ and results/ both can):

    from lazarus.results import palette
    palette.rgb(value, limit)          # (r, g, b) 0..255; value/limit clipped to -1..1
    palette.hex_colour(value, limit)   # "#rrggbb" for HTML/CSS (background of a token)
    palette.ink(value, limit)          # "#000000" or "#ffffff": readable text on that colour
    palette.background(value, limit)  # ANSI escape: 256-colour background (truecolor=True: 24-bit)
    palette.foreground(value, limit)   # ANSI escape: 256-colour foreground
    palette.RESET                      # ANSI escape ending either
    palette.CMAP                       # the matplotlib colormap's name, for plots
    palette.category(i)                # "#rrggbb" of the i-th category (labels), Okabe-Ito
    palette.category_hatch(i)          # its hatch ("" for the first len(CATEGORIES)); markers:
    palette.category_marker(i)         #   its matplotlib marker, so a repeated colour differs

Categories (e.g. prompt labels) are drawn beside the diverging scale (the heatmap's label
strip), so they must not be read as values: CATEGORIES are the Okabe & Ito colours whose CIE76
ΔE (Euclidean distance in CIELAB, D65) to every colour of the scale, to white and to MISSING is
at least CATEGORY_DISTANCE. That drops Okabe-Ito's sky blue and blue (ΔE 9 and 3 from the
scale's blue arm), vermillion (30 from its red arm) and black (39 from its deep-blue end).

`limit` is the value shown at full strength (usually the largest |value| on the page); a limit
of 0 (or not finite) shows everything as 0. NaN / infinite values have no colour: callers skip
them (`palette.rgb` then returns the grey `MISSING`).
"""

from __future__ import annotations

import functools
import math

CMAP = "RdBu_r"  # matplotlib's name for the same scale
# ColorBrewer RdBu (11 classes), most negative (blue) to most positive (red); linear between.
ANCHORS = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
           "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f")
MISSING = (189, 189, 189)  # "#bdbdbd": no value (e.g. an MoE token not routed to the expert)
NEGATIVE = ANCHORS[1]  # one colour for "below 0" marks (lines, bars)
POSITIVE = ANCHORS[-2]  # one colour for "above 0" marks
# Okabe & Ito's colour-blind-safe set, black last (lines on white, e.g. steer's picture).
OKABE_ITO = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
             "#000000")
CATEGORY_DISTANCE = 40.0  # CIE76 ΔE a category keeps from the scale, white and MISSING
CATEGORY_HATCHES = ("", "//", "..", "xx")  # each round of the category colours: its hatch
CATEGORY_MARKERS = ("o", "s", "^", "D")  # and its marker
RESET = "\x1b[0m"

_CUBE = (0, 95, 135, 175, 215, 255)  # xterm 256-colour cube levels (codes 16..231)


def _parse(hex_text: str) -> tuple[int, int, int]:
    return int(hex_text[1:3], 16), int(hex_text[3:5], 16), int(hex_text[5:7], 16)


_RGB = tuple(_parse(anchor) for anchor in ANCHORS)


def share(value: float, limit: float) -> float | None:
    """`value / limit` clipped to -1..1 (0 when `limit` is 0 or not finite); None for a
    value that is NaN or infinite."""
    if not math.isfinite(value):
        return None
    if not math.isfinite(limit) or limit == 0:
        return 0.0
    return max(-1.0, min(1.0, value / abs(limit)))


def rgb(value: float, limit: float = 1.0) -> tuple[int, int, int]:
    """The scale's colour of `value` (see the module docstring), as 0..255 integers."""
    where = share(value, limit)
    if where is None:
        return MISSING
    position = (where + 1.0) / 2.0 * (len(_RGB) - 1)  # 0 .. 10 along the anchors
    low = min(int(math.floor(position)), len(_RGB) - 2)
    step = position - low
    return tuple(round(a + (b - a) * step)  # type: ignore[return-value]
                 for a, b in zip(_RGB[low], _RGB[low + 1], strict=True))


def hex_colour(value: float, limit: float = 1.0) -> str:
    """`rgb` as "#rrggbb", for HTML and CSS."""
    return "#{:02x}{:02x}{:02x}".format(*rgb(value, limit))


def ink(value: float, limit: float = 1.0) -> str:
    """Black or white, whichever reads better on `rgb(value, limit)` (WCAG luminance)."""
    return "#ffffff" if _luminance(rgb(value, limit)) < 0.2 else "#000000"


def ansi256(colour: tuple[int, int, int]) -> int:
    """The xterm 256-colour code (cube 16..231 or grey 232..255) nearest to `colour` in CIELAB
    (so the hue survives: the deepest blue stays blue rather than turning teal)."""
    return _nearest(tuple(colour))


@functools.cache
def _nearest(colour: tuple[int, ...]) -> int:
    target = _lab(colour)
    return min(_XTERM, key=lambda code: sum((a - b) ** 2 for a, b in
                                             zip(_XTERM[code], target, strict=True)))


def background(value: float, limit: float = 1.0, truecolor: bool = False) -> str:
    """The ANSI escape that sets the background to `rgb(value, limit)`; end it with RESET."""
    return _escape(48, rgb(value, limit), truecolor)


def foreground(value: float, limit: float = 1.0, truecolor: bool = False) -> str:
    """The ANSI escape that sets the text colour to `rgb(value, limit)`; end it with RESET."""
    return _escape(38, rgb(value, limit), truecolor)


def shaded(text: str, value: float, limit: float = 1.0, truecolor: bool = False) -> str:
    """`text` on its value's background, in black or white ink, then RESET (terminal)."""
    ink_code = 231 if ink(value, limit) == "#ffffff" else 16
    ink_escape = "\x1b[38;2;255;255;255m" if truecolor and ink_code == 231 else (
        "\x1b[38;2;0;0;0m" if truecolor else f"\x1b[38;5;{ink_code}m")
    return f"{background(value, limit, truecolor)}{ink_escape}{text}{RESET}"


def category(index: int) -> str:
    """The colour of the `index`-th category (0-based), cycling through CATEGORIES."""
    return CATEGORIES[index % len(CATEGORIES)]


def category_hatch(index: int) -> str:
    """The `index`-th category's hatch: none in the first round of colours, then one per
    round, so that two categories of one colour still differ."""
    return CATEGORY_HATCHES[index // len(CATEGORIES) % len(CATEGORY_HATCHES)]


def category_marker(index: int) -> str:
    """The `index`-th category's matplotlib marker, one per round of colours."""
    return CATEGORY_MARKERS[index // len(CATEGORIES) % len(CATEGORY_MARKERS)]


def delta_e(first: tuple[int, ...], second: tuple[int, ...]) -> float:
    """CIE76 ΔE: the Euclidean distance of two sRGB colours in CIELAB (D65)."""
    return math.dist(_lab(first), _lab(second))


def _clear(colour: str) -> bool:
    """Whether `colour` keeps CATEGORY_DISTANCE from the scale (sampled at 201 points), from
    white and from MISSING."""
    others = [rgb(v / 100) for v in range(-100, 101)] + [(255, 255, 255), MISSING]
    return min(delta_e(_parse(colour), other) for other in others) >= CATEGORY_DISTANCE


def _escape(kind: int, colour: tuple[int, int, int], truecolor: bool) -> str:
    if truecolor:
        return "\x1b[{};2;{};{};{}m".format(kind, *colour)
    return f"\x1b[{kind};5;{ansi256(colour)}m"


def _linear(channel: int) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _lab(colour: tuple[int, ...]) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB colour."""
    r, g, b = (_linear(c) for c in colour)
    xyz = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, \
        0.2126 * r + 0.7152 * g + 0.0722 * b, (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    f = [t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in xyz]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _luminance(colour: tuple[int, int, int]) -> float:
    r, g, b = (_linear(c) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


_XTERM = {16 + 36 * r + 6 * g + b: _lab((_CUBE[r], _CUBE[g], _CUBE[b]))
          for r in range(6) for g in range(6) for b in range(6)}
_XTERM.update({232 + i: _lab((8 + 10 * i,) * 3) for i in range(24)})

# see the module docstring; yellow last, the faintest mark on white
CATEGORIES = tuple(sorted((colour for colour in OKABE_ITO if _clear(colour)),
                          key=lambda colour: colour == "#f0e442"))
