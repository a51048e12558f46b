"""What "nothing found" rules out: the smallest effect a test would have detected with 80% power
at the counts it had (numpy only).

A test that rejects nothing says little unless it could have rejected something: with 8 + 8
prompts and hundreds of neurons, only a very large effect survives a family-wise correction.
Both tests here compare a statistic with the same resampled null (a bootstrap maximum, or the
best layer under shuffled labels); the statistic must exceed the value `critical_value` finds
for p < alpha, and the question is how large an effect puts it there 80% of the time.

- `--auto-discover` (`detectable_welch`): by simulation. Welch's F of one neuron whose values
  are normal with one spread in every label is drawn `DRAWS` times from its exact ingredients
  (each label's mean and variance), and the effect is found by bisection with the same draws
  throughout. With two labels the effect is Cohen's d; with more, eta-squared with the label
  means evenly spaced (for a given eta-squared, how the means are placed hardly changes the power).
- The probe (`detectable_accuracy`): a normal approximation. The held-out accuracy is taken as
  normal around its expected value A, with a standard deviation proportional to sqrt(A (1 - A))
  and fitted at A = 1/2 to the shuffled labellings' spread (which includes the fits' own noise).
  `accuracy_to_d` says the same in d of the held-out projection: accuracy Phi(d / 2), for normal
  projections with one spread in both classes and the threshold midway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

POWER = 0.8
DRAWS = 20_000
SEED = 0
WELCH_METHOD = ("by simulation of Welch's F for normal values with one spread in every label, "
                "against this run's critical value")
ACCURACY_METHOD = ("normal approximation: held-out accuracy normal around its mean, its spread "
                   "fitted to the shuffled labellings', against their critical best accuracy")
_STEPS = 50  # bisection steps: the effect to 2^-50 of its bracket


def critical_value(null: np.ndarray, alpha: float) -> float:
    """The value a statistic must exceed for p = (1 + null draws >= it) / (1 + draws) < alpha;
    inf when no statistic can (too few draws, or too many infinite ones)."""
    null = np.sort(np.asarray(null, dtype=np.float64))[::-1]
    counts = np.arange(null.size + 1)  # draws reaching it; the same float test as the p's
    allowed = int(np.sum((1 + counts) / (1 + null.size) < alpha)) - 1  # most that may
    if allowed < 0 or allowed >= null.size:
        return math.inf if allowed < 0 else -math.inf
    return float(null[allowed])


def _bisect(power_at, target: float, high: float, limit: float) -> float:
    """The smallest x in [0, limit] with power_at(x) >= target (power rising with x), or inf."""
    while power_at(high) < target:
        high *= 2
        if high > limit:
            return math.inf
    low = 0.0
    for _ in range(_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if power_at(middle) >= target else (middle, high)
    return high


def detectable_welch(critical: float, sizes: Sequence[int], *, power: float = POWER,
                     draws: int = DRAWS, seed: int = SEED) -> float:
    """The smallest effect whose Welch F exceeds `critical` with probability `power`, for
    labels of `sizes` prompts, normal values and one spread: Cohen's d with two labels,
    eta-squared (means evenly spaced) with more; inf when none does."""
    if not math.isfinite(critical):
        return math.inf if critical > 0 else 0.0
    sizes_ = np.asarray(sizes, dtype=np.float64)  # [g]
    groups = sizes_.size
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((draws, groups)) / np.sqrt(sizes_)  # each label mean's error
    variance = rng.chisquare(sizes_ - 1, size=(draws, groups)) / (sizes_ - 1)
    weight = sizes_ / variance  # [draws, g]: Welch's weights
    total = weight.sum(axis=1, keepdims=True)
    spread = ((1 - weight / total) ** 2 / (sizes_ - 1)).sum(axis=1)
    denominator = (groups - 1) * (1 + 2 * (groups - 2) * spread / (groups**2 - 1))
    # label means: step * pattern + noise; Welch's numerator is a quadratic in the step
    pattern = np.arange(groups) / (groups - 1)  # evenly spaced, 0 .. 1
    shape = pattern - (weight * pattern).sum(axis=1, keepdims=True) / total
    error = noise - (weight * noise).sum(axis=1, keepdims=True) / total
    square = (weight * shape**2).sum(axis=1) / denominator
    cross = 2 * (weight * shape * error).sum(axis=1) / denominator
    constant = (weight * error**2).sum(axis=1) / denominator

    def power_at(step: float) -> float:
        return float(np.mean(step * step * square + step * cross + constant > critical))

    step = _bisect(power_at, power, high=1.0, limit=1e6)
    if groups == 2 or not math.isfinite(step):
        return step
    means = step * pattern
    between = float(np.sum(sizes_ * (means - np.average(means, weights=sizes_)) ** 2)
                    / sizes_.sum())
    return between / (between + 1.0)


def detectable_accuracy(critical: float, null_sd: float, *, power: float = POWER) -> float:
    """The expected held-out accuracy A that exceeds `critical` with probability `power` when the
    accuracy is normal with sd `null_sd` * sqrt(A (1 - A)) / (1/2); inf when none does."""
    if not (math.isfinite(critical) and math.isfinite(null_sd)) or critical >= 1.0:
        return math.inf
    z = NormalDist().inv_cdf(power)

    def reached(accuracy: float) -> bool:
        return accuracy - z * 2 * null_sd * math.sqrt(accuracy * (1 - accuracy)) > critical

    low, high = max(critical, 0.0), 1.0
    for _ in range(_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if reached(middle) else (middle, high)
    return high


def accuracy_to_d(accuracy: float) -> float:
    """d of normal projections, one spread in both classes, whose midway threshold classifies
    `accuracy` of them right: 2 Phi^-1(accuracy)."""
    if not 0.0 < accuracy < 1.0:
        return math.inf if accuracy >= 1.0 else -math.inf
    return 2 * NormalDist().inv_cdf(accuracy)
