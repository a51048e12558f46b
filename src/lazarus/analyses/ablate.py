"""Knock neurons or whole components out and measure what the model loses, against chance:
the analysis behind `lazarus introspect ablate` (never prints).

What: neurons of a site at one or several layers (the same ids at each), or a whole component
(`mlp` = the mlp_out site, `attention` = attn_out: everything the sub-block adds to the residual
stream). All layers at once, or with `sweep` one layer at a time (a condition per layer).
How (`method`), at every token position, generated tokens included:
- zero: the values are set to 0;
- mean: to their mean over every real token of the reference prompts (default: the prompts);
- resample: each prompt takes the values of another reference prompt, drawn at random (seeded;
  never its own text when the reference is the prompts), token t getting that prompt's token
  min(t, its last).
The reference is a set of distinct prompts (`io.distinct`): copies in it are merged, with a note,
so that a repeated prompt does not weigh twice in the mean, and a prompt's resample draw is never
a copy of itself (which would change nothing). The prompts measured stay as given, each measured:
the test here is over random draws of neurons, not over prompts.
Measured, per prompt, baseline and ablated (`measures`): for `prompt:answer` pairs the answer's
log-probability under teacher forcing and whether greedy decoding still produces it; for bare
prompts KL(baseline || ablated) of the next-token distribution and the greedy continuation.
The effect of a condition is one number (the mean answer log-probability drop, or the mean
KL), compared, for neurons, with `controls` draws of as many random neurons: `stats.controls`
says how, and when an effect is zero to float rounding; `results.ablation` holds what was found.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lazarus.analyses.options import COMPONENTS, AblateOptions
from lazarus.analyses.selection import (
    check_direction,
    check_direction_width,
    check_neurons,
    top_of,
)
from lazarus.engine import measures
from lazarus.engine.capture import capture, tokenize
from lazarus.engine.handle import ModelHandle
from lazarus.engine.interventions import Edit, unit_columns
from lazarus.engine.loading import LoadedModel
from lazarus.engine.sites import check_neurons_early, locate, unit_noun
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError
from lazarus.io.distinct import merge
from lazarus.io.inputs import check_label_count
from lazarus.results.ablation import AblationResult, Condition, Outcome
from lazarus.stats import controls
from lazarus.stats.controls import changes_of, control_summary, effect_of, zero_to_rounding
from lazarus.text import agree, plural

Progress = Callable[[int, int], None]  # (forwards done, forwards in all)


def analyse_ablation(model: ModelHandle, prompts: Sequence[str], options: AblateOptions,
                     progress: Progress | None = None) -> AblationResult:
    """Ablate what `options` says at its layers, for `prompts`, against random controls."""
    layers = model.layers(options.layers)
    answers, labels, reference = options.answers, options.labels, options.reference
    neurons, direction, component = options.neurons, options.direction, options.component
    method, controls, seed, max_tokens = (options.method, options.controls, options.seed,
                                          options.max_tokens)
    if reference is not None and method == "zero":
        model.warn("--reference is ignored with --method zero (it gives the values of mean and "
                   "resample)")
    if answers is not None and len(answers) != len(prompts):
        raise LazarusError(f"got {plural(len(answers), 'answer')} for "
                           f"{plural(len(prompts), 'prompt')} (give one answer per prompt)")
    if labels is not None:
        check_label_count(len(labels), len(prompts))
    site = COMPONENTS[component] if component is not None else (
        options.site or (direction.site if direction is not None else None) or "resid_post")
    if neurons is not None:  # before the weights load: ids no layer of the site has
        check_neurons_early(model.info.config, model.hidden_size, site, layers[0], neurons)
    if direction is not None:
        check_direction(model, direction, layers, site, "last")
        neurons = direction.top_neurons(options.top_k, model.warn)
        selection = top_of(direction, len(neurons))
    else:
        selection = "--neurons" if neurons is not None else f"the whole {component} output"
    own_reference = reference is None
    if method != "zero":  # each reference prompt once (io.distinct)
        pool = merge(prompts if reference is None else reference)
        if pool.merged:
            model.notify(pool.note("reference prompts"))
        reference = list(pool.prompts)
    if method == "resample" and own_reference and len(reference) < 2:
        raise LazarusError("--method resample takes each prompt's values from another prompt: "
                           "give at least two distinct prompts, or --reference prompts")

    loaded = model.whole_weights()
    prompt_ids = tokenize(loaded, prompts)
    answer_ids = None if answers is None else [
        measures.answer_ids(loaded, p, a)[1] for p, a in zip(prompts, answers, strict=True)]
    if answers is not None and answer_ids is not None:  # each distinct answer once
        for answer, ids in dict(zip(answers, answer_ids, strict=True)).items():
            measures.warn_unknown(model.warn, loaded.tokenizer, "answer", answer, ids,
                                  "its log-probability")
    if answer_ids is None:
        measures.check_room(loaded, prompt_ids, max_tokens)
    else:  # the answers are scored after their prompts; --max-tokens plays no part
        measures.check_scored_room(loaded, prompt_ids, [
            (f"its answer {measures.quoted(a)}", ids) for a, ids in zip(answers, answer_ids,
                                                                        strict=True)],
            paired=True)
    widths: dict[int, int] = {}
    capture(loaded, prompts[:1], CaptureRequest(tuple(layers), site, "last"), widths=widths)
    for layer in layers:
        if direction is not None:
            check_direction_width(direction, widths[layer], site)
        if neurons is not None:
            check_neurons(neurons, widths[layer], site, layer)
    if neurons is not None:
        spare = min(widths[layer] for layer in layers) - len(neurons)
        if controls and spare < len(neurons):
            raise LazarusError(f"{plural(len(neurons), 'neuron')} "
                               f"{agree(len(neurons), 'leaves', 'leave')} {spare} "
                               f"{agree(spare, 'other', 'others')} to draw random controls of "
                               "the same size from (ablate fewer neurons, or give --controls "
                               "0)")

    values: dict[int, Any] = {}  # per layer: the reference's [tokens, width] per prompt
    if method != "zero":  # raw: per column of a unit that spans several (a head's head_dim)
        request = CaptureRequest(tuple(layers), site, "all", raw=True)
        values = capture(loaded, reference, request)
    per_unit = {layer: locate(loaded.model, loaded.blocks_loaded, layer, site).group
                for layer in layers}
    # MoE expert units have no mean where no reference token is routed to their expert: never
    # chosen (refused), never drawn as a control (which would then change nothing)
    undefined = {layer: _no_reference_value(values[layer], per_unit[layer])
                 if method == "mean" else np.zeros(0, np.int64) for layer in layers}
    for layer in layers:
        missing = sorted(set(neurons or ()) & set(undefined[layer].tolist()))
        if missing:
            raise LazarusError(
                f"{unit_noun(site)}{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(str, missing))} at layer {layer} "
                f"{agree(len(missing), 'has', 'have')} no value at any --reference token (MoE "
                "units of an expert none of them is routed to), so there is no mean to set "
                "(give --reference prompts routed to that expert, or --method zero)")
    rng = np.random.default_rng(seed)
    resampled = None
    if method == "resample":
        resampled = _draw_references(rng, prompts, reference, own_reference)

    def edits(layer_columns: Sequence[tuple[int, tuple[int, ...] | None]]) -> list[Edit]:
        return [_edit(layer, site, columns, method, values.get(layer), resampled,
                      per_unit[layer])
                for layer, columns in layer_columns]

    pairs = answer_ids is not None
    eps = float(np.finfo(np.float64 if loaded.dtype == "float64" else np.float32).eps)
    groups = [(layer,) for layer in layers] if options.sweep else [tuple(layers)]
    control_sets = {group: _control_sets(rng, [np.setdiff1d(np.arange(widths[layer]),
                                                            undefined[layer])
                                               for layer in group], neurons, controls)
                    for group in groups} if neurons else {}
    total = 2 + 2 * len(groups) + sum(len(sets) for sets, _ in control_sets.values())
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def run(edit_list: list[Edit], generate: bool) -> tuple[list[Any], list[list[int]] | None]:
        if pairs:
            scores = measures.answer_log_probs(loaded, prompt_ids, answer_ids, edit_list)
        else:
            scores = measures.next_token(loaded, prompt_ids, edit_list)
        step()
        made = None
        if generate:  # all prompts in one call: per-prompt edits (resample) index them
            wanted = [len(a) for a in answer_ids] if pairs else [max_tokens] * len(prompt_ids)
            made = [row[:n] for row, n in zip(
                measures.generate(loaded, prompt_ids, max(wanted), edit_list), wanted,
                strict=True)]
            step()
        return scores, made

    base_scores, base_made = run([], True)
    baseline = _outcomes(loaded, base_scores, base_made, answer_ids, None)
    conditions = []
    for group in groups:
        columns = None if neurons is None else tuple(neurons)
        scores, made = run(edits([(layer, columns) for layer in group]), True)
        effect = effect_of(base_scores, scores, pairs)
        rounding = zero_to_rounding(base_scores, scores, pairs, eps)
        control = None
        if neurons is not None and controls:
            draws, effects, per_prompt = [], [], []
            sets, every_set = control_sets[group]
            for draw in sets:
                control_scores, _ = run(edits(list(zip(group, draw, strict=True))), False)
                draws.append(draw)
                per_prompt.append(changes_of(base_scores, control_scores, pairs))
                effects.append(float(np.mean(per_prompt[-1])))
            control = control_summary(effect, effects, seed, draws, compare=not rounding,
                                      prompt_effects=per_prompt, every_set=every_set)
        conditions.append(Condition(layers=group, effect=effect, control=control,
                                    zero_to_rounding=rounding,
                                    outcomes=_outcomes(loaded, scores, made, answer_ids,
                                                       base_scores)))
    return AblationResult(
        model_id=model.model_id, prompts=tuple(prompts),
        answers=None if answers is None else tuple(answers),
        labels=None if labels is None else tuple(labels), site=site, component=component,
        neurons=None if neurons is None else tuple(neurons), selection=selection, method=method,
        reference=tuple(reference) if method != "zero" else (),
        resampled_from=None if resampled is None else tuple(resampled), sweep=options.sweep,
        seed=seed,
        effect_name=("mean drop in the answer's log-probability (nats)" if pairs
                     else "mean KL(baseline || ablated) of the next token (nats)"),
        baseline=baseline, conditions=tuple(conditions))


def _control_sets(rng: np.random.Generator, units: Sequence[np.ndarray], neurons: Sequence[int],
                  controls: int) -> tuple[list[tuple[tuple[int, ...], ...]], bool]:
    """The control draws, per draw per layer: `controls` random sets of as many of `units`
    (per layer, those that can be ablated) as were chosen, among those not chosen; or, where
    no more distinct sets exist, every one once (and True)."""
    pools = [np.setdiff1d(layer_units, neurons) for layer_units in units]
    if controls and min(len(pool) for pool in pools) < len(neurons):
        raise LazarusError(f"too few other units with a --reference value to draw random "
                           f"controls of {len(neurons)} from (ablate fewer, or give --controls "
                           "0)")
    if math.prod(math.comb(len(pool), len(neurons)) for pool in pools) <= controls:
        every = itertools.product(*(itertools.combinations(pool.tolist(), len(neurons))
                                    for pool in pools))
        return [tuple(tuple(int(n) for n in units) for units in draw) for draw in every], True
    return [tuple(tuple(int(n) for n in rng.choice(pool, size=len(neurons), replace=False))
                  for pool in pools) for _ in range(controls)], False


def _no_reference_value(reference: list[np.ndarray], group: int) -> np.ndarray:
    """The units (of `group` raw columns each) with no value at any reference token: int64."""
    present = ~np.isnan(np.concatenate(reference)).all(axis=0)  # per raw column
    return np.flatnonzero(~present.reshape(-1, group).all(axis=1))


def _draw_references(rng: np.random.Generator, prompts: Sequence[str],
                     reference: Sequence[str], own: bool) -> list[int]:
    """For each prompt, the (distinct) reference prompt it takes its values from: never its
    own text if `own` (the reference is the prompts), whichever copy of it is measured."""
    if not own:
        return [int(rng.integers(len(reference))) for _ in prompts]
    where = {prompt: index for index, prompt in enumerate(reference)}
    drawn = []
    for prompt in prompts:
        other = int(rng.integers(len(reference) - 1))
        drawn.append(other + (other >= where[prompt]))
    return drawn


def _edit(layer: int, site: str, columns: tuple[int, ...] | None, method: str,
          reference: list[np.ndarray] | None, resampled: list[int] | None,
          group: int) -> Edit:
    pick = unit_columns(columns, group)  # the raw columns of the units (`group` each)
    if method == "zero":
        return Edit(layer, site, "set", columns)
    assert reference is not None
    if method == "mean":
        # MoE units exist only where routed (NaN elsewhere): the mean of the routed tokens;
        # a unit never routed in the reference stays as it is (NaN = no change).
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.concatenate(reference).astype(np.float64), axis=0)  # [width]
        return Edit(layer, site, "set", columns, values=mean[pick].astype(np.float32))
    assert resampled is not None
    return Edit(layer, site, "set", columns,
                per_prompt=tuple(reference[j][:, pick] for j in resampled))


def _outcomes(loaded: LoadedModel, scores: list[np.ndarray], made: list[list[int]] | None,
              answers: list[list[int]] | None,
              base: list[np.ndarray] | None) -> tuple[Outcome, ...]:
    assert made is not None
    outcomes = []
    for index, tokens in enumerate(made):
        text = loaded.tokenizer.decode(tokens, skip_special_tokens=True)
        if answers is not None:
            outcomes.append(Outcome(
                continuation=text, answer_log_prob=float(scores[index].sum()),
                answer_token_log_probs=tuple(float(v) for v in scores[index]),
                reproduces=tokens == list(answers[index])))
        else:
            kl = None if base is None else controls.kl_divergence(base[index], scores[index])
            outcomes.append(Outcome(continuation=text, kl=kl))
    return tuple(outcomes)
