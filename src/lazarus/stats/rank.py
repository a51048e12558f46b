"""Correlations between two lists of numbers: Pearson's r and Spearman's rank correlation (ties
take the mean of the ranks they span, as in scipy's `spearmanr`). `attribute`'s self-check uses
them to say how well its estimates predicted the real patches."""

from __future__ import annotations

import numpy as np


def ranks(values: np.ndarray) -> np.ndarray:
    """float64 ranks from 1; tied values share the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # each run of ties
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks start..end-1 (+1), averaged
    out = np.empty(len(values), np.float64)
    out[order] = np.repeat(mean_rank, ends - starts)
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; NaN when either list is constant (no correlation is defined)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    scale = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / scale) if scale > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks (mean ranks for ties)."""
    return pearson(ranks(x), ranks(y))
