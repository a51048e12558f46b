"""Text of a `NeuronsResult`: the spec's report for one layer, and what several layers and
per-token positions add (per-layer sections, a cross-layer view, token strips); never prints.
Its JSON is `lazarus.results.neurons`'s."""

from __future__ import annotations

import numpy as np

from lazarus.render.grid import GLYPHS, heat_levels, map_decimals, signed
from lazarus.render.neurons import massive_note, render_neurons_report
from lazarus.results.neurons import LayerResult, NeuronsResult
from lazarus.text import banner, display_width, escape, pad, plural


def render_result(result: NeuronsResult, ranking: str | None = None,
                  max_rows: int | None = None, color: bool = False) -> str:
    """Every layer's sections, then (several layers) the cross-layer view. With more prompts
    than `max_rows` (None or 0: no limit), grids and strips show only the first `max_rows`."""
    several = len(result.layers) > 1
    every = result.position == "all"
    parts = []
    if (result.site, result.position) != ("resid_post", "last"):  # else exactly the spec's
        parts.append(f"(site: {result.site}, position: {result.position})")
    if result.merged_copies:
        parts.append(f"{plural(len(result.prompts), 'distinct prompt')} "
                     f"({plural(result.merged_copies, 'copy', 'copies')} merged): a repeated "
                     "prompt counts once.")
    for layer in result.layers:
        if layer.experts:
            units = layer.width // layer.experts
            mean = ("; --position mean averages each prompt's routed tokens only"
                    if result.position == "mean" else "")
            parts.append(f"(layer {layer.matrix.layer} is an MoE layer: neuron n is unit "
                         f"n % {units} of expert n // {units}; · = the token was not routed to "
                         f"that expert, and statistics count only the routed ones{mean})")
        if every:
            parts.append(render_strips(result, layer, max_rows))
        parts.append(render_neurons_report(
            layer.matrix, layer.stats, layer.label_summaries, weights=result.weights,
            direction_labels=result.direction_labels, ranking=ranking,
            selection=result.selection, at_layer=several or every, grids=not every,
            sample_noun="token" if every else "prompt", max_rows=max_rows, color=color,
            notes=tuple(n for n in [massive_note(layer.massive, result.neurons)] if n),
            discovery=layer.discovery, choice=result.choice, layers=len(result.layers)))
    if several:
        parts.append(render_across_layers(result))
    return "\n\n".join(parts)


def render_strips(result: NeuronsResult, layer: LayerResult, max_rows: int | None = None) -> str:
    """Each prompt's tokens, and under them one glyph strip per neuron (its own scale); with
    more prompts than `max_rows`, the first `max_rows` prompts."""
    assert layer.per_token is not None and result.tokens is not None
    columns = np.concatenate(layer.per_token)  # [every token, neurons]
    prefix = result.prefix_rows()  # BOS: left out of each neuron's scale, clipped to its ends
    rest = columns[~prefix] if prefix.any() and not prefix.all() else columns
    levels = [heat_levels(column, kept) for column, kept in zip(columns.T, rest.T, strict=True)]
    decimals = map_decimals(columns)
    names = [f"N{neuron}" for neuron in result.neurons]
    label_width = max(len("tokens"), *(len(n) for n in names))
    lines = banner(f"PER-TOKEN VALUES AT LAYER {layer.matrix.layer} "
                   "(░ = low, ▒ = medium, ▓ = high, █ = max; · = no value)")
    scales = []
    for name, column in zip(names, rest.T, strict=True):
        present = column[np.isfinite(column)]
        low, high = ((f"{present.min():+.{decimals}f}", f"{present.max():+.{decimals}f}")
                     if present.size else ("·", "·"))
        scales.append(f"{name} {low} to {high}")
    over = "every token" if rest is columns else "every token but the tokenizer's prefix"
    lines.append(f"(each neuron on its own scale over {over}: {'; '.join(scales)})")
    if rest is not columns:
        first = [t for tokens, n in zip(result.tokens, result.prefixes or (), strict=False)
                 for t in tokens[:n]]
        found = columns[prefix][np.isfinite(columns[prefix])]
        reach = (f": its values reach {found.min():+.{decimals}f} to "
                 f"{found.max():+.{decimals}f}" if found.size else "")
        lines.append(f"(prefix {escape(' '.join(dict.fromkeys(first)))} clipped to each "
                     f"scale's ends{reach}; not counted in the statistics below)")
    total = len(result.prompts)
    shown = total if not max_rows or total <= max_rows + 1 else max_rows
    if shown < total:
        lines.append(f"(the first {shown} of {plural(total, 'prompt')}; statistics below use "
                     "the tokens of all of them; --max-rows 0 shows every prompt, -o FILE saves "
                     "every value)")
    start = 0
    for index, (prompt, tokens) in enumerate(zip(result.prompts[:shown], result.tokens,
                                                 strict=False)):
        texts = [escape(token) or " " for token in tokens]
        widths = [max(1, display_width(text)) for text in texts]
        lines += ["", f"{index + 1}. {escape(prompt)}",
                  f"  {pad('tokens', label_width)} " + " ".join(
                      pad(text, width) for text, width in zip(texts, widths, strict=True))]
        for name, neuron_levels in zip(names, levels, strict=True):
            cells = []
            for level, width in zip(neuron_levels[start:start + len(tokens)], widths,
                                    strict=True):
                glyph = {-2: "·", -1: "?"}.get(int(level)) or GLYPHS[int(level)]
                cells.append(glyph * width)
            lines.append(f"  {pad(name, label_width)} " + " ".join(cells))
        start += len(tokens)
    return "\n".join(lines)


def render_across_layers(result: NeuronsResult) -> str:
    """Each neuron's mean per layer; with labels, each label's mean per layer."""
    layer_ids = result.layer_ids
    means = np.array([[s.mean for s in layer.stats] for layer in result.layers])  # [layers, n]
    decimals = map_decimals(means) + 1
    header = ["Neuron", *(f"L{layer}" for layer in layer_ids)]
    rows = [[f"N{neuron:4d}", *(signed(means[i, j], decimals) for i in range(len(layer_ids)))]
            for j, neuron in enumerate(result.neurons)]
    routed = " (MoE units: the routed ones)" if any(layer.experts for layer in result.layers) \
        else ""
    lines = banner("NEURONS ACROSS LAYERS") + [
        "(mean over every " + ("token" if result.position == "all" else "prompt") + routed +
        " at each layer" + ("; then each label's mean" if result.labels else "") + ")"]
    lines += _table(header, rows)
    if result.layers[0].label_summaries is not None:
        for k, summary in enumerate(result.layers[0].label_summaries):
            lines += ["", f"{escape(summary.label)}:"]
            label_rows = [[f"N{neuron:4d}", *(signed(layer.label_summaries[k].effects[j].mean,
                                                  decimals) for layer in result.layers)]
                          for j, neuron in enumerate(result.neurons)]
            lines += _table(header, label_rows)
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    def line(cells: list[str]) -> str:
        return " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
    return [line(header), "-" * len(line(header)), *(line(row) for row in rows)]


