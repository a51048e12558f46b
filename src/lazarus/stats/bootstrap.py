"""A percentile bootstrap over pairs of a normalised patching score (numpy only).

The statistic of a cell is a ratio of means over pairs: (mean patched - mean corrupted) /
(mean clean - mean corrupted). A resample draws as many pairs with replacement (the same
draws for every cell, so cells stay comparable) and recomputes the ratio. The interval is the
*expanded* percentile interval (Hesterberg 2015): a resample of n pairs shows only
(n - 1) / n of their variance and a normal tail where a t tail belongs, so the plain 2.5th and
97.5th percentiles cover too little with few pairs (measured: 83% at 5 pairs, 88% at 8, 90% at
10, 91% at 20); the percentiles taken are instead Phi(-sqrt(n / (n - 1)) t_{n-1, 0.975}) and
its mirror (0.1% and 99.9% at 5 pairs, 1.6% and 98.4% at 20), which covers 90% at 5 pairs and
94-95% from 8 on. Below `FEW_PAIRS` it is rough all the same (with 2 pairs there are only 3
distinct resamples: 47% at 2, 69% at 3), and with one pair there is none.
"""

from __future__ import annotations

import math

import numpy as np

from lazarus.stats.t_interval import t_critical

LEVEL = 0.95
RESAMPLES = 1000
FEW_PAIRS = 5  # below this many pairs, intervals are said to be rough
NOTE = (f"{LEVEL:.0%} expanded percentile bootstrap over pairs ({RESAMPLES} resamples, "
        "seeded; percentiles widened for few pairs)")
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


def expanded_tail(count: int, level: float = LEVEL) -> float:
    """The share of resamples left out on each side for `count` pairs: Phi(-q), q =
    sqrt(n / (n - 1)) t_{n-1} at `level` (the expanded percentile interval, module docstring)."""
    q = math.sqrt(count / (count - 1)) * t_critical(count - 1, level)
    return 0.5 * math.erfc(q / math.sqrt(2.0))


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
    tail = expanded_tail(count, level) * 100
    bounds = np.percentile(ratios, [tail, 100 - tail], axis=0)
    shape = patched.shape[1:]
    return bounds[0].reshape(shape), bounds[1].reshape(shape)
