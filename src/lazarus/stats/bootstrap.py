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
    moved from the corrupted run's towards the clean run's (1 = clean, 0 = corrupted), from
    per-pair differences, so that a cell reproducing the corrupted (clean) run in every pair
    is exactly 0 (1), without rounding artefacts."""
    moved, gap = _differences(patched, clean, corrupt)
    return _exact(moved.mean(axis=0) / gap.mean(), moved, gap).reshape(patched.shape[1:])


def _differences(patched: np.ndarray, clean: np.ndarray, corrupt: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """float64 ([pairs, cells] patched - corrupted, [pairs] clean - corrupted)."""
    low = corrupt.astype(np.float64)
    moved = patched.reshape(patched.shape[0], -1).astype(np.float64) - low[:, None]
    return moved, clean.astype(np.float64) - low


def _exact(ratios: np.ndarray, moved: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """[..., cells] ratios, set to exactly 0 where every pair's patched score is its corrupted
    one and exactly 1 where it is its clean one (whatever order the sums were taken in)."""
    ratios = np.where((moved == 0).all(axis=0), 0.0, ratios)
    return np.where((moved == gap[:, None]).all(axis=0), 1.0, ratios)


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
    moved, differences = _differences(patched, clean, corrupt)
    gap = weights @ differences  # [resamples]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = _exact((weights @ moved) / gap[:, None], moved, differences)
    ratios = ratios[gap != 0]
    tail = (1 - level) / 2 * 100
    bounds = np.percentile(ratios, [tail, 100 - tail], axis=0)
    shape = patched.shape[1:]
    return bounds[0].reshape(shape), bounds[1].reshape(shape)
