"""A percentile bootstrap over pairs of a normalised patching score (numpy only).

The statistic of a cell is a ratio of means over pairs: (mean patched - mean corrupted) /
(mean clean - mean corrupted). A resample draws as many pairs with replacement (the same
draws for every cell, so cells stay comparable) and recomputes the ratio; the interval is the
2.5th and 97.5th percentiles of the resampled ratios. It covers roughly 95% only when there
are enough pairs for a resample to show their spread: with fewer than `FEW_PAIRS` it is rough
(with 2 pairs there are only 3 distinct resamples), and with one pair there is none.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95
RESAMPLES = 1000
FEW_PAIRS = 5  # below this many pairs, intervals are said to be rough
NOTE = (f"{LEVEL:.0%} percentile bootstrap over pairs ({RESAMPLES} resamples, seeded)")
ROUGH = f"with fewer than {FEW_PAIRS} pairs the intervals are rough"


def normalised(patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray) -> np.ndarray:
    """[pairs, ...] patched scores, [pairs] clean and corrupted scores -> [...]: the score
    moved from the corrupted run's towards the clean run's (1 = clean, 0 = corrupted)."""
    low = corrupt.mean()
    return (patched.mean(axis=0) - low) / (clean.mean() - low)


def ratio_interval(patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray, seed: int,
                   resamples: int = RESAMPLES, level: float = LEVEL
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high), each shaped like `normalised`'s result, or None for one pair. A resample
    whose clean and corrupted means are equal has no ratio and is left out."""
    count = patched.shape[0]
    if count < 2:
        return None
    rng = np.random.default_rng(seed)
    # weights [resamples, pairs]: how often each pair was drawn, over the count (so a product
    # with the scores is the resample's mean, without copying the scores per resample)
    weights = np.stack([np.bincount(rng.integers(count, size=count), minlength=count)
                        for _ in range(resamples)]).astype(np.float64) / count
    flat = patched.reshape(count, -1).astype(np.float64)
    low = weights @ corrupt.astype(np.float64)  # [resamples]
    gap = weights @ clean.astype(np.float64) - low
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (weights @ flat - low[:, None]) / gap[:, None]  # [resamples, cells]
    ratios = ratios[gap != 0]
    tail = (1 - level) / 2 * 100
    bounds = np.percentile(ratios, [tail, 100 - tail], axis=0)
    shape = patched.shape[1:]
    return bounds[0].reshape(shape), bounds[1].reshape(shape)
