"""Student's t-intervals of per-label means, for the neurons figure's label panel (numpy only).

`t_critical` needs no scipy: for integer degrees of freedom Student's t distribution function
has a closed form, solved for the quantile by bisection.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=256)  # `label_means` asks once per neuron and label, mostly for one dof
def t_critical(dof: int, level: float = 0.95) -> float:
    """t with P(|T| < t) = level for Student's t with `dof` degrees of freedom.

    Exact: P(|T| < t) has a closed form for integer dof (Abramowitz & Stegun 26.7.3-4, in
    theta = atan(t / sqrt(dof))), solved for theta by bisection. Beyond 10,000 dof the
    Cornish-Fisher expansion around the normal quantile (error < 1e-9) is used instead.
    """
    if dof < 1:
        raise ValueError("a t-interval needs at least 1 degree of freedom")
    if dof > 10_000:
        z = normal_quantile(0.5 + level / 2)
        return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)
    low, high = 0.0, math.pi / 2
    for _ in range(200):
        theta = (low + high) / 2
        if _t_inside(theta, dof) < level:
            low = theta
        else:
            high = theta
        if high - low < 1e-15:
            break
    return math.sqrt(dof) * math.tan((low + high) / 2)


def _t_inside(theta: float, dof: int) -> float:
    """P(|T| < sqrt(dof) tan theta) for Student's t with `dof` (integer) degrees of freedom."""
    c2 = math.cos(theta) ** 2
    if dof % 2 == 0:  # sin(theta) (1 + 1/2 c2 + 1.3/(2.4) c2^2 + ... ), (dof - 2) / 2 terms
        k = np.arange(1, dof // 2)
        terms = np.cumprod((2 * k - 1) / (2 * k) * c2)
        return math.sin(theta) * (1.0 + float(terms.sum()))
    if dof == 1:
        return 2 * theta / math.pi
    k = np.arange(1, (dof - 1) // 2)  # (2/pi)(theta + sin cos (1 + 2/3 c2 + 2.4/(3.5) c2^2 ..))
    terms = np.cumprod((2 * k) / (2 * k + 1) * c2)
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * (1.0 + float(terms.sum())))


def normal_quantile(p: float) -> float:
    """The standard normal quantile of p, by bisection on erfc (no scipy)."""
    low, high = -40.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if 0.5 * math.erfc(-middle / math.sqrt(2)) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def label_means(values: np.ndarray, labels: tuple[str, ...],
                level: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per label (sorted): each column's mean, the half-width of its t-interval (NaN with
    fewer than 2 values) and how many values entered (NaN values are left out)."""
    values = np.asarray(values, dtype=np.float64)
    names = np.array(labels, dtype=object)
    found = {}
    for label in sorted(set(labels)):
        rows = values[names == label]
        means, halves, counts = [], [], []
        for column in rows.T:
            present = column[~np.isnan(column)]
            n = int(present.size)
            means.append(float(present.mean()) if n else float("nan"))
            halves.append(t_critical(n - 1, level) * float(present.std(ddof=1)) / math.sqrt(n)
                          if n >= 2 else float("nan"))
            counts.append(n)
        found[label] = (np.array(means), np.array(halves), np.array(counts))
    return found
