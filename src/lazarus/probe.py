"""Cross-validated linear probes per layer, a shuffled-label baseline, and the probe direction.

numpy only; nothing here prints. Rows of every activation matrix are prompts, class A first
(`count_a` rows), then class B; columns are the neurons of one layer, in raw units.

The fit
-------
`logistic` is an L2-penalised logistic regression on centred, *unscaled* activations:

    minimise  sum_i log(1 + exp(-s_i (w.x_i + b)))  +  (penalty / 2) |w|^2,
    penalty = mean over neurons of the neuron's variance (ddof 0) across the training prompts.

* Raw coordinates, not standardised ones: a neuron with a tiny spread could only matter through
  a huge weight, which the penalty forbids, so near-constant neurons never get inflated weights
  (a standardised fit mapped back to raw units divides by their spread and does exactly that).
  Centring means a dimension's magnitude (the huge residual dimensions of big models sit in the
  hundreds) plays no part, only its spread across prompts.
* The penalty is the mean neuron variance, so the fit is invariant to the overall scale of the
  activations (+-0.05 in a tiny model, hundreds in a big one: the same direction, the same
  accuracies). As a prior it is "ridge 1" in spread units: a neuron of typical spread, at one
  prior standard deviation of its weight, moves the logit by 1 per standard deviation of its
  activation. It is a prior per neuron, so it does not grow with the width of the layer, and it
  fades as prompts are added. (Simulations with planted signals, d = 64 and 2880, 3 to 100
  prompts per class, high-spread decoys: a 10x weaker penalty did about as well, a 10x stronger
  one worse; a penalty scaled by the total variance, i.e. d times stronger, drifted towards
  mean(A) - mean(B) and lost much accuracy when high-spread dimensions were present.)
* The solution lies in the span of the training prompts (w = X.T alpha), so each layer is reduced
  once to coordinates in an orthonormal basis of its prompts' span (from the n x n Gram matrix;
  exact, since the penalty is rotation invariant), and every fit, for every fold and shuffled
  labelling, is Newton's method on (alpha, bias): one (m + 1)-square solve per step for m
  training prompts, all folds and labellings of a layer batched together, with a backtracking
  line search. The objective is strictly convex, so the result is unique and deterministic.

`difference` is mean(A) - mean(B). Both directions are unit length in raw coordinates with
positive meaning class A.

Decisions written down once
---------------------------
* Folds: stratified, `min(MAX_FOLDS, smaller class)` of them, so each fold holds out at least
  one prompt of each class and, for tiny sets, exactly one of the smaller class (leave-one-out
  for it). Accuracy is the mean over folds, its spread the standard deviation (ddof 0) over
  folds. Held-out prompts are classified by the fold's fit: logistic by the sign of its logit,
  difference by which side of the midpoint between the training class means they fall.
* Baseline: the same cross-validation on `PERMUTATIONS` random relabellings that keep the class
  sizes; mean and standard deviation over relabellings. The folds, relabellings and everything
  else random come from one `numpy.random.default_rng(seed)`, shared by all layers.
* Separation: Cohen's d of the projections x.direction, (mean_A - mean_B) / pooled standard
  deviation (each class ddof 1, pooled with n_A - 1 and n_B - 1 weights).
* Best layer: see `TIE_BREAK`.
* Neuron importance: see `RANKING` and `neuron_importance`.
* Probability: logistic gives the fitted model's sigmoid. difference has no model of its own, so
  it uses the Gaussian one its midpoint rule implies: both classes normal along the direction
  with the observed means and the pooled standard deviation, equal priors, so
  logit = (m_A - m_B) / sd^2 * (p - (m_A + m_B) / 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lazarus.directions import Direction
from lazarus.errors import LazarusError

METHODS = ("logistic", "difference")
METHOD_SUMMARY = {
    "logistic": "L2-penalised logistic regression on centred raw activations, "
                "penalty = mean neuron variance",
    "difference": "mean(A) - mean(B) of the raw activations",
}
MAX_FOLDS = 5
PERMUTATIONS = 20
TIE_BREAK = ("highest mean accuracy; ties go to the larger held-out separation, "
             "then to the earlier layer")
RANKING = ("separation lost when the neuron is left out of the direction "
           "(neurons' spreads taken as independent)")

_NO_SPREAD = 1e-6  # relative to the values' size: float32 rounding, not signal
_SPAN_TOLERANCE = 1e-10  # components with variance below this share of the largest are dropped
_NEWTON_STEPS = 100
_NEWTON_TOLERANCE = 1e-18  # Newton decrement, in nats: stop when quadratic convergence is done
_FULL_STEP = 1e-8  # below this decrement a full Newton step is safe; rounding rules the
# objective's last digits, so a line search there would only stall
_BATCH_ELEMENTS = 4_000_000  # float64 elements per batch of Newton systems (32 MB)


@dataclass(frozen=True)
class LayerScore:
    """Cross-validated results at one layer."""

    layer: int
    accuracy: float  # mean over folds
    accuracy_std: float  # standard deviation over folds (ddof 0)
    baseline: float  # shuffled-label accuracy, mean over relabellings
    baseline_std: float  # standard deviation over relabellings (ddof 0)
    heldout_separation: float  # Cohen's d of the held-out prompts' projections (tie-break)


@dataclass(frozen=True)
class ClassProjection:
    """mean and standard deviation (ddof 1) of x.direction over one class's prompts."""

    label: str
    count: int
    mean: float
    std: float


