"""Gradient estimates of patching effects: attribution patching and integrated gradients, read
through the one hook owner (`trace.Trace`'s watchers).

Attribution patching (Nanda 2023; AtP, Kramár et al. 2024) estimates, for every unit of a site
at once, what patching its clean values into the corrupted run would change the metric by: the
metric's gradient at the corrupted run times (clean - corrupted). `attribution` runs each batch
of pairs twice: the clean prompts without gradients, keeping the watched sites' values, then
the corrupted prompts with gradients (the weights' `requires_grad` off for the pass, so only
activations are differentiated), and one backward of the summed metric. Each watched tensor's
gradient hook multiplies its gradient by (clean - corrupted) and keeps only the products summed
over each unit's columns, as float32 [pairs, tokens, units]: no gradient of full width outlives
its hook. Units span `columns` columns: a site's own group (1 for neurons, head_dim for a
head), or its whole width for a site whose units are token positions.

`integrated` sharpens the estimate where the metric is not linear in the site (integrated
gradients along the straight path, midpoint rule): the site's values at one layer are set to
corrupted + a (clean - corrupted) for a = (k + 0.5) / steps (a patch edit, one row per step),
and the mean gradient over the steps times (clean - corrupted) is kept. Its cost: per layer and
site, a clean and a corrupted forward without gradients and `steps` rows of forward + backward,
for every pair; the estimates of a site's units sum to the real effect of patching the whole
site as the steps grow (completeness).

Rows are right-padded; products at padding positions are 0. MoE expert units (NaN where a
token is not routed) contribute 0 where either run leaves them unrouted, as a real patch does
(`moe.edited_output`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from lazarus.engine.capture import pad_batch, pad_id_of
from lazarus.engine.interventions import Edit
from lazarus.engine.loading import LoadedModel
from lazarus.engine.measures import check_whole
from lazarus.engine.patching import BATCH, Metric, last_logits, prepare
from lazarus.engine.trace import Trace

Key = tuple[int, str]  # (layer, site)
Products = dict[Key, np.ndarray]  # float32 [pairs, tokens, units] per (layer, site)
Progress = Callable[[int, int], None]  # (steps done, steps in all)


def attribution(loaded: LoadedModel, clean_ids: Sequence[Sequence[int]],
                corrupt_ids: Sequence[Sequence[int]], watch: Sequence[Key],
                columns: dict[Key, int], metric: Metric,
                progress: Progress | None = None) -> Products:
    """The attribution-patching products g . (clean - corrupted) of every watched (layer,
    site): float32 [pairs, tokens, units], units of `columns[key]` columns each."""
    check_whole(loaded)
    keys = list(dict.fromkeys(watch))
    out: Products = {}
    shape = (len(clean_ids), max(len(row) for row in clean_ids))
    batches = _batches(clean_ids)
    for done, batch in enumerate(batches, 1):
        clean = site_values(loaded, [clean_ids[p] for p in batch], keys)
        ids, mask = pad_batch([corrupt_ids[p] for p in batch], pad_id_of(loaded.tokenizer))
        kept = _backward(loaded, ids, mask, list(batch), [], keys, clean, metric, columns)
        for key, products in kept.items():
            _put(out, key, batch, products, shape)
        if progress is not None:
            progress(done, len(batches))
    return out


def integrated(loaded: LoadedModel, clean_ids: Sequence[Sequence[int]],
               corrupt_ids: Sequence[Sequence[int]], watch: Sequence[Key],
               columns: dict[Key, int], metric: Metric, steps: int,
               progress: Progress | None = None) -> Products:
    """Integrated gradients of every watched (layer, site), one site at a time: float32
    [pairs, tokens, units], the mean gradient over `steps` points of the straight path from
    the corrupted to the clean values times (clean - corrupted)."""
    check_whole(loaded)
    keys = list(dict.fromkeys(watch))
    out: Products = {}
    shape = (len(clean_ids), max(len(row) for row in clean_ids))
    alphas = [(k + 0.5) / steps for k in range(steps)]
    per_batch = max(1, BATCH // steps)  # pairs per forward: steps rows each
    batches = _batches(clean_ids, per_batch)
    total, done = len(keys) * len(batches), 0
    for key in keys:
        for batch in batches:
            clean = site_values(loaded, [clean_ids[p] for p in batch], [key])[key]
            corrupt = site_values(loaded, [corrupt_ids[p] for p in batch], [key])[key]
            sources, jobs, rows, differences = [], [], [], []
            for index, pair in enumerate(batch):
                difference = _difference(clean[index], corrupt[index])  # [tokens, width]
                for alpha in alphas:
                    jobs.append((len(sources), None, None))
                    sources.append(corrupt[index].float() + alpha * difference)
                    rows.append(pair)
                    differences.append(difference)
            ids, mask = pad_batch([corrupt_ids[p] for p in rows], pad_id_of(loaded.tokenizer))
            dtype = clean[0].dtype
            edit = Edit(key[0], key[1], "patch", sources=tuple(s.to(dtype) for s in sources),
                        jobs=tuple(jobs))
            kept = _backward(loaded, ids, mask, rows, [edit], [key], {key: differences},
                             metric, columns, given_difference=True)[key]
            products = kept.reshape(len(batch), steps, *kept.shape[1:]).mean(axis=1)
            _put(out, key, batch, products, shape)
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def site_values(loaded: LoadedModel, token_ids: Sequence[Sequence[int]],
                keys: Sequence[Key]) -> dict[Key, list[Any]]:
    """Each (layer, site)'s raw values for each prompt, without gradients (padded batches, so
    each row computes what it would alone): per key, per prompt a [tokens, width] tensor on
    the model's device, in its dtype (MoE units: float32, NaN where not routed)."""
    import torch

    kept: dict[Key, list[Any]] = {key: [None] * len(token_ids) for key in keys}
    for batch in _batches(token_ids):
        ids, mask = pad_batch([token_ids[i] for i in batch], pad_id_of(loaded.tokenizer))

        def keep(layer: int, site: str, value: Any, batch: list[int] = batch) -> None:
            for row, index in enumerate(batch):
                kept[(layer, site)][index] = value[row, :len(token_ids[index])].detach().clone()

        with torch.no_grad(), Trace(loaded, None, watch=keys, on_watch=keep) as trace:
            prepare(trace, mask, range(len(batch)))
            last_logits(loaded, ids, mask)
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


def _put(out: Products, key: Key, batch: list[int], products: np.ndarray,
         shape: tuple[int, int]) -> None:
    """Store a batch's [rows, tokens, units] products as rows `batch` of `out[key]` (a zero
    float32 [pairs, longest prompt, units] array, made when its units are first known)."""
    if key not in out:
        out[key] = np.zeros((*shape, products.shape[-1]), np.float32)
    out[key][batch, :products.shape[1]] = products


def _batches(token_ids: Sequence[Sequence[int]], size: int = BATCH) -> list[list[int]]:
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
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
