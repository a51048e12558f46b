"""A scan's reduction of a few batches' values to one `Summary` (top and bottom N, moments,
positives, the sketch): the numeric core of `scan`, apart so that each stays short."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from lazarus.errors import LazarusError
from lazarus.stats.sketch import BUCKETS, LOW, SHIFT, SIDE, Summary, select

MIXED_EXPERTS = ("these MoE expert units belong to several experts, routed to different tokens, "
                 "and one scan counts the same tokens for every unit (give one expert's units: "
                 "columns e*I .. e*I+I-1)")


def summarize(values: Any, ids: np.ndarray, keep: int, routed: bool = False) -> Summary:
    """The `Summary` of float32 torch [tokens, K] values (on their device) whose tokens have
    int64 [tokens, 3] ids (in any row order). `routed` (an MoE layer's expert units, NaN at the
    tokens not routed to their expert): the rows NaN in every column are left out, so that the
    summary is over the tokens routed to the units' one expert."""
    if routed:
        import torch

        missing = torch.isnan(values)
        unrouted = missing.all(dim=1)
        if bool((missing.any(dim=1) & ~unrouted).any()):
            raise LazarusError(MIXED_EXPERTS)
        if bool(unrouted.any()):
            kept = ~unrouted
            values, ids = values[kept], ids[kept.cpu().numpy()]
        if values.shape[0] == 0:
            return Summary.empty(values.shape[1])
    count, width = values.shape
    # Moments, positives and the sketch in numpy on the host: its sums do not depend on the
    # thread count (torch's do), and its integer operations are faster on a CPU. Top and
    # bottom are chosen on the device.
    narrow = values.float().cpu().numpy()  # float32 [tokens, K]
    host = narrow.astype(np.float64)
    mean = host.mean(axis=0)
    if np.isnan(mean).any():  # a NaN anywhere in a column makes its mean NaN
        raise LazarusError("this site has no value at some tokens (MoE expert units); "
                           "examples needs a value at every token (use resid_post, mlp_out, "
                           "attn_out or a dense layer's mlp_post)")
    if np.isinf(mean).any():  # so that a shard holding an infinity is one damaged on disk
        raise LazarusError("this site's values overflow to infinity at some tokens (give "
                           "--dtype float32)")
    np.subtract(host, mean, out=host)
    np.square(host, out=host)
    m2 = host.sum(axis=0)
    sketch = np.bincount(_sketch_columns(narrow).reshape(-1), minlength=width * BUCKETS)
    # bincount counts in int64 already: no copy below
    positive = (narrow > 0).sum(axis=0)
    top, top_ids = _extreme(values, narrow, ids, keep, highest=True)
    bottom, bottom_ids = _extreme(values, narrow, ids, keep, highest=False)
    return Summary(int(count), mean, m2, positive.astype(np.int64),
                   sketch.reshape(width, BUCKETS).astype(np.int64, copy=False),
                   top, top_ids, bottom, bottom_ids)


def _sketch_columns(values: np.ndarray) -> np.ndarray:
    """Each value's sketch bucket (`examples`' grid), offset by its column's: int64 [tokens, K]
    of float32 [tokens, K] values, from their bits alone. A float32's bucket depends only on its
    bits above SHIFT (sign, exponent, top mantissa bits), so it is looked up in a table of
    those: two passes over the values instead of seven."""
    bucket = _bucket_table()[values.view(np.uint32) >> SHIFT]  # int64, SIDE added
    bucket += BUCKETS * np.arange(values.shape[1], dtype=np.int64)
    return bucket


@functools.cache
def _bucket_table() -> np.ndarray:
    """int64 [2^(32 - SHIFT)]: the sketch bucket, plus SIDE, of every float32 whose bits above
    SHIFT are the index: 0 (the zero bucket) below MIN_ABS, 1.. SIDE upward, negated for a
    negative value, everything beyond MAX_ABS (and NaN) in the outermost bucket."""
    bits = (np.arange(1 << (32 - SHIFT), dtype=np.uint32) << SHIFT).view(np.int32)
    bucket = ((bits & 0x7FFFFFFF) >> SHIFT).astype(np.int64)
    bucket -= LOW - 1  # 1 for MIN_ABS's bits
    np.clip(bucket, 0, SIDE, out=bucket)  # 0: the zero bucket
    np.negative(bucket, out=bucket, where=bits < 0)
    return bucket + SIDE


def _extreme(values: Any, host: np.ndarray, ids: np.ndarray, keep: int,
             highest: bool) -> tuple[np.ndarray, np.ndarray]:
    """The `keep` highest (or lowest) per column, ties at the cut taken in id order: `topk` on
    the device, then, only in the columns where values tie across the cut, their rows at or
    above the cut ordered by value, then id. `host`: the values as float32 numpy, where the
    ties are sorted out (a few passes of numpy cost less than as many torch calls)."""
    import torch

    n = min(keep, values.shape[0])
    best, rows = torch.topk(values, min(n + 1, values.shape[0]), dim=0,
                            largest=highest)  # [n (+1), K]
    best, rows = best.cpu().numpy(), rows.cpu().numpy()
    if n < values.shape[0]:  # a tie across the cut: the (n+1)-th value equals the n-th
        ties = np.flatnonzero(best[n] == best[n - 1]) if n else np.zeros(0, np.int64)
        rows = rows[:n]
        if len(ties):  # order those columns' candidates (rows at or above the cut) by id
            sub = host if len(ties) == host.shape[1] else host[:, ties]  # [tokens, T]
            cut = best[n - 1, ties]
            r, c = np.nonzero(sub >= cut if highest else sub <= cut)
            value = sub[r, c].astype(np.float64)
            order = np.lexsort((ids[r, 2], ids[r, 1], ids[r, 0], -value if highest else value,
                                c))
            counts = np.bincount(c, minlength=len(ties))
            first = np.cumsum(counts) - counts  # where each column's candidates start
            rows[:, ties] = r[order[first[:, None] + np.arange(n)]].T  # [n, T]
    rows = rows.T  # [K, n]
    chosen = np.take_along_axis(host.T, rows, axis=1) if n else \
        np.zeros((host.shape[1], 0), np.float32)
    return select(chosen, ids[rows], keep, highest)
