"""How chosen neurons fire across prompts, at one or several layers, at any site and token
position: the analysis behind `lazarus introspect neurons`, as plain results (never prints).

One capture pass (`collect`) reads every asked-for layer. The neurons are the same ids at every
layer, so that one neuron can be followed across layers: the ones given, the top-k of a
direction file, the strongest survivors of `--auto-discover` (see `discover`), or else the k
with the largest spread (population std) across the prompts, averaged over the layers. Each
layer read at full width also names its "massive activation" dimensions
(`analysis.massive_dimensions`), which would otherwise top a ranking by spread silently.
With `position="all"` every real token of every prompt is a sample: statistics and label means
are over tokens, and each prompt's per-token values are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lazarus.analyses.selection import check_direction_made
from lazarus.engine.capture import CaptureRequest
from lazarus.engine.collect import Progress, collect
from lazarus.engine.handle import Handle
from lazarus.engine.loading import token_texts
from lazarus.engine.model_info import ModelInfo
from lazarus.engine.moe import moe_shape
from lazarus.engine.positions import Position, parse_position
from lazarus.engine.sites import (
    RESIDUAL_WIDTH,
    check_neurons_early,
    mlp_post_bound,
    neuron_out_of_range,
)
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, load_direction
from lazarus.io.inputs import check_label_count
from lazarus.results.activations import ActivationMatrix
from lazarus.results.neurons import LayerResult, NeuronsResult
from lazarus.stats import discover
from lazarus.stats import neurons as analysis
from lazarus.text import plural


def analyse_neurons(
    model: Handle,
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    site: str = "resid_post",
    position: Position = "last",
    neurons: Sequence[int] | None = None,
    direction: Direction | str | None = None,
    top_k: int = 10,
    labels: Sequence[str] | None = None,
    progress: Progress | None = None,
    auto_discover: bool = False,
    permutations: int = discover.PERMUTATIONS,
) -> NeuronsResult:
    """Capture `layers` at `site` and `position` for `prompts` in one pass, choose the neurons,
    and compute their statistics per layer. `auto_discover` tests every neuron of the (one)
    layer against `labels` and shows the strongest survivors (`permutations` shuffles)."""
    info = model.info
    position = parse_position(str(position))
    if neurons is not None and direction is not None:
        raise LazarusError("--neurons and --from-direction were both given (choose one)")
    if top_k < 1:
        raise LazarusError(f"--top-k must be at least 1 (got {top_k})")
    if labels is not None:
        check_label_count(len(labels), len(prompts))
    if auto_discover:
        discover.check_request(labels, neurons, direction is not None, layers, position,
                               permutations)
    if isinstance(direction, str):
        direction = load_direction(direction)
    direction_name = (direction.source if direction is not None else None) or "the direction"
    if direction is not None:
        check_direction_made(direction, direction_name, model.model_id, layers, site, position,
                             model.warn)
    if neurons is not None:
        neurons = [int(n) for n in neurons]
        check_neurons_early(info.config, info.hidden_size, site, layers[0], neurons)
    if direction is not None:
        check_direction_early(direction, info.config, info.hidden_size, direction_name, site)
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
    widths = collected.widths
    for layer, width in widths.items():
        if neurons is not None:
            check_neurons(neurons, width, site, layer)
        if direction is not None:
            check_direction_width(direction, width, direction_name, site)

    found = None
    if auto_discover:
        found = discover.discover(samples[layers[0]], labels, top_k=top_k,
                                  permutations=permutations)
        chosen, selection = [f.neuron for f in found.shown], found.describe()
    elif direction is not None:
        chosen = known
        selection = f"top {len(chosen)} of {direction_name} by {direction.ranking_name()}"
    elif neurons is not None:
        chosen, selection = known, None
    else:
        chosen, selection = _most_variable(samples, top_k, every)
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
        results.append(LayerResult(
            matrix=matrix, stats=analysis.neuron_stats(matrix),
            label_summaries=analysis.label_correlation(matrix) if labels else None,
            per_token=per_token, width=widths[layer],
            experts=moe_experts(info, site, widths[layer]),
            massive=None if columns is not None else analysis.massive_dimensions(samples[layer]),
            discovery=found))
    tokens = None
    if every:
        texts = token_texts(info, list(prompts), model.settings.trust_remote_code)
        tokens = tuple(tuple(row) for row in texts)
    return NeuronsResult(
        layers=tuple(results), neurons=tuple(chosen), prompts=tuple(prompts),
        labels=None if labels is None else tuple(labels), site=site, position=position,
        selection=selection, tokens=tokens,
        weights=direction.weights_of(chosen) if direction is not None else None,
        direction_labels=((direction.label_positive, direction.label_negative)
                          if direction is not None else None),
        collected=collected, model_id=info.model_id, layer_count=info.layer_count,
        hidden_size=info.hidden_size)


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


def check_neurons(neurons: Sequence[int], width: int, site: str, layer: int) -> None:
    for neuron in neurons:
        if neuron >= width:
            raise neuron_out_of_range(neuron, width, site, layer)


def check_direction_width(direction: Direction, width: int, name: str, site: str) -> None:
    if direction.hidden_size != width:
        raise LazarusError(f"{name} has {plural(direction.hidden_size, 'weight')} but the {site} "
                           f"site has {plural(width, 'neuron')} (use a direction made for this "
                           "model and site)")


def check_direction_early(direction: Direction, config: dict, hidden_size: int, name: str,
                          site: str) -> None:
    """Refuse, from config.json and before any weight loads, a direction no layer of the site
    fits: the residual-width sites are exactly the hidden size wide; mlp_post at most
    `sites.mlp_post_bound` (a shorter one is refused once the width is seen)."""
    if site in RESIDUAL_WIDTH:
        check_direction_width(direction, hidden_size, name, site)
        return
    bound = mlp_post_bound(config) if site == "mlp_post" else None
    if bound is not None and direction.hidden_size > bound[0]:
        width, why = bound
        raise LazarusError(f"{name} has {plural(direction.hidden_size, 'weight')} but the {site} "
                           f"site has at most {plural(width, 'neuron')} at any layer of this "
                           f"model (config.json: {why}; use a direction made for this model "
                           "and site)")


def moe_experts(info: ModelInfo, site: str, width: int) -> int | None:
    """E when the mlp_post site of this layer is MoE units (E experts x I units), else None."""
    shape = moe_shape(info.config)
    if site != "mlp_post" or shape is None:
        return None
    experts, units = shape
    return experts if width == experts * units else None
