"""Whether a shard's summary, read back from the work folder, is one of this scan's.

Our own writes leave a shard file complete or absent (`shards.write_shard`), and a file cut off
or bit-flipped fails the format's own checks (the zip's CRC, Parquet's page checksums). These
checks catch what is left: a file complete on disk but not what this scan would have written
(altered by hand, by another program, or by a disk that kept its checksums), so that such a
shard is computed again instead of merged. Merged, a NaN would reach the report as a NaN mean,
and a count the sketch does not hold would end in an IndexError when the quantiles are read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lazarus.io.corpus import Window
from lazarus.stats.sketch import Summary


def scored_tokens(windows: Sequence[Window]) -> int:
    """How many tokens a shard of these windows scores (its summary's count)."""
    return sum(len(w.tokens) - w.scored_from for w in windows)


def shard_problem(summary: Summary, tokens: int, width: int | None,
                  windows: Sequence[Window] | None = None, routed: bool = False) -> str | None:
    """What is wrong with `summary` as the summary of a shard whose windows score `tokens`
    tokens, for `width` neurons (None: any), or None when nothing is. With `windows`, also
    that every kept example is one of their scored tokens. `routed` (MoE expert units): the
    summary counts only the tokens routed to their expert, at most `tokens`."""
    if width is not None and summary.width != width:
        return f"it holds {summary.width} neurons where this scan reads {width}"
    if summary.count > tokens if routed else summary.count != tokens:
        return f"it counts {summary.count} tokens where its windows score {tokens}"
    tokens = summary.count
    if not all(np.isfinite(a).all() for a in (summary.mean, summary.m2, summary.top,
                                                summary.bottom)):
        return "it holds NaN or infinite values"
    if (summary.m2 < 0).any() or (summary.positive < 0).any() \
            or (summary.positive > tokens).any() or (summary.sketch < 0).any() \
            or (summary.sketch.sum(axis=1) != tokens).any():
        return "its counts disagree with each other"
    if (np.diff(summary.top, axis=1) > 0).any() or (np.diff(summary.bottom, axis=1) < 0).any():
        return "its top and bottom values are out of order"
    if windows is not None and not _examples_scored(summary, windows):
        return "its examples name tokens its windows do not score"
    return None


def _examples_scored(summary: Summary, windows: Sequence[Window]) -> bool:
    """Whether every kept (doc, window, token) is a scored token of one of `windows`."""
    spans = {(w.doc, w.index): (w.scored_from, len(w.tokens)) for w in windows}
    ids = np.concatenate([summary.top_ids.reshape(-1, 3), summary.bottom_ids.reshape(-1, 3)])
    if not len(ids):
        return True
    pairs, inverse = np.unique(ids[:, :2], axis=0, return_inverse=True)  # [P, 2], [ids]
    low, high = np.zeros(len(pairs), np.int64), np.zeros(len(pairs), np.int64)
    for k, pair in enumerate(pairs.tolist()):
        span = spans.get(tuple(pair))
        if span is None:
            return False
        low[k], high[k] = span
    inverse = inverse.reshape(-1)
    return bool(((ids[:, 2] >= low[inverse]) & (ids[:, 2] < high[inverse])).all())
