"""The probe's exact solver: many penalised logistic regressions sharing one matrix of rows.

numpy only. A problem is a subset of the rows (`train`), a labelling `y` (1 = class A) and a
penalty `lam`; it minimises

    sum over its rows of log(1 + exp(f_i)) - y_i f_i  +  (lam / 2) |beta|^2,   f_i = z_i.beta + b,

which is strictly convex, so the answer is unique and both forms below reach it (to rounding).
The coordinates z are either the centred rows themselves or their coordinates in an orthonormal
basis of the rows' span (`coordinates` picks by shape); the penalty is rotation invariant, so
the fit is the same either way.

Two forms, chosen by shape (m training rows, r columns of z): the dual for m <= r (few prompts
in a wide layer), the primal for m > r. Both are Newton's method, and are `lazarus.stats.newton`'s;
here are the coordinates, the penalties, the choice of form and the fit on all rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lazarus.stats.newton import newton_dual, newton_primal

_SPAN_TOLERANCE = 1e-10  # components with variance below this share of the largest are dropped
BATCH_ELEMENTS = 4_000_000  # float64 elements per batch of problems (32 MB per array)


def coordinates(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Centre the rows [n, d] and choose the coordinates the fits run in.

    Returns (mean [d], z [n, r], basis [d, r] or None): a direction u in z coordinates is
    `basis @ u` in raw coordinates (None: z are the centred rows, u is already raw). With fewer
    rows than columns, z are coordinates in an orthonormal basis of the rows' span, built from
    the n x n Gram matrix, which is far cheaper than an SVD when d >> n.
    """
    x = np.asarray(rows, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    if x.shape[0] > x.shape[1]:
        return mean, centred, None
    values, vectors = np.linalg.eigh(centred @ centred.T)  # [n], [n, n]
    top = values[-1] if values.size else 0.0
    keep = values > top * _SPAN_TOLERANCE if top > 0 else np.zeros(values.shape, dtype=bool)
    singular = np.sqrt(values[keep])
    return mean, vectors[:, keep] * singular, centred.T @ (vectors[:, keep] / singular)


def penalties(z: np.ndarray, train: np.ndarray, hidden: int) -> np.ndarray:
    """The mean neuron variance (ddof 0) of each problem's training rows [P]."""
    m = train.sum(axis=1)
    weights = train / m[:, None]
    centre = weights @ z  # [P, r]
    spread = weights @ np.sum(z * z, axis=1) - np.sum(centre * centre, axis=1)
    return np.maximum(spread, 0.0) / hidden


def logistic_batch(z: np.ndarray, y: np.ndarray, train: np.ndarray, hidden: int,
                   form: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Many penalised logistic regressions sharing the features z [n, r].

    Problem p is fitted on the rows where train[p] is True with labels y[p] (both [P, n]); its
    penalty is the mean neuron variance of those rows (`hidden` neurons). Returns beta [P, r]
    and bias [P]: logit = z.beta + bias. `form` ("primal" or "dual") overrides the choice by
    shape, for tests and benchmarks.
    """
    y = np.asarray(y, dtype=np.float64)
    beta = np.zeros((y.shape[0], z.shape[1]))
    bias = np.zeros(y.shape[0])
    counts = train.sum(axis=1)
    lam = penalties(z, train, hidden)
    use_primal = counts > z.shape[1] if form is None else np.full(counts.shape, form == "primal")
    primal = np.flatnonzero(use_primal)
    if primal.size:
        beta[primal], bias[primal] = newton_primal(z, y[primal], train[primal], lam[primal])
    gram = z @ z.T if primal.size < y.shape[0] else None  # [n, n]
    for m in np.unique(counts[~use_primal]):
        group = np.flatnonzero((counts == m) & ~use_primal)
        chunk = max(1, BATCH_ELEMENTS // (m + 1) ** 2)
        for start in range(0, group.size, chunk):
            part = group[start:start + chunk]
            rows = np.nonzero(train[part])[1].reshape(part.size, m)  # [k, m] training rows
            sub = gram[rows[:, :, None], rows[:, None, :]]  # [k, m, m]
            alpha, bias[part] = newton_dual(sub, np.take_along_axis(y[part], rows, 1),
                                            lam[part])
            beta[part] = np.einsum("km,kmr->kr", alpha, z[rows])
    return beta, bias


@dataclass(frozen=True)
class LogisticFit:
    """A logistic model in raw coordinates: logit(A) = weights . x + bias."""

    weights: np.ndarray  # [hidden], not normalised
    bias: float
    penalty: float  # the L2 strength that was used


def fit_logistic(rows: np.ndarray, is_a: np.ndarray) -> LogisticFit:
    """The `logistic` fit on all rows [n, d], in raw coordinates."""
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(is_a, dtype=bool)[None].astype(np.float64)
    mean, z, basis = coordinates(x)
    beta, bias = logistic_batch(z, y, np.ones(y.shape, dtype=bool), x.shape[1])
    weights = beta[0] if basis is None else basis @ beta[0]
    penalty = float(np.sum(z * z)) / (x.shape[0] * x.shape[1])
    # z has zero column means (the rows were centred), so logit = beta.z + bias
    return LogisticFit(weights, float(bias[0] - weights @ mean), penalty)
