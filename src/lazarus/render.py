"""Text and JSON for `lazarus introspect neurons`, as its spec lays them out; never prints.

The activation map and the heatmap share one grid: a 20-cell prompt column, then one column
per neuron whose header and cells have the same width, so that every `|` lines up.
"""

from __future__ import annotations

import re

import numpy as np

from lazarus.activations import ActivationMatrix
from lazarus.analysis import MARK_THRESHOLD, MASSIVE_FACTOR, LabelSummary, Massive, NeuronStats
from lazarus.discover import CORRECTION, INTERVAL, Discovery
from lazarus.text import PROMPT_WIDTH, banner, display_width, escape, fit_cell, json_number

MIN_CELL = 6  # fits the spec's `  -156` and centres the 4-glyph heat block with a space each side
GLYPHS = (" ", "░", "▒", "▓", "█")  # heat levels 0..4
INTERVAL_TEXT = f"{INTERVAL}, stratified by label"


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


def _signed(value: float | None, decimals: int) -> str:
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
    return [[_signed(v, decimals) for v in row] for row in matrix.values.tolist()]


def heat_levels(values: np.ndarray) -> np.ndarray:
    """Heat level 0..4 of each value: floor(4 * (v - min) / (max - min)) over the whole map.

    When every value is the same there is no low or high, so every cell gets the middle
    level 2 ('▒'). Infinities get -1 (shown as '?'), NaN (no value: an MoE unit whose expert
    the token was not routed to) gets -2 (shown as '·'); neither sets the scale.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    levels = np.where(np.isnan(values), -2, -1).astype(np.int64)
    if not finite.any():
        return levels
    low, high = values[finite].min(), values[finite].max()
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
    rest = [_signed(v, decimals) for v in _rest_mean(matrix, shown)]
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
    colours: blue below 0, red above, white at 0), said in a legend line."""
    shown = _shown(matrix, max_rows)
    rest_values = _rest_mean(matrix, shown)
    widths = _column_widths(matrix, [*_value_cells(matrix, decimals)[:shown],
                                     [_signed(v, decimals) for v in rest_values]])
    levels = heat_levels(np.vstack([matrix.values[:shown], rest_values[None]]))
    shades = _shades(np.vstack([matrix.values[:shown], rest_values[None]]),
                     matrix.values) if color else None
    cells = []
    for i, row in enumerate(levels.tolist()):
        line = []
        for j, (level, width) in enumerate(zip(row, widths, strict=True)):
            block = {-2: " ·· ", -1: "????"}.get(level) or GLYPHS[level] * 4
            if shades is not None and shades[i][j] is not None:
                block = f"\x1b[38;5;{shades[i][j]}m{block}\x1b[0m"
            left = (width - 4) // 2
            line.append(" " * left + block + " " * (width - 4 - left))
        cells.append(line)
    values = matrix.values[np.isfinite(matrix.values)]
    if values.size and values.min() != values.max():
        low, high = (_signed(float(v), decimals) for v in (values.min(), values.max()))
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
    count = len(matrix.prompts)
    return count if not max_rows or count <= max_rows else max_rows


