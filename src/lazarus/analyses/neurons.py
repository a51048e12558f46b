"""How chosen neurons fire across prompts, at one or several layers, at any site and token
position: the analysis behind `lazarus introspect neurons`, as plain results (never prints).

One capture pass (`collect`) reads every asked-for layer. The neurons are the same ids at every
layer, so that one neuron can be followed across layers: the ones given, the top-k of a
direction, the strongest survivors of `--auto-discover` (see `discover`), or else the k
with the largest spread (population std) across the prompts, averaged over the layers. Each
layer read at full width also names its "massive activation" dimensions
(`analysis.massive_dimensions`), which would otherwise top a ranking by spread silently.
With `position="all"` every token of every prompt is a row of the map, and each prompt's own
tokens are the samples: statistics, label means, the ranking by spread and the massive
dimensions leave out the tokenizer's prefix (e.g. BOS), which is the same row in every prompt
and an attention sink whose values dwarf the others' (counted, it would weigh more in a label
of shorter prompts); label correlations come without intervals or marks, since tokens of one
prompt are not independent samples.
With labels, prompts are the unit of every statistic: a repeated prompt is merged into one
(`io.distinct`; said through `model.notify`), and one prompt under two labels is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from lazarus.analyses.options import NeuronsOptions
from lazarus.analyses.selection import (
    check_direction,
    check_direction_width,
    check_neurons,
    top_of,
)
from lazarus.engine.collect import Progress, collect
from lazarus.engine.handle import ModelHandle
from lazarus.engine.loading import token_texts
from lazarus.engine.model_info import ModelInfo
from lazarus.engine.moe import moe_shape
from lazarus.engine.sites import check_neurons_early
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError
from lazarus.io.corpus import prefix_length, prefix_of
from lazarus.io.distinct import merge
from lazarus.io.inputs import check_label_count
from lazarus.results.activations import ActivationMatrix
from lazarus.results.neurons import LayerResult, NeuronsResult, prefix_mask
from lazarus.stats import discover
from lazarus.stats import neurons as analysis


def analyse_neurons(model: ModelHandle, prompts: Sequence[str], options: NeuronsOptions,
                    progress: Progress | None = None) -> NeuronsResult:
    """Capture the layers at the site and position of `options` for `prompts` in one pass,
    choose the neurons, and compute their statistics per layer. With `auto_discover`, every
    neuron of the (one) layer is tested against the labels and the strongest survivors shown."""
    info = model.info
    layers = model.layers(options.layers)
    site, position, labels = options.site, options.position, options.labels
    neurons, direction, top_k = options.neurons, options.direction, options.top_k
    merged = 0
    if labels is not None:
        check_label_count(len(labels), len(prompts))
        distinct = merge(prompts, labels)
        prompts, labels, merged = list(distinct.prompts), list(distinct.labels), distinct.merged
        if merged:
            model.notify(distinct.note())
    if options.auto_discover:
        # again on the distinct prompts: merging may leave a label with one prompt
        discover.check_request(labels, neurons, direction is not None, layers, position,
                               options.permutations)
    if neurons is not None:
        check_neurons_early(info.config, info.hidden_size, site, layers[0], neurons)
    if direction is not None:
        check_direction(model, direction, layers, site, position)
    every = position == "all"
    known = (direction.top_neurons(top_k, model.warn) if direction is not None
             else None if neurons is None else list(neurons))
    # Per token, only the known neurons' columns are kept (memory), at the cost of the cache.
    columns = tuple(known) if every and known is not None else None
    request = CaptureRequest(layers=tuple(layers), site=site, position=position,
                             columns=columns)
    collected = collect(info, prompts, request, model.settings, progress=progress,
                        notify=model.notify, loader=model.weights)
    per_prompt = collected.rows  # {layer: [prompts, width]} or {layer: [[tokens, width], ...]}
    samples = {layer: np.concatenate(rows) if every else rows  # [samples, width]
               for layer, rows in per_prompt.items()}
    tokens = prefixes = None
    own = None  # per token: the rows that are the prompts' own tokens, not the tokenizer's prefix
    if every:  # the prefix (BOS) is the same row in every prompt: shown, never counted
        tokenizer = model.tokenizer()
        ids, texts = token_texts(tokenizer, list(prompts))
        tokens = tuple(tuple(row) for row in texts)
        prefixes = tuple(prefix_length(row, prefix_of(tokenizer)) for row in ids)
        own = ~prefix_mask([len(rows) for rows in per_prompt[layers[0]]], prefixes)
    counted = samples if own is None else {layer: rows[own] for layer, rows in samples.items()}
    widths = collected.widths
    for layer, width in widths.items():
        if neurons is not None:
            check_neurons(neurons, width, site, layer)
        if direction is not None:
            check_direction_width(direction, width, site)

    found = None
    choice = analysis.Choice(per_token=every)  # given: listed, or a direction's top neurons
    if options.auto_discover:
        found = discover.discover(counted[layers[0]], labels, top_k=top_k,
                                  permutations=options.permutations)
        chosen, selection = [f.neuron for f in found.shown], found.describe()
        choice = analysis.Choice(by=analysis.EFFECT, among=found.tested,
                                 survivors=frozenset(f.neuron for f in found.findings))
    elif direction is not None:
        chosen = known
        selection = top_of(direction, len(chosen))
    elif neurons is not None:
        chosen, selection = known, None
    else:
        chosen, selection = _most_variable(counted, top_k, every)
        choice = analysis.Choice(by=analysis.SPREAD, among=widths[layers[0]], per_token=every)
    picked = list(range(len(chosen))) if columns is not None else chosen  # columns of samples

    sample_labels = None
    if labels is not None:
        counts = [len(rows) for rows in per_prompt[layers[0]]] if every else [1] * len(prompts)
        sample_labels = [label for label, n in zip(labels, counts, strict=True)
                         for _ in range(n)]
    names = _sample_names(prompts, per_prompt[layers[0]]) if every else list(prompts)
    results = []
    for layer in layers:
        matrix = ActivationMatrix(values=samples[layer][:, picked], prompts=tuple(names),
                                  neurons=tuple(chosen), layer=layer,
                                  labels=None if sample_labels is None else tuple(sample_labels),
                                  site=site, model_id=info.model_id)
        per_token = (tuple(rows[:, picked] for rows in per_prompt[layer]) if every else None)
        statistics = matrix if own is None else replace(
            matrix, values=matrix.values[own],
            prompts=tuple(name for name, keep in zip(names, own, strict=True) if keep),
            labels=None if sample_labels is None else tuple(
                label for label, keep in zip(sample_labels, own, strict=True) if keep))
        results.append(LayerResult(
            matrix=matrix, stats=analysis.neuron_stats(statistics),
            label_summaries=analysis.label_correlation(statistics, choice) if labels else None,
            per_token=per_token, width=widths[layer],
            experts=moe_experts(info, site, widths[layer]),
            massive=None if columns is not None else analysis.massive_dimensions(counted[layer]),
            discovery=found))
    return NeuronsResult(
        layers=tuple(results), neurons=tuple(chosen), prompts=tuple(prompts),
        labels=None if labels is None else tuple(labels), site=site, position=position,
        selection=selection, choice=choice, tokens=tokens, prefixes=prefixes,
        weights=direction.weights_of(chosen) if direction is not None else None,
        direction_labels=((direction.label_positive, direction.label_negative)
                          if direction is not None else None),
        collected=collected, model_id=info.model_id, layer_count=info.layer_count,
        hidden_size=info.hidden_size, merged_copies=merged)


def _most_variable(samples: dict[int, np.ndarray], k: int, every: bool) -> tuple[list[int], str]:
    widths = {layer: values.shape[-1] for layer, values in samples.items()}
    if len(set(widths.values())) > 1:
        told = ", ".join(f"{width} at layer {layer}" for layer, width in widths.items())
        raise LazarusError(f"these layers have different widths at this site ({told}), so no "
                           "neuron id means the same at all of them (give --neurons, or layers "
                           "of one kind)")
    spreads = np.mean([analysis.spread(values) for values in samples.values()], axis=0)
    order = np.lexsort((np.arange(spreads.shape[0]), -spreads))
    chosen = [int(i) for i in order[:k]]
    across = "tokens" if every else "prompts"
    over = "" if len(samples) == 1 else ", averaged over the layers"
    if not np.any(spreads[np.isfinite(spreads)] > 0):
        return chosen, (f"no neurons given, and every neuron is constant across these {across}: "
                        f"showing neurons {chosen[0]} to {chosen[-1]}")
    return chosen, (f"no neurons given: the {len(chosen)} with the largest std across these "
                    f"{across}{over}")


def _sample_names(prompts: Sequence[str], rows: list[np.ndarray]) -> list[str]:
    return [f"{prompt}[{j}]" for prompt, values in zip(prompts, rows, strict=True)
            for j in range(values.shape[0])]


def moe_experts(info: ModelInfo, site: str, width: int) -> int | None:
    """E when the mlp_post site of this layer is MoE units (E experts x I units), else None."""
    shape = moe_shape(info.config)
    if site != "mlp_post" or shape is None:
        return None
    experts, units = shape
    return experts if width == experts * units else None