@dataclass(frozen=True)
class NeuronWeight:
    neuron: int
    weight: float  # coordinate of the unit direction; > 0 means higher = more like class A
    importance: float  # see RANKING


@dataclass(frozen=True)
class Prediction:
    label: str  # the more probable class
    probability: float  # of that label
    probability_a: float  # of class A


@dataclass(frozen=True)
class ProbeFit:
    """The direction fitted on all prompts of one layer.

    The classifier is logit(A) = slope * (x . direction) + intercept.
    """

    layer: int
    method: str
    direction: np.ndarray  # [hidden], unit length, raw coordinates, float64
    importance: np.ndarray  # [hidden], see RANKING
    slope: float
    intercept: float
    class_a: ClassProjection
    class_b: ClassProjection
    separation: float  # Cohen's d of the projections (see the module docstring)

    @property
    def hidden_size(self) -> int:
        return int(self.direction.shape[0])

    def top_neurons(self, k: int = 10) -> tuple[NeuronWeight, ...]:
        """The k most important neurons, best first; ties go to the lower id."""
        order = np.lexsort((np.arange(self.importance.shape[0]), -self.importance))
        return tuple(NeuronWeight(int(i), float(self.direction[i]), float(self.importance[i]))
                     for i in order[:k])


@dataclass(frozen=True)
class ProbeReport:
    method: str
    label_a: str
    label_b: str
    count_a: int
    count_b: int
    folds: int
    permutations: int
    seed: int
    layers: tuple[LayerScore, ...]  # in layer order
    best_layer: int
    fit: ProbeFit  # at best_layer
    tie_break: str = TIE_BREAK
    ranking: str = RANKING

    def score(self, layer: int) -> LayerScore:
        for row in self.layers:
            if row.layer == layer:
                return row
        raise KeyError(layer)

    @property
    def best(self) -> LayerScore:
        return self.score(self.best_layer)


@dataclass(frozen=True)
class LogisticFit:
    """A logistic model in raw coordinates: logit(A) = weights . x + bias."""

    weights: np.ndarray  # [hidden], not normalised
    bias: float
    penalty: float  # the L2 strength that was used


# ---------------------------------------------------------------------------------------------
# checks


def fold_count(count_a: int, count_b: int) -> int:
    return min(MAX_FOLDS, count_a, count_b)


