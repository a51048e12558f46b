"""Gradient estimates of patching effects: attribution patching and integrated gradients, read
through the one hook owner (`trace.Trace`'s watchers).

Attribution patching (Nanda 2023; AtP, Kramár et al. 2024) estimates, for every unit of a site
at once, what patching its clean values into the corrupted run would change the metric by: the
metric's gradient at the corrupted run times (clean - corrupted). `attribution` runs each batch
of pairs twice: the clean prompts without gradients, keeping the watched sites' values, then
the corrupted prompts with gradients (the weights' `requires_grad` off for the pass, so only
activations are differentiated), and one backward of the summed metric. Each watched tensor's
gradient hook multiplies its gradient by (clean - corrupted) and keeps only the products summed
over each unit's columns, as float32 [rows, tokens, units]: no gradient of full width outlives
its hook. Units span `columns` columns: a site's own group (1 for neurons, head_dim for a
head), or its whole width for a site whose units are token positions. Each batch's products
are added to running sums over the pairs (per unit, or per position), so memory does not grow
with the number of pairs.

`integrated` sharpens the estimate where the metric is not linear in the site (integrated
gradients along the straight path, midpoint rule): the site's values at one layer are set to
corrupted + a (clean - corrupted) for a = (k + 0.5) / steps (a patch edit, one row per pair
and step, at most `IG_ROWS` rows per forward),
and the mean gradient over the steps times (clean - corrupted) is kept. Its cost: per layer and
site, a clean and a corrupted forward without gradients and `steps` rows of forward + backward,
for every pair; the estimates of a site's units sum to the real effect of patching the whole
site as the steps grow (completeness).

Rows are right-padded; products at padding positions are 0. MoE expert units (NaN where a
token is not routed) contribute 0 where either run leaves them unrouted, as a real patch does
(`moe.edited_output`). A batch that runs out of memory is run again in halves
(`budget.in_halves`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from lazarus.engine.budget import in_halves
from lazarus.engine.capture import pad_batch, pad_id_of
from lazarus.engine.interventions import Edit
from lazarus.engine.loading import LoadedModel
from lazarus.engine.measures import check_whole
from lazarus.engine.patching import BATCH, Metric, last_logits, prepare
from lazarus.engine.trace import Trace

Key = tuple[int, str]  # (layer, site)
Products = dict[Key, np.ndarray]  # float32 [rows, tokens, units] per (layer, site), one batch
Sums = dict[Key, np.ndarray]  # float64, summed over the pairs: [units], or [tokens] by position
Progress = Callable[[int, int], None]  # (steps done, steps in all)
IG_ROWS = BATCH  # rows (pair x step) per forward + backward of integrated gradients


def attribution(loaded: LoadedModel, clean_ids: Sequence[Sequence[int]],
                corrupt_ids: Sequence[Sequence[int]], watch: Sequence[Key],
                columns: dict[Key, int], metric: Metric, by_position: Collection[Key] = (),
                progress: Progress | None = None) -> Sums:
    """The attribution-patching products g . (clean - corrupted) of every watched (layer,
    site), units of `columns[key]` columns each, summed over the pairs (a running sum: memory
    does not grow with the pairs): per key float64 [units] summed over the positions, or, for
    the keys `by_position` (one unit as wide as the site), [tokens] (the longest prompt's;
    padding adds 0)."""
    check_whole(loaded)
    keys = list(dict.fromkeys(watch))
    sums = _Sums(by_position, max(len(row) for row in clean_ids))
    done = 0

    def run(batch: list[int]) -> None:
        nonlocal done
        clean = site_values(loaded, [clean_ids[p] for p in batch], keys)
        ids, mask = pad_batch([corrupt_ids[p] for p in batch], pad_id_of(loaded.tokenizer))
        kept = _backward(loaded, ids, mask, batch, [], keys, clean, metric, columns)
        sums.add(kept)
        done += len(batch)
        if progress is not None:
            progress(done, len(clean_ids))

    in_halves(_by_length(clean_ids), BATCH, run, "pair")
    return sums.out


def integrated(loaded: LoadedModel, clean_ids: Sequence[Sequence[int]],
               corrupt_ids: Sequence[Sequence[int]], watch: Sequence[Key],
               columns: dict[Key, int], metric: Metric, steps: int,
               by_position: Collection[Key] = (), progress: Progress | None = None) -> Sums:
    """Integrated gradients of every watched (layer, site), one site at a time: the mean
    gradient over `steps` points of the straight path from the corrupted to the clean values
    times (clean - corrupted), summed over the pairs as `attribution`'s products are. A
    forward takes at most `IG_ROWS` rows (pair x step)."""
    check_whole(loaded)
    keys = list(dict.fromkeys(watch))
    sums = _Sums(by_position, max(len(row) for row in clean_ids), 1 / steps)
    alphas = [(k + 0.5) / steps for k in range(steps)]
    groups = _groups(_by_length(clean_ids), max(1, IG_ROWS // steps))
    total, done = len(keys) * len(clean_ids), 0
    pad = pad_id_of(loaded.tokenizer)
    for key in keys:
        for group in groups:
            clean = site_values(loaded, [clean_ids[p] for p in group], [key])[key]
            corrupt = site_values(loaded, [corrupt_ids[p] for p in group], [key])[key]
            differences = [_difference(c, k) for c, k in zip(clean, corrupt, strict=True)]
            rows = [(index, alpha) for index in range(len(group)) for alpha in alphas]

            def run(batch: list[tuple[int, float]], key: Key = key, group: list[int] = group,
                    corrupt: list[Any] = corrupt, differences: list[Any] = differences) -> None:
                dtype = corrupt[0].dtype
                sources = tuple((corrupt[i].float() + alpha * differences[i]).to(dtype)
                                for i, alpha in batch)
                edit = Edit(key[0], key[1], "patch", sources=sources,
                            jobs=tuple((row, None, None) for row in range(len(batch))))
                pairs = [group[i] for i, _ in batch]
                ids, mask = pad_batch([corrupt_ids[p] for p in pairs], pad)
                sums.add(_backward(loaded, ids, mask, pairs, [edit], [key],
                                   {key: [differences[i] for i, _ in batch]}, metric, columns,
                                   given_difference=True))

            in_halves(rows, IG_ROWS, run, "step of one pair")
            done += len(group)
            if progress is not None:
                progress(done, total)
    return sums.out


class _Sums:
    """The running sums over pairs of `attribution` and `integrated`, each batch's [rows,
    tokens, units] products reduced as it comes (`scale`: a factor applied to each)."""

    def __init__(self, by_position: Collection[Key], longest: int, scale: float = 1.0) -> None:
        self.out: Sums = {}
        self.by_position, self.longest, self.scale = set(by_position), longest, scale

    def add(self, kept: Products) -> None:
        for key, products in kept.items():
            if key in self.by_position:  # [rows, tokens, 1] -> [tokens]
                summed = np.zeros(self.longest)
                summed[:products.shape[1]] = products[..., 0].sum(axis=0, dtype=np.float64)
            else:  # [rows, tokens, units] -> [units]
                summed = products.sum(axis=(0, 1), dtype=np.float64)
            summed *= self.scale
            self.out[key] = summed if key not in self.out else self.out[key] + summed


def site_values(loaded: LoadedModel, token_ids: Sequence[Sequence[int]],
                keys: Sequence[Key]) -> dict[Key, list[Any]]:
    """Each (layer, site)'s raw values for each prompt, without gradients (padded batches, so
    each row computes what it would alone): per key, per prompt a [tokens, width] tensor on
    the model's device, in its dtype (MoE units: float32, NaN where not routed)."""
    import torch

    kept: dict[Key, list[Any]] = {key: [None] * len(token_ids) for key in keys}
    pad = pad_id_of(loaded.tokenizer)

    def run(batch: list[int]) -> None:
        ids, mask = pad_batch([token_ids[i] for i in batch], pad)

        def keep(layer: int, site: str, value: Any) -> None:
            for row, index in enumerate(batch):
                kept[(layer, site)][index] = value[row, :len(token_ids[index])].detach().clone()

        with torch.no_grad(), Trace(loaded, None, watch=keys, on_watch=keep) as trace:
            prepare(trace, mask, range(len(batch)))
            last_logits(loaded, ids, mask)

    in_halves(_by_length(token_ids), BATCH, run, "prompt")
    return kept


