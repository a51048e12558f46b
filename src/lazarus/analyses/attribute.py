"""Estimate every unit's patching effect at once, then check the estimate against real patches:
the analysis behind `lazarus introspect attribute` (never prints).

Units: at `mlp_post` the neurons (at MoE layers, expert units), at `attn_head` the heads, and
at the residual-width sites (`POSITION_SITES`) the token positions, each position's whole
vector (its estimate is summed over the hidden dimensions). A unit's estimate is the
attribution-patching estimate of its denoising effect (`engine.gradients`: the metric's
gradient at the corrupted run times clean - corrupted, summed over the unit's columns and,
for neurons and heads, over every token position), averaged over the pairs and divided by the
gap (mean clean score - mean corrupted score), so that it predicts the normalised effect of
patching the unit's clean values into the corrupted run: 0 = no change, 1 = the whole gap.
With `method="ig"`, integrated gradients instead.

The self-check patches, for real, the `self_check` units of largest |estimate| and as many
drawn at random (seeded) among the others, one job per unit and pair (`patching.score_jobs`),
and correlates estimate and real effect (`stats.rank`): Spearman's rank correlation over all the
checked units (a stratified sample, which flatters an estimate that only tells the top from the
rest) and within the top units alone, the verdict being the worse of the two
(`results.attribute.combined_verdict`), and Pearson's r.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lazarus.analyses.attribute_options import AttributeOptions
from lazarus.analyses.pairs import Pairs, prepare
from lazarus.engine import gradients, moe
from lazarus.engine.handle import ModelHandle
from lazarus.engine.interventions import Edit
from lazarus.engine.loading import LoadedModel
from lazarus.engine.pair_terms import POSITION_SITES
from lazarus.engine.patching import BATCH, score_jobs
from lazarus.engine.sites import decoder_blocks, locate
from lazarus.errors import LazarusError
from lazarus.results.attribute import TOP_MIN, AttributionResult, SelfCheck, Unit
from lazarus.stats.bootstrap import normalised
from lazarus.stats.rank import pearson, spearman
from lazarus.text import plural

CHECKED = 20  # the self-check's top units, unless told

Progress = Callable[[int, int], None]  # (steps done, steps in all)


def analyse_attribution(model: ModelHandle, options: AttributeOptions,
                        progress: Progress | None = None) -> AttributionResult:
    """Estimate every unit of `options.sites` at `options.layers`, list the top ones, and
    check the estimate against real patches."""
    layers = model.layers(options.layers)
    loaded = model.whole_weights()
    pairs = prepare(loaded, options, model.warn)
    if not pairs.same_length and set(options.sites) & set(POSITION_SITES):
        raise LazarusError("the pairs are of different token lengths, so a token position is "
                           "not the same unit in each (give pairs of one length for the "
                           f"{', '.join(s for s in options.sites if s in POSITION_SITES)} site)")
    keys = [(layer, site) for site in options.sites for layer in layers]
    columns = {(layer, site): loaded.info.hidden_size if site in POSITION_SITES
               else locate(loaded.model, loaded.blocks_loaded, layer, site).group
               for layer, site in keys}
    checked_rows = 2 * (CHECKED if options.self_check is None else options.self_check) * len(
        pairs.clean_ids)
    report = None if progress is None else _Staged(progress, checked_rows)
    by_position = [key for key in keys if key[1] in POSITION_SITES]
    if options.method == "atp":
        sums = gradients.attribution(loaded, pairs.clean_ids, pairs.corrupt_ids, keys, columns,
                                     pairs.metric, by_position, report)
    else:
        sums = gradients.integrated(loaded, pairs.clean_ids, pairs.corrupt_ids, keys, columns,
                                    pairs.metric, options.steps, by_position, report)
    # mean over the pairs, over the gap: the normalised effect each unit's patch would have
    scale = len(pairs.clean_ids) * pairs.gap
    estimates = {site: tuple(sums[(layer, site)] / scale for layer in layers)
                 for site in options.sites}
    units = [Unit(layer, site, unit, float(value)) for site in options.sites
             for layer, row in zip(layers, estimates[site], strict=True)
             for unit, value in enumerate(row)]
    count = min(CHECKED, len(units) // 2) if options.self_check is None else options.self_check
    if count >= len(units):
        raise LazarusError(f"--check {count} asks for the top {count} "
                           f"units and as many random ones, but there are only "
                           f"{plural(len(units), 'unit')} at these sites and layers (give "
                           f"--check {len(units) // 2} or less, or 0 for no self-check)")
    order = np.argsort([-abs(u.estimate) for u in units], kind="stable")
    top = tuple(units[i] for i in order[:options.top])
    check = None
    if count:
        check = _self_check(loaded, pairs, units, order, count, options.seed,
                            None if report is None else report.checking)
    return AttributionResult(
        model_id=model.model_id, clean=tuple(options.clean), corrupt=tuple(options.corrupt),
        answer=pairs.answer, wrong=pairs.wrong, tokens=pairs.tokens[0], metric=options.metric,
        method=options.method, steps=options.steps if options.method == "ig" else None,
        layers=layers, sites=tuple(options.sites),
        clean_score=tuple(float(v) for v in pairs.clean_score),
        corrupt_score=tuple(float(v) for v in pairs.corrupt_score),
        estimates=estimates, top=top, check=check,
        units_per_expert=_units_per_expert(loaded, layers) if "mlp_post" in options.sites
        else {})


def _units_per_expert(loaded: LoadedModel, layers: Sequence[int]) -> dict[int, int]:
    """Per MoE layer of `layers`: units per expert (mlp_post's units are expert units there)."""
    blocks = decoder_blocks(loaded.model, loaded.blocks_loaded)
    found = {layer: moe.find_moe(blocks[layer]) for layer in layers}
    return {layer: parts.units for layer, parts in found.items() if parts is not None}


def _self_check(loaded: LoadedModel, pairs: Pairs, units: list[Unit], order: np.ndarray,
                count: int, seed: int, progress: Progress | None) -> SelfCheck:
    """Patch the top units and as many random others for real (denoising: each unit's clean
    values, at every position or at its own, into the corrupted run of every pair)."""
    top = [int(i) for i in order[:count]]
    rest = np.asarray(order[count:])
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(rest), size=min(count, len(rest)), replace=False)
    chosen = [units[i] for i in top + [int(rest[j]) for j in np.sort(drawn)]]
    real = real_effects(loaded, pairs, chosen, progress)
    estimate = np.array([u.estimate for u in chosen])
    k = len(top)
    within = spearman(estimate[:k], real[:k]) if k >= TOP_MIN else float("nan")
    return SelfCheck(units=tuple(chosen), real=tuple(float(v) for v in real),
                     top_count=k, total=len(units), spearman=spearman(estimate, real),
                     pearson=pearson(estimate, real), seed=seed, spearman_top=within)