def _rest_mean(matrix: ActivationMatrix, shown: int) -> np.ndarray:
    """Per neuron, the mean of the rows not shown (NaN when none; missing values skipped)."""
    rest = matrix.values[shown:].astype(np.float64)
    if rest.shape[0] == 0:
        return np.full(matrix.values.shape[1], np.nan)
    present = np.isfinite(rest)
    counts = present.sum(axis=0)
    sums = np.where(present, rest, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# Diverging ANSI-256 palette, strongest blue .. white .. strongest red.
_PALETTE = (21, 27, 33, 39, 75, 117, 255, 217, 210, 203, 196, 160)
_SGR = re.compile(r"\x1b\[[0-9;]*m")


def _shades(values: np.ndarray, scale_of: np.ndarray) -> list[list[int | None]]:
    """Palette colour per cell: the value over the largest |value| of `scale_of`, centred at 0."""
    finite = np.abs(scale_of[np.isfinite(scale_of)])
    top = float(finite.max()) if finite.size else 0.0
    half = len(_PALETTE) // 2
    shades: list[list[int | None]] = []
    for row in np.asarray(values, dtype=np.float64).tolist():
        line: list[int | None] = []
        for value in row:
            if not np.isfinite(value):
                line.append(None)
                continue
            share = 0.0 if top == 0 else value / top  # -1 .. 1
            index = half + int(np.clip(np.floor(share * half), -half, half - 1))
            line.append(_PALETTE[index])
        shades.append(line)
    return shades


def _legend(values: np.ndarray, decimals: int) -> str:
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    swatches = "".join(f"\x1b[38;5;{code}m█\x1b[0m" for code in _PALETTE)
    return (f"(colour: {_signed(-top, decimals)} {swatches} {_signed(top, decimals)}, "
            "centred at 0; glyphs keep the quarters above)")


# --- statistics and labels ----------------------------------------------------------------------


def _neuron_ids(neurons: list[int]) -> list[str]:
    width = max([4] + [len(str(n)) for n in neurons])
    return [f"Neuron {n:>{width}}" for n in neurons]


def _aligned(texts: list[str]) -> list[str]:
    width = max((len(t) for t in texts), default=0)
    return [t.rjust(width) for t in texts]


def render_stats(
    stats: list[NeuronStats],
    decimals: int,
    weights: dict[int, float] | None = None,
    direction_labels: tuple[str | None, str | None] | None = None,
    ranking: str | None = None,
    selection: str | None = None,
    title: str = "NEURON STATISTICS",
    samples: int | None = None,
    notes: tuple[str, ...] = (),
) -> str:
    """One line per neuron; with direction weights, a closing note on what their sign means.

    `selection` says where the neurons came from when the user did not list them. A neuron
    with values on fewer than `samples` rows (MoE units) says on how many (`n=`).
    """
    names = _neuron_ids([s.neuron for s in stats])
    mins = _aligned([_signed(s.min, decimals) for s in stats])
    maxes = _aligned([_signed(s.max, decimals) for s in stats])
    means = _aligned([_signed(s.mean, decimals) for s in stats])
    stds = _aligned(["·" if np.isnan(s.std) else f"{s.std:.{decimals}f}" for s in stats])
    lines = [
        f"{name}: min= {mn}, max= {mx}, mean= {me}, std= {sd}"
        for name, mn, mx, me, sd in zip(names, mins, maxes, means, stds, strict=True)
    ]
    if samples is not None and any(s.count is not None and s.count < samples for s in stats):
        lines = [f"{line}, n={s.count} of {samples}" for line, s in zip(lines, stats,
                                                                       strict=True)]
    if weights is not None:
        found = [weights.get(s.neuron) for s in stats]
        digits = max(4, map_decimals(np.array([w for w in found if w is not None])))
        texts = _aligned([_signed(w, digits) for w in found])
        lines = [f"{line}, weight={text}" for line, text in zip(lines, texts, strict=True)]
        positive, negative = direction_labels or (None, None)
        lines += [
            "",
            f"Positive weight: higher activation = more like {positive or 'class A'}; "
            f"negative: more like {negative or 'class B'}.",
        ]
        if ranking:
            lines.append(f"Neurons ranked by {ranking}.")
    heading = banner(title) + ([f"({selection})"] if selection else [])
    return "\n".join(heading + [f"({note})" for note in notes] + lines)


def render_label_correlation(summaries: list[LabelSummary], decimals: int,
                             title: str = "LABEL CORRELATION", noun: str = "prompt") -> str:
    """Per label: each neuron's mean on its prompts, r, and an arrow when |r| is large."""
    rule = (f"(r = point-biserial correlation of the neuron with the label; "
            f"← marks |r| ≥ {MARK_THRESHOLD:g})")
    interval = (f"([low, high] = r's 95% interval by Fisher's z, not corrected for the many r "
                f"shown; none below 4 {noun}s)")
    effects = [e for s in summaries for e in s.effects]
    names = iter(_neuron_ids([e.neuron for e in effects]))
    means = iter(_aligned([_signed(e.mean, decimals) for e in effects]))
    lines = banner(title) + [rule, interval]
    for summary in summaries:
        label = escape(summary.label)
        lines += ["", f"{label} ({summary.count} {noun}{'' if summary.count == 1 else 's'}):"]
        for effect in summary.effects:
            r = "n/a" if effect.r is None else f"{effect.r:+.2f}"
            line = f"  {next(names)}: mean= {next(means)}  r={r:>5}"
            if effect.r_ci is not None:
                line += f" [{effect.r_ci[0]:+.2f}, {effect.r_ci[1]:+.2f}]"
            if effect.count is not None and effect.count < summary.count:
                line += f"  (n={effect.count} of {summary.count})"
            if effect.verdict is not None:
                line += f"  ← fires {effect.verdict} for {label}"
            lines.append(line)
    return "\n".join(lines)


def render_neurons_report(
    matrix: ActivationMatrix,
    stats: list[NeuronStats],
    label_summaries: list[LabelSummary] | None,
    weights: dict[int, float] | None = None,
    direction_labels: tuple[str | None, str | None] | None = None,
    ranking: str | None = None,
    selection: str | None = None,
    at_layer: bool = False,
    grids: bool = True,
    sample_noun: str = "prompt",
    max_rows: int | None = None,
    color: bool = False,
    notes: tuple[str, ...] = (),
    discovery: Discovery | None = None,
) -> str:
    """The spec's sections in order, a blank line apart, without a trailing newline.

    Statistics and label means show one more decimal than the map. `at_layer` names the layer
    in every title (several layers are shown); `grids=False` leaves out the map and heatmap
    (per-token views show strips instead). With more prompts than `max_rows`, the map and the
    heatmap show the first `max_rows` and one row with the mean of the rest. `notes` go under
    the statistics' heading; with `discovery`, its section closes the report.
    """
    decimals = map_decimals(matrix.values)
    at = f" AT LAYER {matrix.layer}" if at_layer else ""
    sections = []
    if grids:
        sections += [render_activation_map(matrix, decimals, max_rows),
                     render_heatmap(matrix, decimals, max_rows, color)]
    sections.append(render_stats(stats, decimals + 1, weights, direction_labels, ranking,
                                 selection, title=f"NEURON STATISTICS{at}",
                                 samples=matrix.values.shape[0], notes=notes))
    if label_summaries is not None:
        sections.append(render_label_correlation(label_summaries, decimals + 1,
                                                 title=f"LABEL CORRELATION{at}",
                                                 noun=sample_noun))
    if discovery is not None:
        sections.append(render_discovery(discovery, matrix.layer))
    return "\n\n".join(sections)


def massive_note(massive: tuple[Massive, ...], shown: tuple[int, ...]) -> str | None:
    """One sentence naming the layer's massive-activation dimensions, or None without any."""
    if not massive:
        return None
    named = ", ".join(f"{m.neuron} ({m.ratio:.0f}x)" for m in massive[:10])
    more = f" and {len(massive) - 10} more" if len(massive) > 10 else ""
    among = [str(m.neuron) for m in massive if m.neuron in shown]
    told = f"; among those shown: {', '.join(among)}" if among else ""
    return (f"massive-activation dimensions at this layer (mean |value| at least "
            f"{MASSIVE_FACTOR:g}x the median neuron's): {named}{more}; they top any ranking by "
            f"spread whatever the prompts{told}")


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def render_discovery(discovery: Discovery, layer: int) -> str:
    """What --auto-discover tested and how, then each surviving neuron: effect, 95% interval,
    p and corrected p; with none, one plain sentence and the strongest effect chance gave."""
    symbol = discovery.symbol
    lines = banner(f"DISCOVERED NEURONS AT LAYER {layer}") + [
        f"(test: {discovery.test_text()}; 95% CI: {INTERVAL_TEXT}, {discovery.resamples} "
        f"resamples; seed {discovery.seed})"]
    if discovery.effect == "Cohen's d":
        lines.append(f"(d > 0: higher on {escape(discovery.labels[0])} than on "
                     f"{escape(discovery.labels[1])})")
    if discovery.untested:
        lines.append(f"({len(discovery.untested)} neurons not tested: constant, or missing or "
                     "non-finite values)")
    if discovery.smallest_p >= discovery.alpha:
        lines.append(f"(with these label counts no p can fall below {discovery.alpha:g}: the "
                     f"smallest possible is {discovery.smallest_p:.2g}; give more prompts)")
    if not discovery.findings:
        best = discovery.candidates[0] if discovery.candidates else None
        lines.append(f"No neuron survives: none of the {discovery.tested} tested has corrected "
                     f"p < {discovery.alpha:g}, so none separates the labels beyond what "
                     "shuffled labels do.")
        if best is not None:
            lines.append(f"(the largest effect, neuron {best.neuron}: {symbol}={best.effect:+.2f}, "
                         f"corrected p={_p(best.p_corrected)}; the neurons shown above are for "
                         "inspection only)")
        return "\n".join(lines)
    lines.append(f"{discovery.survivors} of {discovery.tested} neurons survive at corrected "
                 f"p < {discovery.alpha:g}; the {len(discovery.findings)} strongest:")
    names = _neuron_ids([f.neuron for f in discovery.findings])
    effects = _aligned([f"{f.effect:+.2f}" for f in discovery.findings])
    intervals = _aligned([f"[{f.low:+.2f}, {f.high:+.2f}]" for f in discovery.findings])
    for name, effect, interval, found in zip(names, effects, intervals, discovery.findings,
                                             strict=True):
        lines.append(f"{name}: {symbol}= {effect}  95% CI {interval}  p={_p(found.p)}  "
                     f"corrected p={_p(found.p_corrected)}")
    return "\n".join(lines)


# --- JSON ---------------------------------------------------------------------------------------


def neurons_json(
    matrix: ActivationMatrix,
    stats: list[NeuronStats],
    label_summaries: list[LabelSummary] | None,
    weights: dict[int, float] | None,
    extra: dict,
) -> dict:
    """The spec's saved format; `neuron_weights` only with weights, `label_correlation` only
    with labels, then the keys of `extra` (which may not replace any of these)."""
    result: dict = {
        "model_id": matrix.model_id,
        "layer": int(matrix.layer),
        "neurons": [int(n) for n in matrix.neurons],
        "prompts": list(matrix.prompts),
        "labels": None if matrix.labels is None else list(matrix.labels),
        "activations": [[json_number(v) for v in row] for row in matrix.values.tolist()],
    }
    if weights is not None:
        result["neuron_weights"] = {str(n): json_number(weights.get(n)) for n in matrix.neurons}
    result["stats"] = {
        str(s.neuron): {key: json_number(getattr(s, key)) for key in ("min", "max", "mean", "std")}
        for s in stats
    }
    if label_summaries is not None:
        result["label_correlation"] = {
            s.label: {
                "count": s.count,
                "neurons": {
                    str(e.neuron): {
                        "mean": json_number(e.mean),
                        "rest_mean": json_number(e.rest_mean),
                        "r": json_number(e.r),
                        "r_ci95": None if e.r_ci is None else [json_number(v) for v in e.r_ci],
                        "verdict": e.verdict,
                    }
                    for e in s.effects
                },
            }
            for s in label_summaries
        }
    clash = sorted(result.keys() & extra.keys())
    if clash:
        raise ValueError(f"extra keys would replace the report's own: {', '.join(clash)}")
    result.update(extra)
    return result


def discovery_json(discovery: Discovery) -> dict:
    """--auto-discover's test, correction, counts and each shown neuron's figures."""
    def finding(f) -> dict:  # type: ignore[no-untyped-def]
        return {"neuron": f.neuron, "effect": json_number(f.effect),
                "ci95": [json_number(f.low), json_number(f.high)], "p": f.p,
                "p_corrected": f.p_corrected}
    return {
        "effect": discovery.effect,
        "labels": list(discovery.labels),
        "test": "permutation",
        "correction": CORRECTION,
        "interval": INTERVAL_TEXT,
        "permutations": discovery.permutations,
        "resamples": discovery.resamples,
        "alpha": discovery.alpha,
        "seed": discovery.seed,
        "tested": discovery.tested,
        "untested": list(discovery.untested),
        "survivors": discovery.survivors,
        "smallest_possible_p": discovery.smallest_p,
        "findings": [finding(f) for f in discovery.findings],
        "candidates": [finding(f) for f in discovery.candidates],
    }


def massive_json(massive: tuple[Massive, ...]) -> list[dict]:
    return [{"neuron": m.neuron, "mean_abs": json_number(m.mean_abs),
             "ratio_to_median": json_number(m.ratio)} for m in massive]
