"""Pieces of lazarus's HTML pages (the `examples` page and the card dashboard): tokens shaded
by a unit's value on the one diverging scale (`results.palette`), an inline SVG histogram, a
quantile table, numbers. Every text from a model or a corpus goes through `text` (HTML-escaped,
non-printable characters shown as escapes); every number carries its exact value in
`data-value` (Python's repr: what the JSON holds), so that tests can read back what is shown."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from lazarus.results import palette
from lazarus.text import escape

MISSING = "–"  # a value the page has not


def text(value: str) -> str:
    """Model or corpus text, safe in an element or a quoted attribute."""
    return html.escape(escape(value), quote=True)


def exact(value: float | None) -> str:
    """The `data-value` of a number: its repr ("nan" for None or NaN)."""
    if isinstance(value, int):
        return str(value)
    return "nan" if value is None or not math.isfinite(value) else repr(float(value))


def shown(value: float | None, digits: int = 4) -> str:
    """A number as the page shows it."""
    if isinstance(value, int):
        return str(value)
    return MISSING if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def number(value: float | None, tag: str = "td") -> str:
    """An element holding a number: shown to 4 significant digits, exact in data-value and
    title."""
    return (f'<{tag} class="num" data-value="{exact(value)}" title="{shown(value, 8)}">'
            f"{shown(value)}</{tag}>")


def limit_of(values: Sequence[float | None]) -> float:
    """The largest finite |value|: what is drawn at full strength (1 when there is none)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(finite, default=0.0) or 1.0


def token(piece: str, value: float | None, limit: float, focus: bool = False,
          missing: str = "no value") -> str:
    """One token on its value's colour (focal token: a <mark>); the value as its title
    (`missing` where there is none: an MoE expert unit's token not routed to it)."""
    v = math.nan if value is None else value
    tag = "mark" if focus else "span"
    title = missing if not math.isfinite(v) else f"{v:.6g}"
    return (f'<{tag} class="t{" focus" if focus else ""}" data-value="{exact(value)}" '
            f'title="{title}" style="background:{palette.hex_colour(v, limit)};'
            f'color:{palette.ink(v, limit) if math.isfinite(v) else "#000000"}">'
            f"{text(piece)}</{tag}>")


def tokens(pieces: Sequence[str], values: Sequence[float | None], focus: int,
           limit: float, missing: str = "no value") -> str:
    """A context: every token shaded by its value."""
    return "".join(token(p, v, limit, i == focus, missing)
                   for i, (p, v) in enumerate(zip(pieces, values, strict=True)))


def histogram_svg(edges: Sequence[float], counts: Sequence[int], limit: float,
                  width: int = 360, height: int = 110) -> str:
    """Bars of the counts between the edges, each coloured by its middle's value; each bar's
    range and count in its <title> and data-lo/data-hi/data-count."""
    if not counts:
        return '<p class="note">no histogram (no values)</p>'
    top, floor, ceiling = max(counts) or 1, height - 20, 16  # bars between; labels outside
    plot = floor - ceiling
    step = width / len(counts)
    bars = []
    for i, count in enumerate(counts):
        lo, hi = edges[i], edges[i + 1]
        tall = plot * count / top
        bars.append(
            f'<rect class="bar" x="{i * step + 1:.1f}" y="{floor - tall:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{tall:.1f}" '
            f'fill="{palette.hex_colour((lo + hi) / 2, limit)}" stroke="#888" '
            f'data-lo="{exact(lo)}" data-hi="{exact(hi)}" data-count="{count}">'
            f"<title>{shown(lo)} .. {shown(hi)}: {count}</title></rect>")
    zero = ""
    if edges[0] < 0 < edges[-1]:  # where 0 is, under the bars (equal bins: linear in x)
        at = width * (0 - edges[0]) / (edges[-1] - edges[0])
        zero = (f'<line class="zero" x1="{at:.1f}" x2="{at:.1f}" y1="{floor}" '
                f'y2="{floor + 5}" stroke="#000"/>')
        if 40 < at < width - 40:  # not over an end's label
            zero += (f'<text x="{at:.1f}" y="{height - 4}" font-size="11" '
                     'text-anchor="middle">0</text>')
    return (f'<svg class="histogram" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="histogram of the values">{"".join(bars)}{zero}'
            f'<text x="0" y="{height - 4}" font-size="11">{shown(edges[0])}</text>'
            f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end">'
            f"{shown(edges[-1])}</text>"
            f'<text x="{width}" y="11" font-size="11" text-anchor="end">max count {top}'
            "</text></svg>")


def quantiles_table(pairs: Sequence[tuple[str, float | None]]) -> str:
    """A row of quantile names over a row of their values."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in pairs)
    return (f'<table class="quantiles"><tr>{head}</tr>'
            f'<tr>{"".join(number(v) for _, v in pairs)}</tr></table>')


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
table{border-collapse:collapse}th,td{padding:2px 8px;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ctx{font-family:monospace,monospace;white-space:pre}.t{padding:0 1px}
mark.t{outline:2px solid #000;border-radius:2px}.note{color:#555;font-style:italic}
.histogram{display:block;margin:.4em 0}.quantiles td,.quantiles th{border:1px solid #ddd}
"""