def real_effects(loaded: LoadedModel, pairs: Pairs, chosen: Sequence[Unit],
                 progress: Progress | None = None) -> np.ndarray:
    """float64 [units]: the normalised effect of patching each unit's clean values into the
    corrupted runs, averaged over the pairs. Pairs go `BATCH` at a time (their clean values
    kept only while their patched runs go), so memory does not grow with the pairs."""
    count = len(pairs.clean_ids)
    keys = list(dict.fromkeys((u.layer, u.site) for u in chosen))
    scores = np.empty((count, len(chosen)))
    for start in range(0, count, BATCH):
        group = range(start, min(start + BATCH, count))
        clean = gradients.site_values(loaded, [pairs.clean_ids[p] for p in group], keys)
        edits = []
        for key in keys:
            sources = [None] * count  # a job's source is its pair's: only this group's are made
            for index, pair in enumerate(group):
                sources[pair] = clean[key][index]
            jobs = tuple(_job(unit, pair) if (unit.layer, unit.site) == key else None
                         for unit in chosen for pair in group)
            edits.append(Edit(key[0], key[1], "patch", sources=tuple(sources), jobs=jobs))

        def step(done: int, _total: int, before: int = start * len(chosen)) -> None:
            if progress is not None:
                progress(before + done, count * len(chosen))

        found = score_jobs(loaded, pairs.corrupt_ids, list(group) * len(chosen), edits,
                           pairs.metric, step)
        scores[group.start:group.stop] = found.reshape(len(chosen), len(group)).T
    return normalised(scores, pairs.clean_score, pairs.corrupt_score)


def _job(unit: Unit, pair: int) -> tuple[int, tuple[int, ...] | None, tuple[int, ...] | None]:
    if unit.site in POSITION_SITES:
        return pair, (unit.unit,), None  # that position's whole vector
    return pair, None, (unit.unit,)  # that unit at every position


class _Staged:
    """One progress count over the estimate's steps and then the self-check's rows."""

    def __init__(self, progress: Progress, later: int) -> None:
        self.progress, self.later, self.first = progress, later, 0

    def __call__(self, done: int, total: int) -> None:
        self.first = total
        self.progress(done, total + self.later)

    def checking(self, done: int, total: int) -> None:
        self.progress(self.first + done, self.first + total)
