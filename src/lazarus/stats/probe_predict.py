"""What the probe's fitted direction says about prompts: each one's class, probability and
projection, and for test prompts with their true labels the held-out accuracy, plain and
balanced.

numpy only; nothing here prints. Test prompts are held out, except those flagged in-sample
(also training prompts), which are predicted but never counted.

* Decision: class A when the projection x.direction is above the fit's `threshold` t, class B
  otherwise; t is where the fitted probability of A is 50% (logistic: where its logit is 0,
  which with unequal classes lies nearer the smaller class's mean; difference: the midpoint of
  the class means). So a positive projection is not necessarily class A: "positive = A" names
  the direction's sign, t the boundary.
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
from lazarus.stats.probe_fit import ProbeFit
from lazarus.text import plural


@dataclass(frozen=True)
class Prediction:
    label: str  # the more probable class
    probability: float  # of that label
    probability_a: float  # of class A


@dataclass(frozen=True)
class TestScore:
    """The fit applied to test prompts: held-out figures, except for the prompts marked
    `in_sample` (also training prompts), which are predicted but never counted as held out."""

    projections: np.ndarray  # [prompts] x.direction
    predictions: tuple[Prediction, ...]
    labels: tuple[str, ...] | None  # the true class of each prompt, when given
    correct: int | None  # held-out predictions that match `labels`
    in_sample: tuple[bool, ...] = ()  # per prompt: also a training prompt (empty: none is)
    classes: tuple[str, str] = ("A", "B")  # the fit's two class labels, A first
    threshold: float = float("nan")  # the fit's: class A above it (see `ProbeFit.threshold`)

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

    def recalls(self) -> tuple[tuple[str, int, int], ...]:
        """(class, predicted right, prompts) for each class among the held-out prompts' true
        labels, A first."""
        if self.labels is None:
            return ()
        flags = self.in_sample or (False,) * len(self.predictions)
        rows = []
        for name in self.classes:
            chosen = [p.label for p, true, seen in zip(self.predictions, self.labels, flags,
                                                       strict=True) if true == name and not seen]
            if chosen:
                rows.append((name, sum(label == name for label in chosen), len(chosen)))
        return tuple(rows)

    @property
    def balanced_accuracy(self) -> float | None:
        """The mean of the two classes' recall; None unless both classes are among the labels."""
        recalls = self.recalls()
        if len(recalls) != 2:
            return None
        return sum(right / count for _, right, count in recalls) / 2


def decide(fit: ProbeFit, projection: float) -> Prediction:
    """Class and probability for a prompt whose projection x.direction is `projection`.

    The label comes from comparing the projection with the threshold itself, so that it always
    agrees with the projection and threshold shown (a probability within rounding of 50% could
    not say which side it is on)."""
    label_a, label_b = fit.class_a.label, fit.class_b.label
    probability_a = float(0.5 * (1.0 + np.tanh(0.5 * fit.slope * (projection - fit.threshold))))
    if projection > fit.threshold:
        return Prediction(label_a, probability_a, probability_a)
    return Prediction(label_b, 1.0 - probability_a, probability_a)


def predict(fit: ProbeFit, x: np.ndarray) -> Prediction:
    """Class and probability for one prompt's activations [hidden] at the fit's layer."""
    return predict_rows(fit, np.asarray(x).reshape(1, -1))[0]


def predict_rows(fit: ProbeFit, rows: np.ndarray) -> tuple[Prediction, ...]:
    projections = np.asarray(rows, dtype=np.float64) @ fit.direction
    return tuple(decide(fit, float(p)) for p in projections)


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
    projections = np.asarray(rows, dtype=np.float64).reshape(-1, fit.hidden_size) @ fit.direction
    predictions = tuple(decide(fit, float(p)) for p in projections)
    fit_of = {"classes": (fit.class_a.label, fit.class_b.label), "threshold": fit.threshold}
    seen = tuple(bool(flag) for flag in in_sample)
    if seen and len(seen) != len(predictions):
        raise ValueError("one in-sample flag per test prompt is needed")
    seen = seen if any(seen) else ()
    if labels is None:
        return TestScore(projections, predictions, None, None, seen, **fit_of)
    if len(labels) != len(predictions):
        raise LazarusError(f"got {plural(len(labels), 'test label')} for "
                           f"{plural(len(predictions), 'test prompt')} (give one label per "
                           "test prompt, in the same order)")
    check_test_labels(labels, fit.class_a.label, fit.class_b.label)
    flags = seen or (False,) * len(predictions)
    correct = sum(p.label == label for p, label, flag in zip(predictions, labels, flags,
                                                             strict=True) if not flag)
    return TestScore(projections, predictions, tuple(labels), int(correct), seen, **fit_of)
