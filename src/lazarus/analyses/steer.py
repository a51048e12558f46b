"""Add a direction to a layer's activations while the model generates, and measure what moves:
the analysis behind `lazarus introspect steer` (never prints).

The vector added, at every token position (prompt and generated tokens, KV cache on), is
`coefficient × scale × unit`, where `unit` is the direction at unit L2 length:
- from a probe's `.npz` (`direction`), at its layer and site unless told otherwise;
- or the mean difference of the site's values at the last token of `positive` minus
  `negative` prompts, at the layer;
and `scale` is the mean L2 norm of the site's vectors at that layer over every real token of
the prompts (`relative`, the default), so coefficient 1 adds a vector as long as a typical
activation; or 1 (`absolute=True`), the coefficient then being the added vector's length.
With `neurons` ({id: value}), the vector holds `value` at each id and 0 elsewhere, and is
added as is: coefficient × values (absolute, in activation units); with `clamp=True` those
neurons are instead set to coefficient × value at every token (coefficient 0 then means no
edit at all, the unmodified model, not neurons set to 0).
Coefficient 0 is always run too: it is the unmodified model, and every change is against it.
Measured per prompt and coefficient: the continuation (greedy by default; sampled at
`temperature` with a generator seeded by `seed`, the same draws for every coefficient), and
the log-probability of each named token (a word's tokens, teacher-forced after the prompt,
summed), with its change from coefficient 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lazarus.analyses.selection import check_direction_made
from lazarus.engine import measures
from lazarus.engine.capture import CaptureRequest, capture, tokenize
from lazarus.engine.handle import Handle
from lazarus.engine.interventions import Edit, add
from lazarus.engine.sites import check_neurons_early, neuron_out_of_range
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, load_direction
from lazarus.io.inputs import parse_neurons
from lazarus.results.steer import SteerResult, SteerRun
from lazarus.text import plural, real_number

MAX_TOKENS = 20


def parse_coefficients(text: str, option: str = "--compare") -> list[float]:
    values = []
    for part in text.split(","):
        try:
            value = real_number(part.strip())
        except ValueError:
            example = "808:2.5,1190:-1" if option == "--neurons" else "-2,-1,0,1,2"
            raise LazarusError(f"{option}: {part.strip()!r} is not a number (give numbers, e.g. "
                               f"{option} {example})") from None
        if not np.isfinite(value):
            raise LazarusError(f"{option}: {part.strip()!r} is not a finite number")
        values.append(value)
    return values


def parse_neuron_values(text: str) -> dict[int, float]:
    """`808:2.5,1190:-1` -> {808: 2.5, 1190: -1.0}."""
    pairs = [part.split(":", 1) for part in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise LazarusError("--neurons for steer takes id:value pairs (e.g. --neurons "
                           "808:2.5,1190:-1)")
    ids = parse_neurons(",".join(pair[0] for pair in pairs))
    values = parse_coefficients(",".join(pair[1] for pair in pairs), "--neurons")
    return dict(zip(ids, values, strict=True))


def analyse_steer(
    model: Handle, prompts: Sequence[str], layer: int | None = None, *,
    direction: Direction | str | None = None, positive: Sequence[str] | None = None,
    negative: Sequence[str] | None = None, neurons: Mapping[int, float] | None = None,
    coefficients: Sequence[float] = (1.0,), absolute: bool = False, site: str | None = None,
    tokens: Sequence[str] = (), max_tokens: int = MAX_TOKENS, temperature: float = 0.0,
    seed: int = 0, clamp: bool = False,
) -> SteerResult:
    given = sum(x is not None for x in (direction, positive if positive is not None
                                         else negative, neurons))
    if given != 1:
        raise LazarusError("say what to add: one of --direction, --positive with --negative, "
                           "or --neurons" + (" (not several)" if given else ""))
    if clamp and neurons is None:
        raise LazarusError("--clamp sets neurons to values: it goes with --neurons id:value")
    if absolute and neurons is not None:
        model.warn("--absolute changes nothing with --neurons: their values are always "
                   f"{'set' if clamp else 'added'} as given (coefficient x value, in activation "
                   "units)")
    if (positive is None) != (negative is None):
        raise LazarusError("--positive and --negative go together (give both)")
    if max_tokens < 1:
        raise LazarusError(f"--max-tokens must be at least 1 (got {max_tokens})")
    if temperature < 0 or not np.isfinite(temperature):
        raise LazarusError(f"--temperature must be 0 (greedy) or more (got {temperature})")
    measures.check_seed(seed)
    for value in coefficients:
        if not np.isfinite(value):
            raise LazarusError(f"coefficient {value} is not a finite number")
    if isinstance(direction, str):
        direction = load_direction(direction)
    if layer is None:
        if direction is None or direction.layer is None:
            raise LazarusError("give a layer (-l): "
                               + ("the direction file names none" if direction is not None
                                  else "--positive/--negative and --neurons need one"))
        layer = direction.layer
    layer = model.layers(layer)[0]
    site = site or (direction.site if direction is not None else None) or "resid_post"
    if neurons is not None:  # before the weights load: ids no layer of the site has

        check_neurons_early(model.info.config, model.hidden_size, site, layer, neurons)
    loaded = model.whole_weights()
    tokenize(loaded, prompts)  # every prompt has tokens, before any forward
    token_ids = []
    for word in tokens:
        ids = list(loaded.tokenizer(word, add_special_tokens=False)["input_ids"])
        if not ids:
            raise LazarusError(f"--tokens: {word!r} tokenizes to nothing (give some text)")
        token_ids.append(ids)
    widths: dict[int, int] = {}
    capture(loaded, prompts[:1], CaptureRequest((layer,), site, "last"), widths=widths)
    width = widths[layer]

    if direction is not None:
        name = direction.source or "the direction"
        check_direction_made(direction, name, model.model_id, [layer], site, "last", model.warn)
        if direction.hidden_size != width:
            raise LazarusError(f"{name} has {plural(direction.hidden_size, 'weight')} but the "
                               f"{site} site of layer {layer} has {width} (use a direction made "
                               "for this model and site)")
        vector = _unit(direction.direction.astype(np.float64), name)
        source = f"{name} (positive = {direction.label_positive or 'class A'})"
    elif neurons is not None:
        vector = np.zeros(width)
        for neuron, value in neurons.items():
            if neuron >= width:
                raise neuron_out_of_range(neuron, width, site, layer)
            vector[neuron] = value
        source = ("neurons clamped to coefficient x " if clamp else "neurons ") + ", ".join(
            f"{n}:{v:g}" for n, v in neurons.items())
        absolute = True
    else:
        request = CaptureRequest((layer,), site, "last")
        means = [capture(loaded, list(group), request)[layer].astype(np.float64).mean(axis=0)
                 for group in (positive, negative)]
        vector = _unit(means[0] - means[1], "mean(--positive) - mean(--negative)")
        source = (f"mean of {plural(len(positive), '--positive prompt')} minus mean of "
                  f"{plural(len(negative), '--negative prompt')}, at the last token")
    scale = 1.0
    if not absolute:
        rows = capture(loaded, list(prompts), CaptureRequest((layer,), site, "all"))[layer]
        scale = float(np.mean(np.linalg.norm(np.concatenate(rows).astype(np.float64), axis=1)))

    prompt_ids = tokenize(loaded, prompts)
    measures.check_room(loaded, prompt_ids, max_tokens)
    measures.check_scored_room(loaded, prompt_ids, [
        (f"--tokens {measures.quoted(word)}", ids) for word, ids in zip(tokens, token_ids,
                                                                         strict=True)],
        paired=False)
    ordered = [0.0, *[float(c) for c in coefficients if c != 0]]
    largest = max(abs(c) for c in ordered) * scale * float(np.max(np.abs(vector)))
    if not largest < float(np.finfo(np.float32).max) / 1e18:  # room for the model's own sums
        raise LazarusError(f"a coefficient of {max(abs(c) for c in ordered):g} makes a vector "
                           f"of size {largest:.3g}, beyond what float32 activations hold (use "
                           "a smaller coefficient)")
    runs, baseline = [], None
    for coefficient in ordered:
        if clamp:  # the neurons set to coefficient x value; coefficient 0: no edit
            ids = tuple(neurons)
            edits = [] if coefficient == 0 else [Edit(layer, site, "set", ids, values=np.array(
                [coefficient * neurons[n] for n in ids], dtype=np.float32))]
        else:
            edits = [add(layer, site, (coefficient * scale * vector).astype(np.float32))]
        made = measures.generate(loaded, prompt_ids, max_tokens, edits, temperature, seed)
        scores = [[float(row.sum()) for row in measures.answer_log_probs(
            loaded, prompt_ids, [ids] * len(prompt_ids), edits)] for ids in token_ids]
        per_prompt = tuple(tuple(scores[w][p] for w in range(len(token_ids)))
                           for p in range(len(prompts)))
        baseline = baseline or per_prompt
        runs.append(SteerRun(
            coefficient=coefficient,
            continuations=tuple(loaded.tokenizer.decode(row, skip_special_tokens=True)
                                for row in made),
            log_probs=per_prompt,
            changes=tuple(tuple(a - b for a, b in zip(row, base, strict=True))
                          for row, base in zip(per_prompt, baseline, strict=True))))
    return SteerResult(model_id=model.model_id, prompts=tuple(prompts), layer=layer, site=site,
                       source=source, scale_kind="absolute" if absolute else "relative",
                       scale=scale, vector=vector.astype(np.float32), tokens=tuple(tokens),
                       max_tokens=max_tokens, temperature=temperature, seed=seed,
                       runs=tuple(runs))


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not norm:
        raise LazarusError(f"{name} is all zeros: there is no direction to add")
    return vector / norm
