"""A scan's reduction of a few batches' values to one `Summary` (top and bottom N, moments,
positives, the sketch): the numeric core of `scan`, apart so that each stays short."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from lazarus.errors import LazarusError
from lazarus.stats.sketch import BUCKETS, LOW, SHIFT, SIDE, Summary, select

BLOCK_VALUES = 1 << 15  # values per block of rows in `summarize`'s passes
CUT_BLOCKS = 64  # blocks of rows whose best values set each column's cut (`_extreme`)
MIXED_EXPERTS = ("these MoE expert units belong to several experts, routed to different tokens, "
                 "and one scan counts the same tokens for every unit (give one expert's units: "
                 "columns e*I .. e*I+I-1)")


def summarize(values: Any, ids: np.ndarray, keep: int, routed: bool = False) -> Summary:
    """The `Summary` of float32 torch [tokens, K] values (on any device) whose tokens have
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
    # Everything in numpy on the host: its sums do not depend on the thread count (torch's
    # do), and on a CPU a few numpy passes cost less than as many torch calls.
    narrow = values.float().cpu().numpy()  # float32 [tokens, K]
    with np.errstate(invalid="ignore", over="ignore"):  # +inf and -inf: a NaN mean, said below
        mean = narrow.mean(axis=0, dtype=np.float64)
    # an infinity anywhere in a column makes its mean infinite, or NaN beside one of the other
    # sign (so that a shard holding one is one damaged on disk)
    if np.isinf(mean).any() or (np.isnan(mean).any() and np.isinf(narrow).any()):
        raise LazarusError("this site's values overflow float32 to infinity at some tokens "
                           "(with --dtype float16 or bfloat16, give --dtype float32; with "
                           "--projection, a direction of smaller weights)")
    if np.isnan(mean).any():  # a NaN anywhere in a column makes its mean NaN
        raise LazarusError("this site has no value at some tokens (MoE expert units); "
                           "examples needs a value at every token (use resid_post, mlp_out, "
                           "attn_out or a dense layer's mlp_post)")
    m2 = np.zeros(width)
    positive = np.zeros(width, np.int64)
    sketch = np.zeros(width * BUCKETS, np.int64)
    # A few rows at a time: every temporary stays small enough for the allocator to reuse
    # its memory, where whole-array temporaries cost a page fault per 4 KB on every call.
    step = max(1, BLOCK_VALUES // width)
    for start in range(0, count, step):
        block = narrow[start:start + step]
        centred = block.astype(np.float64)
        np.subtract(centred, mean, out=centred)
        np.square(centred, out=centred)
        m2 += centred.sum(axis=0)
        positive += np.count_nonzero(block > 0, axis=0)
        np.add.at(sketch, _sketch_columns(block).reshape(-1), 1)
    top, top_ids = _extreme(narrow, ids, keep, highest=True)
    bottom, bottom_ids = _extreme(narrow, ids, keep, highest=False)
    return Summary(int(count), mean, m2, positive, sketch.reshape(width, BUCKETS),
                   top, top_ids, bottom, bottom_ids)


def _sketch_columns(values: np.ndarray) -> np.ndarray:
    """Each value's sketch bucket (`examples`' grid), offset by its column's: int64 [tokens, K]
    of float32 [tokens, K] values, from their bits alone. A float32's bucket depends only on its
    bits above SHIFT (sign, exponent, top mantissa bits), so it is looked up in a table of
    those: two passes over the values instead of seven."""
    bucket = _bucket_table().take(values.view(np.uint32) >> SHIFT)  # int64, SIDE added
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


def _extreme(host: np.ndarray, ids: np.ndarray, keep: int,
             highest: bool) -> tuple[np.ndarray, np.ndarray]:
    """The `keep` highest (or lowest) per column of float32 [tokens, K] values, ties taken in
    id order. A cut per column first (the (keep+1)-th best of CUT_BLOCKS blocks' best values,
    so at least keep+1 values reach it, ties included) leaves a few candidates per column;
    they are ordered by one sort of 64-bit keys (column, value, rank of the id)."""
    count, width = host.shape
    n = min(keep, count)
    if n == 0:
        return select(np.zeros((width, 0), np.float32), np.zeros((width, 0, 3), np.int64), keep,
                      highest)
    blocks = min(CUT_BLOCKS, count // 2)
    if blocks > n:
        size = count // blocks
        split = host[:blocks * size].reshape(blocks, size, width)
        edge = split.max(axis=1) if highest else split.min(axis=1)  # [blocks, K]
        at = blocks - 1 - n if highest else n  # the (n+1)-th best block
        cut = np.partition(edge, at, axis=0)[at]
        flat = np.flatnonzero(host >= cut if highest else host <= cut)
    else:
        flat = np.arange(count * width)
    r, c = np.divmod(flat, width)  # np.nonzero's rows and columns, in less time
    found, local = np.unique(r, return_inverse=True)  # the candidate rows
    by_id = np.lexsort((ids[found, 2], ids[found, 1], ids[found, 0]))
    rank = np.empty(len(found), np.int64)
    rank[by_id] = np.arange(len(found))
    order = _order(host[r, c], c, rank[local.reshape(-1)], highest)
    counts = np.bincount(c, minlength=width)  # at least n each
    first = np.cumsum(counts) - counts  # where each column's candidates start
    rows = found[by_id[order[first[:, None] + np.arange(n)]]]  # [K, n]
    return select(np.take_along_axis(host.T, rows, axis=1), ids[rows], keep, highest)


def _order(values: np.ndarray, columns: np.ndarray, ranks: np.ndarray,
           highest: bool) -> np.ndarray:
    """The ranks of float32 values, sorted by column, then value (highest first or lowest
    first; -0.0 = 0.0), then rank: one sort of uint64 keys (a lexsort where they do not fit)."""
    bits = (values + np.float32(0.0)).view(np.uint32).astype(np.uint64)  # -0.0 + 0.0 = 0.0
    flip = np.where(bits >> np.uint64(31), np.uint64(0xFFFFFFFF), np.uint64(1 << 31))
    ascending = bits ^ flip  # unsigned, in the floats' order
    key = ascending ^ np.uint64(0xFFFFFFFF) if highest else ascending
    rank_bits = int(ranks.max(initial=0)).bit_length()
    if int(columns.max(initial=0)).bit_length() + 32 + rank_bits > 64:
        return ranks[np.lexsort((ranks, key, columns))]
    key = (columns.astype(np.uint64) << np.uint64(32 + rank_bits)) | (key << np.uint64(
        rank_bits)) | ranks.astype(np.uint64)
    key.sort()
    return (key & np.uint64((1 << rank_bits) - 1)).astype(np.int64)