def _backward(loaded: LoadedModel, ids: Any, mask: Any, pairs: list[int], edits: list[Edit],
              keys: list[Key], reference: dict[Key, list[Any]], metric: Metric,
              columns: dict[Key, int], given_difference: bool = False) -> Products:
    """One forward with gradients of `ids` (rows: `pairs`) with `edits`, and one backward of
    the summed metric: per watched key, the gradient times (reference - value) (or times the
    reference itself, `given_difference`), zero at padding positions, reduced to units in the
    gradient's hook (`_units`): float32 [rows, tokens, units]."""
    import torch

    lengths = mask.sum(-1).tolist()
    kept: Products = {}

    def watch(layer: int, site: str, value: Any) -> None:
        key = (layer, site)
        rows = reference[key]
        difference = torch.zeros(value.shape, dtype=torch.float32, device=value.device)
        for row, n in enumerate(lengths):
            given = rows[row].float()
            difference[row, :n] = given if given_difference else _difference(
                given, value[row, :n].detach())
        if not value.requires_grad:  # the first watched site: the graph starts here
            value.requires_grad_(True)

        def reduce(grad: Any) -> None:
            kept[key] = _units(grad.float() * difference, columns[key])

        value.register_hook(reduce)

    with _activations_only(loaded.model), torch.enable_grad(), Trace(
            loaded, None, edits=edits, watch=keys, on_watch=watch) as trace:
        prepare(trace, mask, range(len(pairs)))
        logits = last_logits(loaded, ids, mask)
        metric.score(logits, pairs).sum().backward()
    return kept


def _difference(clean: Any, corrupt: Any) -> Any:
    """float32 clean - corrupted, 0 where either is NaN (an MoE unit not routed)."""
    import torch

    difference = clean.float() - corrupt.float()
    return torch.where(torch.isnan(difference), 0.0, difference)


def _units(products: Any, columns: int) -> np.ndarray:
    """[rows, tokens, width] -> float32 numpy [rows, tokens, units]: summed over each unit's
    `columns` adjacent columns."""
    rows, tokens, width = products.shape
    return products.reshape(rows, tokens, width // columns, columns).sum(-1).cpu().numpy()


def _by_length(token_ids: Sequence[Sequence[int]]) -> list[int]:
    """Prompt indices, shortest first (batches of similar length pad little)."""
    return sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))


def _groups(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


@contextmanager
def _activations_only(model: Any) -> Any:
    """The weights' `requires_grad` off (only activations are differentiated), restored after."""
    parameters = list(model.parameters())
    flags = [p.requires_grad for p in parameters]
    try:
        for parameter in parameters:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in zip(parameters, flags, strict=True):
            parameter.requires_grad_(flag)
