"""Effect sizes of neurons against labels (numpy only).

Choices, made once here and said in the output:

- **Effect.** Two labels: Cohen's d, (mean of the first label given - mean of the second) /
  pooled standard deviation (each group's ddof=1 variance, weighted by n - 1). More labels:
  eta-squared of a one-way ANOVA, the share of the neuron's variance that lies between the label
  means (0..1; direction-free). Both are scale-free, so a neuron with huge values does not win
  by its size.
- **Test and correction.** Welch's F against a bootstrap, max-statistic corrected: see
  `stats.welch`.
- **Perfect separation.** A neuron without spread within any label (its within-label sum of
  squares at most `TIED` of the total; Welch's test floors variances at the same share) whose
  label means differ has an infinite d (sign: of the difference) and an eta-squared of 1, not
  NaN; one constant over every prompt has no effect to size: NaN, "undefined".
- **Intervals.** Exact normal-theory intervals (noncentral t and F), in `stats.intervals`,
  which says why not the bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TIED = 1e-12  # within-label sum of squares, as a share of the total, that counts as no spread


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


def separated(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """bool per column of `values` [..., n, m]: the labels perfectly separated, with no spread
    within any label (within sum of squares <= `TIED` x total) but some between them."""
    total, between = _sums_of_squares(values, codes)
    return (total > 0) & (total - between <= TIED * total)


def eta_squared(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Between-label sum of squares / total sum of squares, per column of `values` [..., n, m];
    exactly 1 where the labels are perfectly separated (`separated`).

    NaN for a constant column (no variance to share out).
    """
    total, between = _sums_of_squares(values, codes)
    return np.where(separated(values, codes), 1.0, _ratio(between, total))


def cohens_d(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(mean of group 0 - mean of group 1) / pooled sd, per column of `values` [..., n, m];
    +-inf (the difference's sign) where the labels are perfectly separated (`separated`: no
    spread within either), NaN for a constant column. Needs two groups, together of at least
    three values.

    The pooled variance is the within-label sum of squares / (n - 2).
    """
    values = np.asarray(values, dtype=np.float64)
    total, between = _sums_of_squares(values, codes)
    pooled = np.sqrt(np.maximum(total - between, 0.0) / (codes.size - 2))
    first, second = codes == 0, codes == 1
    gap = values[..., first, :].mean(axis=-2) - values[..., second, :].mean(axis=-2)
    split = separated(values, codes)
    return np.where(split, np.where(gap > 0, np.inf, -np.inf), _ratio(gap, pooled))


def effect_size(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Cohen's d with two groups, eta-squared with more (see the module doc)."""
    return cohens_d(values, codes) if int(codes.max()) == 1 else eta_squared(values, codes)


def effect_name(groups: int) -> str:
    return "Cohen's d" if groups == 2 else "eta-squared"