def check_classes(count_a: int, count_b: int, label_a: str = "A", label_b: str = "B") -> None:
    """Each class needs two prompts: one to hold out and one to train on."""
    for label, count, option in ((label_a, count_a, "--class-a"), (label_b, count_b, "--class-b")):
        if count < 2:
            raise LazarusError(
                f"class {label!r} has {count} prompt{'s' if count != 1 else ''}; a probe needs "
                f"at least 2 per class to cross-validate (add prompts to {option}, e.g. 'a|b|c')"
            )


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise LazarusError(f"unknown probe method {method!r} (use one of: {', '.join(METHODS)})")


# ---------------------------------------------------------------------------------------------
# the fit in span coordinates


def _span_basis(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre the rows and express them in an orthonormal basis of their span.

    Returns (mean [d], coordinates z [n, r], back [n, r]); the basis vectors are the columns of
    `(rows - mean).T @ back` ([d, r]), so a direction u in z coordinates is that matrix @ u.
    Built from the n x n Gram matrix, which is far cheaper than an SVD when d >> n.
    """
    x = np.asarray(rows, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    values, vectors = np.linalg.eigh(centred @ centred.T)  # [n], [n, n]
    top = values[-1] if values.size else 0.0
    keep = values > top * _SPAN_TOLERANCE if top > 0 else np.zeros(values.shape, dtype=bool)
    singular = np.sqrt(values[keep])
    return mean, vectors[:, keep] * singular, vectors[:, keep] / singular


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # no overflow warnings


def _logistic_batch(z: np.ndarray, y: np.ndarray, train: np.ndarray,
                    hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Many penalised logistic regressions sharing the features z [n, r].

    Problem p is fitted on the rows where train[p] is True with labels y[p] (both [P, n]); its
    penalty is the mean neuron variance of those rows (see the module docstring). Returns
    beta [P, r] and bias [P]: logit = z.beta + bias. Problems with the same number of training
    rows are solved together.
    """
    beta = np.zeros((y.shape[0], z.shape[1]))
    bias = np.zeros(y.shape[0])
    counts = train.sum(axis=1)
    gram = z @ z.T  # [n, n]
    for m in np.unique(counts):
        group = np.flatnonzero(counts == m)
        rows = np.nonzero(train[group])[1].reshape(group.size, m)  # [k, m] training rows
        sub = gram[rows[:, :, None], rows[:, None, :]]  # [k, m, m]
        centre = z[rows].mean(axis=1)  # [k, r]
        spread = np.trace(sub, axis1=1, axis2=2) - m * np.sum(centre * centre, axis=1)
        penalty = np.maximum(spread, 0.0) / (m * hidden)
        alpha, bias[group] = _newton_dual(sub, np.take_along_axis(y[group], rows, 1), penalty)
        beta[group] = np.einsum("km,kmr->kr", alpha, z[rows])
    return beta, bias


def _newton_dual(gram: np.ndarray, y: np.ndarray,
                 penalty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k penalised logistic regressions given their Gram matrices [k, m, m] and labels [k, m].

    At the optimum the weights are a combination of the training rows, beta = z.T @ alpha, so
    Newton's method runs on (alpha, bias): each step solves an (m + 1)-square system, with a
    backtracking line search per problem. Returns alpha [k, m] and bias [k].
    """
    k, m = y.shape
    share = y.mean(axis=1)
    alpha = np.zeros((k, m))
    bias = np.log(share / (1.0 - share))

    def objective(a_: np.ndarray, c_: np.ndarray, which: np.ndarray) -> np.ndarray:
        f = np.einsum("km,kmj->kj", a_, gram[which])
        logit = f + c_[:, None]
        loss = np.logaddexp(0.0, logit) - y[which] * logit
        return loss.sum(axis=1) + 0.5 * penalty[which] * np.sum(a_ * f, axis=1)

    active = np.flatnonzero(penalty > 0)  # no spread: nothing to fit, keep the prior
    current = np.zeros(k)
    current[active] = objective(alpha[active], bias[active], active)
    diagonal = np.arange(m)
    for _ in range(_NEWTON_STEPS):
        if active.size == 0:
            break
        g, lam = gram[active], penalty[active]
        f = np.einsum("km,kmj->kj", alpha[active], g)
        p = _sigmoid(f + bias[active, None])
        w = p * (1.0 - p)  # [a, m]
        residual = p - y[active]
        # [lam I + W K, W 1; 1'W K, 1'W 1] [d_alpha; d_bias] = [residual + lam alpha; sum residual]
        system = np.empty((active.size, m + 1, m + 1))
        system[:, :m, :m] = w[:, :, None] * g
        system[:, diagonal, diagonal] += lam[:, None]
        system[:, :m, m] = w
        system[:, m, :m] = np.einsum("km,kmj->kj", w, g)
        system[:, m, m] = np.maximum(w.sum(axis=1), 1e-12)
        gradient = residual + lam[:, None] * alpha[active]  # the primal gradient is z.T @ this
        rhs = np.concatenate([gradient, residual.sum(axis=1)[:, None]], axis=1)
        try:
            step = np.linalg.solve(system, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:  # duplicate prompts can make the system singular
            step = (np.linalg.pinv(system) @ rhs[..., None])[..., 0]
        decrement = (np.einsum("km,kmj,kj->k", gradient, g, step[:, :m])
                     + residual.sum(axis=1) * step[:, m])  # primal gradient . primal step
        moving = decrement > _NEWTON_TOLERANCE
        active, step, decrement = active[moving], step[moving], decrement[moving]
        t = np.ones(active.size)
        for _ in range(40):  # backtracking, per problem, until the step is already quadratic
            new_alpha = alpha[active] - t[:, None] * step[:, :m]
            new_bias = bias[active] - t * step[:, m]
            new = objective(new_alpha, new_bias, active)
            short = (new > current[active] - 0.25 * t * decrement) & (decrement > _FULL_STEP)
            if not short.any():
                break
            t[short] *= 0.5
        alpha[active], bias[active], current[active] = new_alpha, new_bias, new
    return alpha, bias


def _fit_batch(z: np.ndarray, y: np.ndarray, train: np.ndarray, method: str,
               hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit P problems on span coordinates z [n, r]; y and train are [P, n].

    Returns (u [P, r], threshold [P], slope [P]): u is unit length (or zero when nothing
    separates), class A is predicted when z.u > threshold, and logit(A) = slope * (z.u -
    threshold).
    """
    if method == "logistic":
        beta, bias = _logistic_batch(z, y, train, hidden)
        slope = np.linalg.norm(beta, axis=1)
        safe = np.where(slope > 0, slope, 1.0)
        u = beta / safe[:, None]
        threshold = np.where(slope > 0, -bias / safe, np.where(bias > 0, -np.inf, np.inf))
        return u, threshold, slope
    in_a = train & (y == 1)
    in_b = train & (y == 0)
    mean_a = in_a @ z / in_a.sum(axis=1, keepdims=True)
    mean_b = in_b @ z / in_b.sum(axis=1, keepdims=True)
    gap = mean_a - mean_b
    norm = np.linalg.norm(gap, axis=1)
    u = gap / np.where(norm > 0, norm, 1.0)[:, None]
    proj = u @ z.T  # [P, n]
    middle = (np.sum(u * (mean_a + mean_b), axis=1)) / 2
    ss = (in_a * (proj - np.sum(u * mean_a, axis=1, keepdims=True)) ** 2
          + in_b * (proj - np.sum(u * mean_b, axis=1, keepdims=True)) ** 2).sum(axis=1)
    sd = np.sqrt(ss / np.maximum(train.sum(axis=1) - 2, 1))
    sd = np.maximum(sd, 1e-9 * norm)  # a perfect separator: a very steep, finite slope
    slope = np.where(norm > 0, norm / np.where(sd > 0, sd, 1.0) ** 2, 0.0)
    threshold = np.where(norm > 0, middle, np.inf)
    return u, threshold, slope


def _pooled_std(a: np.ndarray, b: np.ndarray) -> float:
    dof = a.size + b.size - 2
    if dof <= 0:
        return 0.0
    ss = np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)
    return float(np.sqrt(ss / dof))


def _cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled standard deviation; +-inf when there is no spread."""
    with np.errstate(invalid="ignore"):
        gap = float(a.mean() - b.mean())
        sd = _pooled_std(a, b)
    if not np.isfinite(gap) or not np.isfinite(sd):
        return float("nan")
    # A spread at the level of float32 rounding is no spread: d would be noise over noise.
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    if sd <= _NO_SPREAD * scale:
        return 0.0 if abs(gap) <= _NO_SPREAD * scale else float(np.copysign(np.inf, gap))
    return gap / sd


def fit_logistic(rows: np.ndarray, is_a: np.ndarray) -> LogisticFit:
    """The `logistic` fit on all rows [n, d], in raw coordinates."""
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(is_a, dtype=bool)[None].astype(np.float64)
    mean, z, back = _span_basis(x)
    beta, bias = _logistic_batch(z, y, np.ones(y.shape, dtype=bool), x.shape[1])
    weights = (x - mean).T @ (back @ beta[0])
    penalty = float(np.sum(z * z)) / (x.shape[0] * x.shape[1])
    # z has zero column means (the rows were centred), so logit = beta.z + bias
    return LogisticFit(weights, float(bias[0] - weights @ mean), penalty)


# ---------------------------------------------------------------------------------------------
# cross-validation


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
class _Plan:
    """Every fit of the cross-validation: labelling 0 is the real one, the rest are shuffled."""

    labels: np.ndarray  # [P, n] bool, class A
    train: np.ndarray  # [P, n] bool
    labelling: np.ndarray  # [P] which labelling each problem belongs to
    folds: int


def _plan(is_a: np.ndarray, folds: int, permutations: int, seed: int) -> _Plan:
    rng = np.random.default_rng(seed)
    labellings = [(is_a, stratified_folds(is_a, folds, rng))]
    for _ in range(permutations):
        shuffled = rng.permutation(is_a)
        labellings.append((shuffled, stratified_folds(shuffled, folds, rng)))
    labels, train, which = [], [], []
    for index, (labelling, assignment) in enumerate(labellings):
        for fold in range(folds):
            labels.append(labelling)
            train.append(assignment != fold)
            which.append(index)
    return _Plan(np.array(labels), np.array(train), np.array(which), folds)


def _cross_validate(z: np.ndarray, plan: _Plan, method: str,
                    hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of every problem on its held-out prompts, and the real labelling's held-out
    margins (projection minus threshold, in activation units) per prompt."""
    y = plan.labels.astype(np.float64)
    margins = np.empty(plan.labels.shape)
    chunk = max(1, _BATCH_ELEMENTS // (z.shape[0] + 1) ** 2)
    for start in range(0, plan.labels.shape[0], chunk):
        part = slice(start, start + chunk)
        u, threshold, _ = _fit_batch(z, y[part], plan.train[part], method, hidden)
        margins[part] = u @ z.T - threshold[:, None]
    test = ~plan.train
    correct = (margins > 0) == plan.labels
    accuracy = np.sum(correct & test, axis=1) / np.sum(test, axis=1)
    real = plan.labelling == 0
    heldout = np.sum(np.where(test[real], margins[real], 0.0), axis=0)  # each prompt held out once
    return accuracy, heldout


def _final_fit(rows: np.ndarray, is_a: np.ndarray, layer: int, method: str,
               labels: tuple[str, str]) -> ProbeFit:
    x = np.asarray(rows, dtype=np.float64)
    mean, z, back = _span_basis(x)
    everything = np.ones((1, x.shape[0]), dtype=bool)
    u, threshold, slope = _fit_batch(z, is_a[None].astype(np.float64), everything, method,
                                     x.shape[1])
    direction = (x - mean).T @ (back @ u[0])  # [d]; unit length up to rounding
    norm = float(np.linalg.norm(direction))
    if norm == 0:
        raise LazarusError(
            f"the prompts' activations at layer {layer} do not separate the classes at all, so "
            "there is no direction to fit (give prompts that differ, or choose another layer)")
    direction /= norm
    # logit = slope * (z.u - threshold), and z.u = norm * (x - mean).direction
    raw_slope = float(slope[0]) * norm
    intercept = -raw_slope * float(mean @ direction) - float(slope[0] * threshold[0])
    proj = x @ direction
    pa, pb = proj[is_a], proj[~is_a]
    return ProbeFit(
        layer=layer,
        method=method,
        direction=direction,
        importance=neuron_importance(x, is_a, direction),
        slope=raw_slope,
        intercept=intercept,
        class_a=ClassProjection(labels[0], pa.size, float(pa.mean()), float(pa.std(ddof=1))),
        class_b=ClassProjection(labels[1], pb.size, float(pb.mean()), float(pb.std(ddof=1))),
        separation=_cohens_d(pa, pb),
    )


def neuron_importance(rows: np.ndarray, is_a: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """How much the direction's class separation falls when one neuron is left out of it.

    With weight w_i, class-mean gap D_i = mean_A - mean_B and pooled within-class variance v_i
    for neuron i, the projection's gap is G = sum w_i D_i and, taking neurons as independent, its
    variance is V = sum w_i^2 v_i, so its separation is S = G / sqrt(V). The importance of i is
    S - (G - w_i D_i) / sqrt(V - w_i^2 v_i).

    Large and positive for a neuron whose gap is big next to its own spread; about zero for a
    near-constant neuron (its raw weight and gap are both tiny); small or negative for a
    high-spread neuron whose gap is chance (it adds more spread than gap). Dimensionless, so it
    does not depend on the activations' scale. The independence assumption is what keeps the
    in-sample spread, which a fit on few prompts drives down, from dominating the score.
    """
    x = np.asarray(rows, dtype=np.float64)
    a, b = x[is_a], x[~is_a]
    w = np.asarray(direction, dtype=np.float64)
    gap = a.mean(axis=0) - b.mean(axis=0)
    dof = max(x.shape[0] - 2, 1)
    variance = (np.sum((a - a.mean(axis=0)) ** 2, axis=0)
                + np.sum((b - b.mean(axis=0)) ** 2, axis=0)) / dof
    share = w * gap
    spread = w * w * variance
    total_gap, total_spread = float(share.sum()), float(spread.sum())
    floor = 1e-12 * total_spread
    if total_spread <= 0:
        # no within-class spread at all: fall back to each neuron's share of the gap
        return share / abs(total_gap) if total_gap else np.zeros_like(share)
    rest = np.maximum(total_spread - spread, floor)
    return total_gap / np.sqrt(total_spread) - (total_gap - share) / np.sqrt(rest)


# ---------------------------------------------------------------------------------------------
# the whole probe


def probe_layers(
    activations: Mapping[int, np.ndarray],
    count_a: int,
    *,
    method: str = "logistic",
    label_a: str = "A",
    label_b: str = "B",
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> ProbeReport:
    """Probe every layer of `activations` ({layer: [prompts, hidden]}, class A rows first)."""
    _check_method(method)
    if not activations:
        raise ValueError("no layers to probe")
    layers = sorted(activations)
    total = activations[layers[0]].shape[0]
    count_b = total - count_a
    check_classes(count_a, count_b, label_a, label_b)
    for layer in layers:
        rows = activations[layer]
        if rows.ndim != 2 or rows.shape[0] != total:
            raise ValueError(f"layer {layer}: expected [{total}, hidden], got {rows.shape}")
        if not np.all(np.isfinite(rows)):
            raise LazarusError(
                f"activations at layer {layer} contain NaN or infinite values (load the model "
                "in float32 or bfloat16 instead of float16)")

    is_a = np.arange(total) < count_a
    folds = fold_count(count_a, count_b)
    plan = _plan(is_a, folds, permutations, seed)
    real = plan.labelling == 0
    scores = []
    for layer in layers:
        rows = activations[layer]
        _, z, _ = _span_basis(rows)
        accuracy, margins = _cross_validate(z, plan, method, rows.shape[1])
        baseline = np.array([accuracy[plan.labelling == i].mean()
                             for i in range(1, permutations + 1)])
        scores.append(LayerScore(
            layer=int(layer),
            accuracy=float(accuracy[real].mean()),
            accuracy_std=float(accuracy[real].std()),
            baseline=float(baseline.mean()) if permutations else float("nan"),
            baseline_std=float(baseline.std()) if permutations else float("nan"),
            heldout_separation=_cohens_d(margins[is_a], margins[~is_a]),
        ))

    best = choose_layer(scores)
    fit = _final_fit(activations[best.layer], is_a, best.layer, method, (label_a, label_b))
    return ProbeReport(
        method=method, label_a=label_a, label_b=label_b, count_a=count_a, count_b=count_b,
        folds=folds, permutations=permutations, seed=seed, layers=tuple(scores),
        best_layer=best.layer, fit=fit,
    )


def choose_layer(scores: list[LayerScore] | tuple[LayerScore, ...]) -> LayerScore:
    """The rule in `TIE_BREAK`; accuracies equal to 1e-9 count as tied.

    A layer where some fold found no direction at all (its held-out separation is NaN: the
    prompts' activations there do not differ) is chosen only if every layer is like that.
    """
    usable = [s for s in scores if not math.isnan(s.heldout_separation)] or list(scores)
    return min(usable, key=lambda s: (-round(s.accuracy, 9), -s.heldout_separation, s.layer))


def predict(fit: ProbeFit, x: np.ndarray) -> Prediction:
    """Class and probability for one prompt's activations [hidden] at the fit's layer."""
    label_a, label_b = fit.class_a.label, fit.class_b.label
    logit = fit.slope * float(np.asarray(x, dtype=np.float64) @ fit.direction) + fit.intercept
    probability_a = float(0.5 * (1.0 + np.tanh(0.5 * logit)))
    if probability_a > 0.5:
        return Prediction(label_a, probability_a, probability_a)
    return Prediction(label_b, 1.0 - probability_a, probability_a)


def predict_rows(fit: ProbeFit, rows: np.ndarray) -> tuple[Prediction, ...]:
    return tuple(predict(fit, row) for row in np.asarray(rows))


def to_direction(report: ProbeReport, model_id: str | None = None, site: str = "resid_post",
                 position: str = "last") -> Direction:
    """The chosen layer's direction, ready for `lazarus.directions.save_direction`."""
    fit, best = report.fit, report.best
    return Direction(
        direction=fit.direction.astype(np.float32),
        layer=fit.layer,
        label_positive=report.label_a,
        label_negative=report.label_b,
        model_id=model_id,
        method=report.method,
        importance=fit.importance.astype(np.float32),
        ranking=report.ranking,
        site=site,
        position=position,
        metrics={
            "accuracy": best.accuracy,
            "accuracy_std": best.accuracy_std,
            "baseline_accuracy": best.baseline,
            "baseline_accuracy_std": best.baseline_std,
            "separation": fit.separation,
            "class_a_mean_projection": fit.class_a.mean,
            "class_b_mean_projection": fit.class_b.mean,
            "class_a_std_projection": fit.class_a.std,
            "class_b_std_projection": fit.class_b.std,
        },
    )
