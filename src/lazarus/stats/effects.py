"""Effect sizes, permutation tests, corrections and intervals for neurons (numpy only).

Choices, made once here and said in the output:

- **Effect.** Two labels: Cohen's d, (mean of the first label given - mean of the second) /
  pooled standard deviation (each group's ddof=1 variance, weighted by n - 1). More labels:
  eta-squared of a one-way ANOVA, the share of the neuron's variance that lies between the label
  means (0..1; direction-free). Both are scale-free, so a neuron with huge values does not win
  by its size.
- **Test.** A permutation test: the labels are shuffled (group sizes kept) and the statistic is
  recomputed for every neuron on the same shuffles, so that the shuffles are shared across the
  neurons and the test is vectorised (one matrix product per batch of shuffles). The statistic
  is eta-squared, which for two labels is a monotone function of |d| (d^2 = c * eta2 / (1 -
  eta2), c fixed by the group sizes), so the test of |d| and of eta-squared is the same test.
  p = (1 + shuffles at least as extreme) / (1 + shuffles): never 0, smallest 1 / (1 + B).
- **Correction.** Family-wise, by the single-step max-statistic method (Westfall & Young 1993):
  a neuron's corrected p is the share of shuffles in which the largest statistic over *all*
  neurons tested reaches the neuron's own. It controls the chance of any false discovery among
  the neurons tested, and holds under any dependence between them (the residual stream's
  dimensions are far from independent, which the Benjamini-Hochberg guarantee would need).
- **Intervals.** Exact normal-theory intervals (noncentral t and F), in `stats.intervals`,
  which says why not the bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BATCH = 64  # shuffles computed at once


def label_codes(labels: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each label's group number (0 = the first label given, ...) and the labels in that order."""
    order: dict[str, int] = {}
    for label in labels:
        order.setdefault(label, len(order))
    return np.array([order[label] for label in labels], dtype=np.int64), tuple(order)


def _one_hot(codes: np.ndarray) -> np.ndarray:
    groups = int(codes.max()) + 1
    return (codes[:, None] == np.arange(groups)[None, :]).astype(np.float64)  # [n, groups]


def _sums_of_squares(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total and between-label sums of squares per column of `values` [..., n, m]."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(axis=-2, keepdims=True)
    total = (centred**2).sum(axis=-2)
    one_hot = _one_hot(codes)  # [n, g]
    sums = np.einsum("ng,...nm->...gm", one_hot, centred)
    between = (sums**2 / one_hot.sum(axis=0)[:, None]).sum(axis=-2)
    return total, between


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """top / bottom, NaN where bottom is not positive."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)


def eta_squared(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Between-label sum of squares / total sum of squares, per column of `values` [..., n, m].

    NaN for a constant column (no variance to share out).
    """
    total, between = _sums_of_squares(values, codes)
    return _ratio(between, total)


def cohens_d(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(mean of group 0 - mean of group 1) / pooled sd, per column of `values` [..., n, m];
    NaN when the pooled sd is 0. Needs two groups, together of at least three values.

    The pooled variance is the within-label sum of squares / (n - 2).
    """
    values = np.asarray(values, dtype=np.float64)
    total, between = _sums_of_squares(values, codes)
    pooled = np.sqrt(np.maximum(total - between, 0.0) / (codes.size - 2))
    first, second = codes == 0, codes == 1
    gap = values[..., first, :].mean(axis=-2) - values[..., second, :].mean(axis=-2)
    return _ratio(gap, pooled)


def effect_size(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Cohen's d with two groups, eta-squared with more (see the module doc)."""
    return cohens_d(values, codes) if int(codes.max()) == 1 else eta_squared(values, codes)


def effect_name(groups: int) -> str:
    return "Cohen's d" if groups == 2 else "eta-squared"


@dataclass(frozen=True)
class PermutationTest:
    """Per column: the observed statistic (eta-squared), its own permutation p, and its p
    corrected across all columns by the max-statistic; `max_null` is each shuffle's largest
    statistic over the columns."""

    statistic: np.ndarray  # [m]
    p: np.ndarray  # [m]
    p_corrected: np.ndarray  # [m]
    max_null: np.ndarray  # [shuffles]
    shuffles: int


def shuffles(n: int, count: int, seed: int) -> np.ndarray:
    """`count` seeded random orders of range(n), one per row."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((count, n)), axis=1)


def permutation_test(values: np.ndarray, codes: np.ndarray, orders: np.ndarray
                     ) -> PermutationTest:
    """Max-statistic permutation test of eta-squared on every column of `values` [n, m], with
    the shuffled label orders `orders` [B, n] shared by all columns. Every column must have
    variance (drop constant ones first)."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(axis=0)
    total = (centred**2).sum(axis=0)  # the same under every shuffle
    if np.any(total <= 0):
        raise ValueError("every column needs some variance (drop constant ones first)")
    one_hot = _one_hot(codes)  # [n, g]
    sizes = one_hot.sum(axis=0)
    observed = ((one_hot.T @ centred) ** 2 / sizes[:, None]).sum(axis=0) / total
    threshold = observed * (1.0 - 1e-9)  # a shuffle equal to the observed labelling counts
    beaten = np.zeros(values.shape[1], dtype=np.int64)
    max_null = np.empty(orders.shape[0])
    groups = one_hot.shape[1]
    for start in range(0, orders.shape[0], BATCH):
        batch = orders[start:start + BATCH]  # [b, n]
        shuffled = one_hot[batch]  # [b, n, g]: row i of a shuffle gets the label of row order[i]
        stacked = shuffled.transpose(0, 2, 1).reshape(-1, values.shape[0])  # [b * g, n]
        sums = (stacked @ centred).reshape(batch.shape[0], groups, -1)  # [b, g, m]
        null = (sums**2 / sizes[None, :, None]).sum(axis=1) / total  # [b, m]
        beaten += (null >= threshold).sum(axis=0)
        max_null[start:start + batch.shape[0]] = null.max(axis=1)
    count = orders.shape[0]
    p = (1 + beaten) / (1 + count)
    p_corrected = (1 + (max_null[None, :] >= threshold[:, None]).sum(axis=1)) / (1 + count)
    return PermutationTest(statistic=observed, p=p, p_corrected=p_corrected, max_null=max_null,
                           shuffles=count)
