"""The activation map and the ASCII heatmap of `lazarus introspect neurons` (text only).

The two share one grid: a 20-cell prompt column, then one column per neuron whose header and
cells have the same width, so that every `|` lines up. With more prompts than a row limit,
both show the first rows and one row with the mean of the rest.
"""

from __future__ import annotations

import re

import numpy as np

from lazarus.results import palette
from lazarus.results.activations import ActivationMatrix
from lazarus.text import PROMPT_WIDTH, banner, display_width, escape, fit_cell

MIN_CELL = 6  # fits the spec's `  -156` and centres the 4-glyph heat block with a space each side
GLYPHS = (" ", "░", "▒", "▓", "█")  # heat levels 0..4


# --- numbers ------------------------------------------------------------------------------------


def map_decimals(values: np.ndarray) -> int:
    """Decimals that show the largest |value| with 3 significant digits (none for >= 100).

    326 -> 0, 45.3 -> 1, 5.2 -> 2, 0.0312 -> 4; an all-zero (or empty) map -> 0.
    Non-finite values are ignored.
    """
    finite = np.abs(np.asarray(values, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    if finite.size == 0 or finite.max() == 0:
        return 0
    exponent = int(f"{float(finite.max()):.2e}".split("e")[1])  # after rounding to 3 digits
    return max(0, 2 - exponent)


def signed(value: float | None, decimals: int) -> str:
    if value is None:
        return "n/a"
    if np.isnan(value):  # MoE expert units: the token was not routed to the expert
        return "·"
    return f"{value:+.{decimals}f}"


# --- the grid shared by the map and the heatmap -------------------------------------------------


def _headers(matrix: ActivationMatrix) -> list[str]:
    return [f"N{neuron:4d}" for neuron in matrix.neurons]  # `N 808`; 5+ digits just widen


def _column_widths(matrix: ActivationMatrix, cells: list[list[str]]) -> list[int]:
    headers = _headers(matrix)
    return [
        max([MIN_CELL, len(header)] + [len(row[j]) for row in cells])
        for j, header in enumerate(headers)
    ]


def _grid(matrix: ActivationMatrix, cells: list[list[str]], widths: list[int],
          shown: int | None = None, rest: list[str] | None = None) -> list[str]:
    """Header, dashes and one row per prompt (the first `shown` ones, then a `rest` row for
    the others); the label follows the closing `|`."""
    headers = [text.rjust(width) for text, width in zip(_headers(matrix), widths, strict=True)]
    header = f"{fit_cell('Prompt', PROMPT_WIDTH)} | {' | '.join(headers)} |"
    if matrix.labels is not None:
        header += " Label"
    rows = []
    for i, prompt in enumerate(matrix.prompts[:shown]):
        row = f"{fit_cell(prompt, PROMPT_WIDTH)} | {' | '.join(cells[i])} |"
        if matrix.labels is not None:
            row += f" {escape(matrix.labels[i])}"
        rows.append(row)
    hidden = len(matrix.prompts) - len(rows)
    if hidden and rest is not None:
        rows.append(f"{fit_cell(f'… {hidden} more: mean', PROMPT_WIDTH)} | {' | '.join(rest)} |")
    dashes = "-" * max(display_width(_plain(line)) for line in [header, *rows])
    return [header, dashes, *rows]


def _plain(line: str) -> str:
    """The line without colour codes, to measure its width."""
    return _SGR.sub("", line)


def rows_note(total: int, shown: int, noun: str = "prompt") -> str:
    """What a cut map says under its title."""
    return (f"(the first {shown} of {total} {noun}s, then the mean of the other {total - shown}; "
            f"statistics below use all {total}; --max-rows 0 shows every row, -o FILE saves "
            "every value)")


def _value_cells(matrix: ActivationMatrix, decimals: int) -> list[list[str]]:
    return [[signed(v, decimals) for v in row] for row in matrix.values.tolist()]


def heat_levels(values: np.ndarray, scale_of: np.ndarray | None = None) -> np.ndarray:
    """Heat level 0..4 of each value: floor(4 * (v - min) / (max - min)) over the whole map
    (`scale_of`, when the values shown are only part of it, e.g. a map cut at --max-rows, or
    when some values must not set the scale; values beyond its range get its end levels).

    When every value is the same there is no low or high, so every cell gets the middle
    level 2 ('▒'). Infinities get -1 (shown as '?'), NaN (no value: an MoE unit whose expert
    the token was not routed to) gets -2 (shown as '·'); neither sets the scale.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    levels = np.where(np.isnan(values), -2, -1).astype(np.int64)
    if not finite.any():
        return levels
    whole = values if scale_of is None else np.asarray(scale_of, dtype=np.float64)
    whole = whole[np.isfinite(whole)]
    if not whole.size:  # nothing to scale by: the values' own range
        whole = values[finite]
    low, high = whole.min(), whole.max()
    if high == low:
        levels[finite] = 2
        return levels
    scaled = np.floor(4.0 * (values[finite] - low) / (high - low))
    levels[finite] = np.clip(scaled, 0, 4).astype(np.int64)
    return levels


def render_activation_map(matrix: ActivationMatrix, decimals: int,
                          max_rows: int | None = None) -> str:
    shown = _shown(matrix, max_rows)
    cells = _value_cells(matrix, decimals)
    rest = [signed(v, decimals) for v in _rest_mean(matrix, shown)]
    widths = _column_widths(matrix, [*cells[:shown], rest])
    aligned = [[c.rjust(width) for c, width in zip(row, widths, strict=True)]
               for row in cells[:shown]]
    rest = [c.rjust(width) for c, width in zip(rest, widths, strict=True)]
    title = f"NEURON ACTIVATION MAP AT LAYER {matrix.layer}"
    note = [rows_note(len(matrix.prompts), shown)] if shown < len(matrix.prompts) else []
    return "\n".join(banner(title) + note + _grid(matrix, aligned, widths, shown, rest))


def render_heatmap(matrix: ActivationMatrix, decimals: int, max_rows: int | None = None,
                   color: bool = False) -> str:
    """The map as glyph blocks, on the same grid, with one line saying what the scale spans.
    With `color`, each cell is also coloured on a diverging scale centred at 0 (ANSI 256
    colours of `results.palette`: blue below 0, red above, white at 0), said in a legend line."""
    shown = _shown(matrix, max_rows)
    rest_values = _rest_mean(matrix, shown)
    widths = _column_widths(matrix, [*_value_cells(matrix, decimals)[:shown],
                                     [signed(v, decimals) for v in rest_values]])
    # the levels of the rows shown, on the scale of every cell (the one the scale line states)
    levels = heat_levels(np.vstack([matrix.values[:shown], rest_values[None]]), matrix.values)
    shades = _shades(np.vstack([matrix.values[:shown], rest_values[None]]),
                     matrix.values) if color else None
    cells = []
    for i, row in enumerate(levels.tolist()):
        line = []
        for j, (level, width) in enumerate(zip(row, widths, strict=True)):
            block = {-2: " ·· ", -1: "????"}.get(level) or GLYPHS[level] * 4
            if shades is not None and shades[i][j] is not None:
                block = f"{shades[i][j]}    {palette.RESET}"  # colour in place of glyphs
            left = (width - 4) // 2
            line.append(" " * left + block + " " * (width - 4 - left))
        cells.append(line)
    values = matrix.values[np.isfinite(matrix.values)]
    if values.size and values.min() != values.max():
        low, high = (signed(float(v), decimals) for v in (values.min(), values.max()))
        scale = f"(scale: all cells, {low} to {high}, in quarters; blank = lowest quarter)"
    elif values.size:
        scale = "(every cell has the same value, so all are shown as ▒)"
    else:
        scale = "(no finite values to scale)"
    title = "ASCII HEATMAP (░ = low, ▒ = medium, ▓ = high, █ = max)"
    legend = [_legend(matrix.values, decimals)] if color else []
    note = [rows_note(len(matrix.prompts), shown)] if shown < len(matrix.prompts) else []
    return "\n".join([*banner(title), scale, *legend, *note,
                      *_grid(matrix, cells[:shown], widths, shown, cells[-1])])


def _shown(matrix: ActivationMatrix, max_rows: int | None) -> int:
    """How many prompts' rows are printed: all, or `max_rows` when there are more."""
    count = len(matrix.prompts)  # one row left over is shown rather than "the mean of 1"
    return count if not max_rows or count <= max_rows + 1 else max_rows


def _rest_mean(matrix: ActivationMatrix, shown: int) -> np.ndarray:
    """Per neuron, the mean of the rows not shown (NaN when none; missing values skipped)."""
    rest = matrix.values[shown:].astype(np.float64)
    if rest.shape[0] == 0:
        return np.full(matrix.values.shape[1], np.nan)
    present = np.isfinite(rest)
    counts = present.sum(axis=0)
    sums = np.where(present, rest, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


_SGR = re.compile(r"\x1b\[[0-9;]*m")
_SWATCHES = 11  # legend steps from -top to +top


def _top(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def _shades(values: np.ndarray, scale_of: np.ndarray) -> list[list[str | None]]:
    """Background escape per cell (`results.palette`): the value over the largest |value| of
    `scale_of`, centred at 0; None for a cell with no finite value."""
    top = _top(scale_of)
    return [[palette.background(value, top) if np.isfinite(value) else None for value in row]
            for row in np.asarray(values, dtype=np.float64).tolist()]


def _legend(values: np.ndarray, decimals: int) -> str:
    top = _top(values)
    swatches = "".join(f"{palette.background(share)} {palette.RESET}"
                       for share in np.linspace(-1.0, 1.0, _SWATCHES).tolist())
    return (f"(colour: {signed(-top, decimals)} {swatches} {signed(top, decimals)}, "
            "centred at 0, in place of the glyphs; · = no value)")
