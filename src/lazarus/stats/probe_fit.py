"""The probe's two methods as fits (`fit_batch`), the direction fitted on all prompts of one
layer, and what it says about prompts.

numpy only; nothing here prints. Everything measured here on the training prompts is
*in-sample* (the fit saw those prompts); only test prompts (`score_test`) are held out.

* Separation: Cohen's d of the projections x.direction, (mean_A - mean_B) / pooled standard
  deviation (each class ddof 1, pooled with n_A - 1 and n_B - 1 weights).
* Neuron importance: see `RANKING` and `neuron_importance`.
* Probability: logistic gives the fitted model's sigmoid. difference has no model of its own, so
  it uses the Gaussian one its midpoint rule implies: both classes normal along the direction
  with the observed means and the pooled standard deviation, equal priors, so
  logit = (m_A - m_B) / sd^2 * (p - (m_A + m_B) / 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lazarus.errors import LazarusError
from lazarus.stats.solver import coordinates, logistic_batch
from lazarus.text import plural

RANKING = ("separation lost when the neuron is left out of the direction "
           "(neurons' spreads taken as independent)")

_NO_SPREAD = 1e-6  # relative to the values' size: float32 rounding, not signal


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
    """The direction fitted on all prompts of one layer; its figures are in-sample.

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
    separation: float  # Cohen's d of the projections (see the module docstring), in-sample
    projections: np.ndarray  # [prompts] x.direction of the training prompts, class A first

    @property
    def hidden_size(self) -> int:
        return int(self.direction.shape[0])

    def top_neurons(self, k: int = 10) -> tuple[NeuronWeight, ...]:
        """The k most important neurons, best first; ties go to the lower id."""
        order = np.lexsort((np.arange(self.importance.shape[0]), -self.importance))
        return tuple(NeuronWeight(int(i), float(self.direction[i]), float(self.importance[i]))
                     for i in order[:k])


@dataclass(frozen=True)
class TestScore:
    """The fit applied to test prompts: held-out figures, except for the prompts marked
    `in_sample` (also training prompts), which are predicted but never counted as held out."""

    projections: np.ndarray  # [prompts] x.direction
    predictions: tuple[Prediction, ...]
    labels: tuple[str, ...] | None  # the true class of each prompt, when given
    correct: int | None  # held-out predictions that match `labels`
    in_sample: tuple[bool, ...] = ()  # per prompt: also a training prompt (empty: none is)

    @property
    def held_out(self) -> int:
        """How many of the prompts are held out (not training prompts)."""
        return len(self.predictions) - sum(self.in_sample)

    @property
    def accuracy(self) -> float | None:
        """The share of held-out prompts predicted right (None without labels or held-out
        prompts)."""
        if self.labels is None or not self.held_out:
            return None
        return (self.correct or 0) / self.held_out


def pooled_std(a: np.ndarray, b: np.ndarray) -> float:
    dof = a.size + b.size - 2
    if dof <= 0:
        return 0.0
    ss = np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)
    return float(np.sqrt(ss / dof))


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled standard deviation; +-inf when there is no spread."""
    with np.errstate(invalid="ignore"):
        gap = float(a.mean() - b.mean())
        sd = pooled_std(a, b)
    if not np.isfinite(gap) or not np.isfinite(sd):
        return float("nan")
    # A spread at the level of float32 rounding is no spread: d would be noise over noise.
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    if sd <= _NO_SPREAD * scale:
        return 0.0 if abs(gap) <= _NO_SPREAD * scale else float(np.copysign(np.inf, gap))
    return gap / sd


def fit_batch(z: np.ndarray, y: np.ndarray, train: np.ndarray, method: str,
              hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit P problems on coordinates z [n, r]; y and train are [P, n].

    Returns (u [P, r], threshold [P], slope [P]): u is unit length (or zero when nothing
    separates), class A is predicted when z.u > threshold, and logit(A) = slope * (z.u -
    threshold). `logistic` is the regression above; `difference` is mean(A) - mean(B) with the
    Gaussian model its midpoint rule implies.
    """
    if method == "logistic":
        beta, bias = logistic_batch(z, y, train, hidden)
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


def final_fit(rows: np.ndarray, is_a: np.ndarray, layer: int, method: str,
              labels: tuple[str, str]) -> ProbeFit:
    """The direction fitted on every prompt of the layer."""
    x = np.asarray(rows, dtype=np.float64)
    mean, z, basis = coordinates(x)
    everything = np.ones((1, x.shape[0]), dtype=bool)
    u, threshold, slope = fit_batch(z, is_a[None].astype(np.float64), everything, method,
                                    x.shape[1])
    direction = u[0].copy() if basis is None else basis @ u[0]  # [d]; unit length up to rounding
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
        separation=cohens_d(pa, pb),
        projections=proj,
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


def check_test_labels(labels: Sequence[str], label_a: str, label_b: str) -> None:
    """Each test label must name one of the two classes."""
    for position, label in enumerate(labels, start=1):
        if label not in (label_a, label_b):
            raise LazarusError(
                f"test label {position} is {label!r}, which is neither class ({label_a!r} or "
                f"{label_b!r}); give each test prompt one of the two class labels")


def score_test(fit: ProbeFit, rows: np.ndarray, labels: Sequence[str] | None = None,
               in_sample: Sequence[bool] = ()) -> TestScore:
    """Projections and predictions of test prompts [prompts, hidden] and, with their true
    labels, how many of the held-out ones the fit got right (a held-out accuracy); the prompts
    flagged `in_sample` (empty: none) are training prompts, and are not counted."""
    x = np.asarray(rows, dtype=np.float64).reshape(-1, fit.hidden_size)
    predictions = predict_rows(fit, x)
    seen = tuple(bool(flag) for flag in in_sample)
    if seen and len(seen) != len(predictions):
        raise ValueError("one in-sample flag per test prompt is needed")
    seen = seen if any(seen) else ()
    if labels is None:
        return TestScore(x @ fit.direction, predictions, None, None, seen)
    if len(labels) != len(predictions):
        raise LazarusError(f"got {plural(len(labels), 'test label')} for "
                           f"{plural(len(predictions), 'test prompt')} (give one label per "
                           "test prompt, in the same order)")
    check_test_labels(labels, fit.class_a.label, fit.class_b.label)
    flags = seen or (False,) * len(predictions)
    correct = sum(p.label == label for p, label, flag in zip(predictions, labels, flags,
                                                             strict=True) if not flag)
    return TestScore(x @ fit.direction, predictions, tuple(labels), int(correct), seen)
