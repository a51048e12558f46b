"""Cross-validation of the probe: stratified folds, and every fit of the layer search (the real
labelling and each shuffled one, fold by fold) scored on the prompts it held out.

numpy only. Rows are prompts, class A first, then class B; the fits are `lazarus.stats.probe_fit`'s
`fit_batch`, run in batches of problems that share one layer's rows. What the accuracies mean
for the layer search and its permutation test is `lazarus.stats.probe`'s.

* Folds: stratified, `min(MAX_FOLDS, smaller class)` of them, so each fold holds out at least
  one prompt of each class and, for tiny sets, exactly one of the smaller class (leave-one-out
  for it). Accuracy is held out and balanced: in each fold, the mean of the two classes'
  recall (the share of its held-out A prompts the fold's fit calls A, and of its B prompts it
  calls B; logistic by the sign of its logit, difference by the side of the midpoint between
  the training class means), so a rule that ignores the activations scores 50% whatever the
  class sizes; then the mean over folds, its spread the standard deviation (ddof 0) over folds.
  When every fold holds out as many A as B prompts (equal classes whose size is a multiple of
  the fold count: 2 + 2 to 5 + 5, 10 + 10, ...) it is the plain accuracy, bit for bit; a fold
  of 2 A + 1 B (6 + 6, 8 + 8, ...) weighs its two classes equally, not its three prompts.
* Shuffles: `permutations` random relabellings that keep the class sizes, each cross-validated
  exactly like the real labels (folds re-drawn per labelling). One
  `numpy.random.default_rng(seed)` draws the folds and relabellings, shared by all layers, so
  shuffle i means the same relabelling at every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lazarus.stats.probe_fit import fit_batch
from lazarus.stats.solver import BATCH_ELEMENTS, coordinates

MAX_FOLDS = 5


def fold_count(count_a: int, count_b: int) -> int:
    return min(MAX_FOLDS, count_a, count_b)


def stratified_folds(is_a: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number per prompt: each class shuffled, then dealt round-robin across the folds."""
    assignment = np.empty(is_a.shape[0], dtype=np.int64)
    start = 0
    for members in (np.flatnonzero(is_a), np.flatnonzero(~is_a)):
        order = rng.permutation(members)
        assignment[order] = (start + np.arange(order.size)) % folds
        start = (start + order.size) % folds
    return assignment


@dataclass(frozen=True)
class Plan:
    """Every fit of the cross-validation: labelling 0 is the real one, the rest are shuffled."""

    labels: np.ndarray  # [P, n] bool, class A
    train: np.ndarray  # [P, n] bool
    labelling: np.ndarray  # [P] which labelling each problem belongs to
    folds: int


def plan_fits(is_a: np.ndarray, folds: int, permutations: int, seed: int) -> Plan:
    """The real labelling and `permutations` shuffled ones, each with its own folds."""
    rng = np.random.default_rng(seed)
    labellings = [(is_a, stratified_folds(is_a, folds, rng))]
    for _ in range(permutations):
        shuffled = rng.permutation(is_a)
        labellings.append((shuffled, stratified_folds(shuffled, folds, rng)))
    labels = np.repeat(np.array([lab for lab, _ in labellings]), folds, axis=0)
    assignment = np.repeat(np.array([fold for _, fold in labellings]), folds, axis=0)
    fold = np.tile(np.arange(folds), len(labellings))
    return Plan(labels, assignment != fold[:, None],
                np.repeat(np.arange(len(labellings)), folds), folds)


def balanced_accuracy(right: np.ndarray, is_a: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Mean of the two classes' recall over the `scored` prompts of each row ([k, n] bools in,
    [k] out): (right_A / n_A + right_B / n_B) / 2, written as one division of whole numbers,
    (right_A n_B + right_B n_A) / (2 n_A n_B), so that with n_A = n_B it is bit for bit
    (right_A + right_B) / (n_A + n_B), the plain accuracy."""
    n_a = np.sum(scored & is_a, axis=1).astype(np.float64)
    n_b = np.sum(scored & ~is_a, axis=1).astype(np.float64)
    right_a = np.sum(right & scored & is_a, axis=1).astype(np.float64)
    right_b = np.sum(right & scored & ~is_a, axis=1).astype(np.float64)
    return (right_a * n_b + right_b * n_a) / (2.0 * n_a * n_b)


def cross_validate(rows: np.ndarray, plan: Plan, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Held-out balanced accuracy of every problem as [labellings, folds], and the real
    labelling's held-out margins (projection minus threshold) per prompt [n]."""
    _, z, _ = coordinates(rows)
    test = ~plan.train
    correct = np.empty(plan.labels.shape[0])
    heldout = np.zeros(z.shape[0])
    chunk = max(1, BATCH_ELEMENTS // z.shape[0])
    for start in range(0, plan.labels.shape[0], chunk):
        part = slice(start, start + chunk)
        u, threshold, _ = fit_batch(z, plan.labels[part].astype(np.float64), plan.train[part],
                                    method, rows.shape[1])
        margins = u @ z.T - threshold[:, None]  # [k, n]
        right = (margins > 0) == plan.labels[part]
        correct[part] = balanced_accuracy(right, plan.labels[part], test[part])
        real = plan.labelling[part] == 0  # each prompt is held out once
        heldout += np.sum(np.where(test[part][real], margins[real], 0.0), axis=0)
    return correct.reshape(-1, plan.folds), heldout
