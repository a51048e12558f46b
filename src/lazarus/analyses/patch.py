"""Activation patching between clean and corrupted prompts: the analysis behind `lazarus
introspect patch` (never prints).

For every site, layer and column, one run of every pair with that one activation taken from the
pair's other run (`engine.patching`: a `patch` edit, rows batched and right-padded): at a
position site (resid_pre, resid_post, attn_out, mlp_out), a column is a token position and the
site's whole vector at that token is patched; at a head site (attn_head), a column is a head and
its output is patched at every position. Denoising runs the corrupted prompt with clean
activations, noising the clean prompt with corrupted ones. The source activations are read once
per site, in one pass over the pairs (`capture.capture_ids`), and every patched run of a site
is one job of one batched pass (`score_jobs`).

Pairs of different lengths share the position grid counted from their ends: column c of a grid
of n positions is token (length - n + c) of each pair, n being the shortest pair's length (the
longer pairs' first tokens are not patched). Labels are pair 1's clean tokens.

Scores are normalised per cell over pairs (`stats.bootstrap.normalised`: 1 = the clean run, 0 =
the corrupted), with a seeded expanded percentile bootstrap interval over pairs when there
are several.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lazarus.analyses.pairs import Pairs, prepare
from lazarus.analyses.patch_options import PatchOptions
from lazarus.engine.capture import capture_ids
from lazarus.engine.handle import ModelHandle
from lazarus.engine.interventions import Edit, Job
from lazarus.engine.loading import LoadedModel
from lazarus.engine.pair_terms import DIRECTIONS, HEAD_SITES, METRIC_HELP
from lazarus.engine.patching import as_sources, score_jobs
from lazarus.engine.sites import locate
from lazarus.engine.trace import CaptureRequest
from lazarus.results.patch import PatchResult, SiteGrid
from lazarus.stats.bootstrap import normalised, ratio_interval

Progress = Callable[[int, int], None]  # (patched runs done, patched runs in all)


def analyse_patch(model: ModelHandle, options: PatchOptions,
                  progress: Progress | None = None) -> PatchResult:
    """Patch every site, layer and column of `options` (see the module docstring)."""
    layers = model.layers(options.layers)
    loaded = model.whole_weights()
    pairs = prepare(loaded, options, model.warn)
    denoise = options.direction == "denoise"
    sources, targets = ((pairs.clean_ids, pairs.corrupt_ids) if denoise
                        else (pairs.corrupt_ids, pairs.clean_ids))
    span = min(len(ids) for ids in targets)  # positions every pair has, from its end
    values = {site: capture_ids(loaded, sources, CaptureRequest(layers, site, "all", raw=True))
              for site in options.sites}  # per site, layer: [tokens, width] per pair
    plans = {site: _columns(loaded, site, layers[0], values[site][layers[0]][0].shape[1], span,
                            [len(ids) for ids in targets]) for site in options.sites}
    total = sum(len(layers) * len(plan) * len(targets) for plan in plans.values())
    done = 0
    grids = []
    for site in options.sites:
        plan = plans[site]

        def step(finished: int, _all: int, before: int = done) -> None:
            if progress is not None:
                progress(before + finished, total)

        scores = _patched_scores(loaded, pairs, targets, site, layers, plan, values.pop(site),
                                 step)  # [pairs, layers, columns]
        done += scores.size
        bounds = ratio_interval(scores, pairs.clean_score, pairs.corrupt_score, options.seed)
        grids.append(SiteGrid(
            site=site, axis="head" if site in HEAD_SITES else "position",
            values=normalised(scores, pairs.clean_score, pairs.corrupt_score),
            low=None if bounds is None else bounds[0],
            high=None if bounds is None else bounds[1], scores=scores))
    first = len(pairs.clean_ids[0]) - span
    return PatchResult(
        model_id=model.model_id, direction=options.direction,
        direction_text=DIRECTIONS[options.direction], metric=options.metric,
        metric_text=METRIC_HELP[options.metric], clean=tuple(options.clean),
        corrupt=tuple(options.corrupt), answer=pairs.answer, wrong=pairs.wrong,
        clean_score=pairs.clean_score, corrupt_score=pairs.corrupt_score, layers=layers,
        positions=tuple(range(first, first + span)), tokens=pairs.tokens[0][first:],
        differs=_differs(pairs, span), lengths=tuple(len(ids) for ids in pairs.clean_ids),
        seed=options.seed, grids=tuple(grids))


def _columns(loaded: LoadedModel, site: str, layer: int, width: int, span: int,
             lengths: Sequence[int]) -> list[list[tuple[tuple[int, ...] | None,
                                                          tuple[int, ...] | None]]]:
    """Per column, per pair: (tokens, units) a job patches. A position column patches the
    whole vector at one token of each pair (aligned from its end); a head column one head
    (`group` columns of the raw site) at every token."""
    if site in HEAD_SITES:
        group = locate(loaded.model, loaded.blocks_loaded, layer, site).group
        return [[(None, (head,)) for _ in lengths] for head in range(width // group)]
    return [[((length - span + column,), None) for length in lengths] for column in range(span)]


def _patched_scores(loaded: LoadedModel, pairs: Pairs, targets: Sequence[Sequence[int]],
                    site: str, layers: Sequence[int], plan: list[list[Any]],
                    values: dict[int, list[np.ndarray]], progress: Progress) -> np.ndarray:
    """float64 [pairs, layers, columns]: the metric of each target run with one column of one
    layer patched from its pair's source run. Job ((k * columns) + c) * pairs + p runs pair p
    with column c of layers[k] patched; each layer's edit takes only its own jobs."""
    count, columns = len(targets), len(plan)
    block = columns * count  # jobs per layer
    edits = []
    for k, layer in enumerate(layers):
        table: list[Job | None] = [None] * (len(layers) * block)
        for c, per_pair in enumerate(plan):
            for p, (tokens, units) in enumerate(per_pair):
                table[k * block + c * count + p] = (p, tokens, units)
        edits.append(Edit(layer, site, "patch", sources=as_sources(loaded, values[layer]),
                          jobs=tuple(table)))
    jobs = [p for _ in layers for _ in range(columns) for p in range(count)]
    scores = score_jobs(loaded, targets, jobs, edits, pairs.metric, progress)
    return scores.reshape(len(layers), columns, count).transpose(2, 0, 1)


def _differs(pairs: Pairs, span: int) -> tuple[bool, ...]:
    """Per position column: whether any pair's clean and corrupted tokens differ there."""
    return tuple(any(clean[len(clean) - span + c] != corrupt[len(corrupt) - span + c]
                     for clean, corrupt in zip(pairs.clean_ids, pairs.corrupt_ids, strict=True))
                 for c in range(span))
