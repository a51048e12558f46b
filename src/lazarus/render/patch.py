"""The text report of `introspect patch`: a header saying what was measured and which way, then
per site a heatmap (layer rows, one column per token position or head, each cell its
normalised value with 2 decimals and a shade), then the strongest cells with their intervals."""

from __future__ import annotations

import numpy as np

from lazarus.engine.pair_terms import SCALE
from lazarus.engine.sites import unit_label
from lazarus.render.grid import GLYPHS, heat_levels
from lazarus.results.patch import PatchResult, SiteGrid
from lazarus.text import banner, display_width, escape, fit_cell, pad, plural

CELL = 7  # "+0.93 ▓"
LABEL = 10  # widest token label shown in a column header
STRONGEST = 3  # cells listed per site


def render_patch(result: PatchResult) -> str:
    lines = [*banner(f"ACTIVATION PATCHING ({result.direction_text})"), *_header(result)]
    for grid in result.grids:
        lines += ["", *_heatmap(result, grid)]
    lines += ["", *_strongest(result)]
    return "\n".join(line.rstrip() for line in lines)


def _header(result: PatchResult) -> list[str]:
    judged = repr(result.answer[0])
    if result.wrong is not None:
        judged += f" against {result.wrong[0]!r}"
    where = ("the answer's first token" if result.wrong is None else
             "the first token where the answer and the wrong text differ")
    lines = [f"Metric: {result.metric} ({result.metric_text}), normalised: {SCALE}.",
             f"Judged at {where}, after the prompt and their shared start (pair 1: {judged}).",
             f"{plural(result.pairs, 'pair')}: mean {result.metric} "
             f"{result.clean_score.mean():.4g} on the clean run, "
             f"{result.corrupt_score.mean():.4g} on the corrupted run."]
    if result.interval_note is not None:
        lines.append(f"Intervals: {result.interval_note}.")
    if result.aligned:
        lines.append(f"Pairs have {min(result.lengths)} to {max(result.lengths)} tokens: "
                     f"positions are counted from each pair's end (the last "
                     f"{len(result.positions)}), labelled with pair 1's tokens.")
    return lines


def _labels(result: PatchResult, grid: SiteGrid) -> list[str]:
    if grid.axis == "head":
        return [unit_label(grid.site, head) for head, _, _ in result.columns(grid)]
    return [_token(token or "") + ("*" if differs else "")
            for _, token, differs in result.columns(grid)]


def _token(token: str) -> str:
    """A token as a short label, its spaces shown as '␣' so that ' the' and 'the' differ."""
    text = escape(token).replace(" ", "␣") or "∅"
    return fit_cell(text, LABEL).rstrip() if display_width(text) > LABEL else text


def _heatmap(result: PatchResult, grid: SiteGrid) -> list[str]:
    what = ("layers x heads, each head patched at every position" if grid.axis == "head" else
            "layers x token positions; * = clean and corrupted tokens differ")
    labels = _labels(result, grid)
    widths = [max(CELL, display_width(label)) for label in labels]
    levels = heat_levels(grid.values)
    header = "Layer | " + " | ".join(pad(label, width, right=True)
                                     for label, width in zip(labels, widths, strict=True))
    rows = []
    for k, layer in enumerate(result.layers):
        cells = []
        for c, width in enumerate(widths):
            value = grid.values[k, c]
            glyph = "?" if levels[k, c] < 0 else GLYPHS[levels[k, c]]
            cells.append(f"{value:+.2f} {glyph}".rjust(width) if np.isfinite(value)
                         else "n/a".rjust(width))
        rows.append(f"{layer:5d} | " + " | ".join(cells))
    values = grid.values[np.isfinite(grid.values)]
    scale = (f"(shade: this site's cells from {values.min():+.2f} to {values.max():+.2f} in "
             "quarters, ' ' lowest to '█' highest)" if values.size else "")
    return [f"{grid.site} ({what})", scale, header, "-" * max(map(display_width, [header, *rows])),
            *rows]


def _strongest(result: PatchResult) -> list[str]:
    """Per site, the cells furthest from 0 (the corrupted run), with their intervals."""
    lines = [f"Strongest cells (furthest from 0, the corrupted run; {SCALE}):"]
    if any(grid.low is not None for grid in result.grids):
        sizes = sorted({grid.values.size for grid in result.grids})
        cells = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        lines.append(f"(intervals: each its own cell's 95%; these cells were picked as the "
                     f"largest of {cells} per site, so their intervals cover less and their "
                     "values lean away from 0)")
    for grid in result.grids:
        columns = result.columns(grid)
        order = np.argsort(-np.abs(np.nan_to_num(grid.values)), axis=None, kind="stable")
        for flat in order[:STRONGEST]:
            k, c = np.unravel_index(flat, grid.values.shape)
            index, token, differs = columns[c]
            where = (unit_label(grid.site, index) if grid.axis == "head" else
                     f"position {index} {escape(repr(token))}{'*' if differs else ''}")
            interval = ("" if grid.low is None or grid.high is None else
                        f"  [{grid.low[k, c]:+.2f}, {grid.high[k, c]:+.2f}]")
            lines.append(f"  {grid.site:<10} layer {result.layers[k]:<3} {where}: "
                         f"{grid.values[k, c]:+.2f}{interval}")
    return lines
