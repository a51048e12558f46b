"""Add a direction to a layer's activations while the model generates, and measure what moves:
the analysis behind `lazarus introspect steer` (never prints).

The vector added, at every token position (prompt and generated tokens, KV cache on), is
`coefficient × scale × unit`, where `unit` is the direction at unit L2 length:
- from a probe's `.npz` (`direction`), at its layer and site unless told otherwise;
- or the mean difference of the site's values at the last token of `positive` minus
  `negative` prompts, at the layer;
and `scale` is the mean L2 norm of the site's vectors at that layer over the prompts' tokens
but a tokenizer prefix such as BOS (`relative`, the default: `steer_strength.activation_norm`),
so coefficient 1 adds a vector as long as a typical activation; or 1 (`absolute=True`), the
coefficient then being the added vector's length. That norm is measured in every mode, and each
added vector's length is reported as a fraction of it (with a warning past
`steer_strength.WARN_FRACTION`, except with `clamp`). No coefficients given: the mode's default
(`steer_strength.default_coefficients`).
With `neurons` ({id: value}), the vector holds `value` at each id and 0 elsewhere, and is
added as is: coefficient × values (absolute, in activation units); with `clamp=True` those
neurons are instead set to coefficient × value at every token (coefficient 0 then means no
edit at all, the unmodified model, not neurons set to 0).
Coefficient 0 is always run too: it is the unmodified model, and every change is against it.
Measured per prompt and coefficient: the continuation (greedy by default; sampled at
`temperature` with a generator seeded by `seed`, the same draws for every coefficient), the
log-probability of each named token (a word's tokens, teacher-forced after the prompt,
summed), with its change from coefficient 0, and the log-probability of coefficient 0's own
continuation (teacher-forced, summed over its tokens): how far each coefficient moves the model
from what it says unsteered, with or without named tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lazarus.analyses import steer_strength
from lazarus.analyses.options import SteerOptions
from lazarus.analyses.selection import (
    check_direction,
    check_direction_width,
    check_neurons,
    direction_name,
)
from lazarus.engine import measures
from lazarus.engine.capture import capture, tokenize
from lazarus.engine.handle import ModelHandle
from lazarus.engine.interventions import Edit, add
from lazarus.engine.sites import check_neurons_early
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError
from lazarus.io.corpus import prefix_of
from lazarus.results.steer import SteerResult, SteerRun
from lazarus.text import plural


def analyse_steer(model: ModelHandle, prompts: Sequence[str], options: SteerOptions) -> SteerResult:
    """Generate from `prompts` with what `options` says added at its layer, per coefficient."""
    direction, neurons, clamp = options.direction, options.neurons, options.clamp
    positive, negative, tokens = options.positive, options.negative, options.tokens
    max_tokens, absolute, seed = options.max_tokens, options.absolute, options.seed
    if absolute and neurons is not None:
        model.warn("--absolute changes nothing with --neurons: their values are always "
                   f"{'set' if clamp else 'added'} as given (coefficient x value, in activation "
                   "units)")
    kind = steer_strength.mode(neurons, absolute)
    layer = options.layer
    if layer is None:
        if direction is None or direction.layer is None:
            raise LazarusError("give a layer (-l): "
                               + ("the direction file names none" if direction is not None
                                  else "--positive/--negative and --neurons need one"))
        layer = direction.layer
    layer = model.layers(layer)[0]
    site = options.site or (direction.site if direction is not None else None) or "resid_post"
    if site == "attn_head":
        raise LazarusError("steering adds to a site's values, but an attn_head unit is read as "
                           "a head's write norm, which has no direction to add along (steer at "
                           "attn_out or resid_post; knock heads out with introspect ablate)")
    if neurons is not None:  # before the weights load: ids no layer of the site has
        check_neurons_early(model.info.config, model.hidden_size, site, layer, neurons)
    if direction is not None:
        check_direction(model, direction, [layer], site, "last")
    loaded = model.whole_weights()
    tokenize(loaded, prompts)  # every prompt has tokens, before any forward
    token_ids = []
    for word in tokens:
        ids = list(loaded.tokenizer(word, add_special_tokens=False)["input_ids"])
        if not ids:
            raise LazarusError(f"--tokens: {word!r} tokenizes to nothing (give some text)")
        measures.warn_unknown(model.warn, loaded.tokenizer, "--tokens", word, ids,
                              "its Δlog p")
        token_ids.append(ids)
    widths: dict[int, int] = {}
    capture(loaded, prompts[:1], CaptureRequest((layer,), site, "last"), widths=widths)
    width = widths[layer]

    if direction is not None:
        name = direction_name(direction)
        check_direction_width(direction, width, site)
        vector = _unit(direction.direction.astype(np.float64), name)
        source = f"{name} (positive = {direction.label_positive or 'class A'})"
    elif neurons is not None:
        check_neurons(list(neurons), width, site, layer)
        vector = np.zeros(width)
        for neuron, value in neurons.items():
            vector[neuron] = value
        source = ("neurons clamped to coefficient x " if clamp else "neurons ") + ", ".join(
            f"{n}:{v:g}" for n, v in neurons.items())
        absolute = True
    else:
        request = CaptureRequest((layer,), site, "last")
        means = [_routed_mean(capture(loaded, list(group), request)[layer])
                 for group in (positive, negative)]
        vector = _unit(np.where(np.isnan(means[0]) | np.isnan(means[1]), 0.0,
                                means[0] - means[1]), "mean(--positive) - mean(--negative)")
        routed = any(np.isnan(m).any() for m in means)
        source = (f"mean of {plural(len(positive), '--positive prompt')} minus mean of "
                  f"{plural(len(negative), '--negative prompt')}, at the last token"
                  + (" (per unit, over the prompts routed to its expert; 0 where a side has "
                     "none)" if routed else ""))
    prompt_ids = tokenize(loaded, prompts)
    rows = capture(loaded, list(prompts), CaptureRequest((layer,), site, "all"))[layer]
    norm, norm_tokens = steer_strength.activation_norm(rows, prompt_ids,
                                                       prefix_of(loaded.tokenizer))
    routed_only = any(np.isnan(row).any() for row in rows)  # MoE expert units
    scale = 1.0 if absolute else norm
    measures.check_room(loaded, prompt_ids, max_tokens)
    measures.check_scored_room(loaded, prompt_ids, [
        (f"--tokens {measures.quoted(word)}", ids) for word, ids in zip(tokens, token_ids,
                                                                         strict=True)],
        paired=False)
    asked = options.coefficients
    swept = asked is None and bool(options.compare)  # a bare --compare: the sweep's range
    if asked is None:
        asked = (steer_strength.sweep(kind, norm) if options.compare
                 else steer_strength.default_coefficients(kind))
    ordered = [0.0, *[float(c) for c in asked if c != 0]]
    largest = max(abs(c) for c in ordered) * scale * float(np.max(np.abs(vector)))
    if not largest < float(np.finfo(np.float32).max) / 1e18:  # room for the model's own sums
        raise LazarusError(f"a coefficient of {max(abs(c) for c in ordered):g} makes a vector "
                           f"of size {largest:.3g}, beyond what float32 activations hold (use "
                           "a smaller coefficient)")
    if not clamp and norm > 0 and not (swept and kind != "neurons"):  # within the limit
        length = scale * float(np.linalg.norm(vector))
        warning = steer_strength.too_strong(kind, ordered, [c * length / norm for c in ordered],
                                            swept)
        if warning:
            model.warn(warning)
    runs, baseline, unsteered = [], None, None
    for coefficient in ordered:
        if clamp:  # the neurons set to coefficient x value; coefficient 0: no edit
            ids = tuple(neurons)
            edits = [] if coefficient == 0 else [Edit(layer, site, "set", ids, values=np.array(
                [coefficient * neurons[n] for n in ids], dtype=np.float32))]
        else:
            edits = [add(layer, site, (coefficient * scale * vector).astype(np.float32))]
        made = measures.generate(loaded, prompt_ids, max_tokens, edits, options.temperature,
                                 seed)
        scores = [[float(row.sum()) for row in measures.answer_log_probs(
            loaded, prompt_ids, [ids] * len(prompt_ids), edits)] for ids in token_ids]
        per_prompt = tuple(tuple(scores[w][p] for w in range(len(token_ids)))
                           for p in range(len(prompts)))
        baseline = baseline or per_prompt
        if unsteered is None:  # coefficient 0's continuation, scored at every coefficient
            unsteered = made
        kept = tuple(float(row.sum()) for row in measures.answer_log_probs(
            loaded, prompt_ids, unsteered, edits))
        runs.append(SteerRun(
            coefficient=coefficient,
            continuations=tuple(loaded.tokenizer.decode(row, skip_special_tokens=True)
                                for row in made),
            log_probs=per_prompt,
            unsteered_log_probs=kept,
            changes=tuple(tuple(a - b for a, b in zip(row, base, strict=True))
                          for row, base in zip(per_prompt, baseline, strict=True))))
    return SteerResult(model_id=model.model_id, prompts=tuple(prompts), layer=layer, site=site,
                       source=source, scale_kind="absolute" if absolute else "relative",
                       scale=scale, vector=vector.astype(np.float32), tokens=tuple(tokens),
                       max_tokens=max_tokens, temperature=options.temperature, seed=seed,
                       runs=tuple(runs), activation_norm=norm, norm_tokens=norm_tokens,
                       clamp=clamp, routed_only=routed_only)


def _routed_mean(rows: np.ndarray) -> np.ndarray:
    """Per column, the mean over the rows where it exists (MoE expert units are NaN for tokens
    not routed to their expert); NaN where no row has it."""
    rows = rows.astype(np.float64)
    present = ~np.isnan(rows)
    counts = present.sum(axis=0)
    totals = np.where(present, rows, 0.0).sum(axis=0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not norm:
        raise LazarusError(f"{name} is all zeros, so there is nothing to add")
    return vector / norm
