"""The probe's protocol: cross-validated probes per layer, a permutation test of the whole layer
search, and the direction of the chosen layer.

numpy only; nothing here prints. Rows of every activation matrix are prompts, class A first
(`count_a` rows), then class B; columns are the neurons of one layer, in raw units. The folds,
shuffles and held-out scores are `lazarus.stats.folds`'s; the fits themselves (`logistic`,
`difference`) are `lazarus.stats.solver`'s; the direction fitted on all prompts and its in-sample
figures are `lazarus.stats.probe_fit`'s, its predictions `lazarus.stats.probe_predict`'s.

Decisions written down once
---------------------------
* Folds and shuffles: see `lazarus.stats.folds`.
* Score (`SCORE`): balanced accuracy, the mean of the two classes' recall in each held-out
  fold, so that chance is `CHANCE` = 50% whatever the class sizes (plain accuracy rewards
  always naming the larger class: 80% at 5 + 20 prompts). It is the score of every layer, of
  every shuffle, of the layer choice and of the test of the whole search.
* Per-layer baseline ("Shuffled"): the mean and standard deviation over shuffles of that
  layer's accuracy. It is what one layer scores by chance, not what the best of several does.
* The test of the whole search: for each shuffle, the best accuracy over all the layers
  searched is what the whole procedure would have reported by chance. The p-value of the chosen
  layer is p = (1 + #{shuffles whose best accuracy >= the observed best accuracy}) / (1 + N):
  the chance that pure label noise produces a best layer at least this good. The layer is
  significant when p < alpha; otherwise no layer is marked best and the direction is not for
  saving (`to_direction` refuses unless forced).
* Smallest possible p: max(1 / (1 + N), 1 / K), K the number of distinct ways to split the
  prompts into two groups of the class sizes (halved when the sizes are equal, since swapping
  the names changes nothing): a shuffle that reproduces the real split ties with it, so with
  few prompts the test cannot get below 1 / K however many shuffles run. When it is >= alpha,
  no result can be significant, and the report says so.
* Layer choice: see `TIE_BREAK`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lazarus.errors import LazarusError
from lazarus.io.directions import Direction
from lazarus.stats.folds import cross_validate, fold_count, plan_fits
from lazarus.stats.probe_fit import (
    RANKING,
    ClassProjection,
    NeuronWeight,
    ProbeFit,
    cohens_d,
    final_fit,
    neuron_importance,
)
from lazarus.stats.probe_predict import (
    Prediction,
    TestScore,
    check_test_labels,
    predict,
    predict_rows,
    score_test,
)
from lazarus.stats.solver import LogisticFit, fit_logistic
from lazarus.text import plural

__all__ = [
    "ALPHA", "CHANCE", "METHODS", "METHOD_SUMMARY", "PERMUTATIONS", "RANKING", "SCORE",
    "TIE_BREAK",
    "ClassProjection", "LayerScore", "LogisticFit", "NeuronWeight", "Prediction", "ProbeFit",
    "ProbeReport", "TestScore", "check_classes", "check_test_labels", "choose_layer",
    "fit_logistic", "neuron_importance", "predict", "predict_rows",
    "probe_layers", "score_test", "smallest_p", "to_direction",
]

METHODS = ("logistic", "difference")
METHOD_SUMMARY = {
    "logistic": "L2-penalised logistic regression on centred raw activations, "
                "penalty = mean neuron variance",
    "difference": "mean(A) - mean(B) of the raw activations",
}
PERMUTATIONS = 200  # smallest p 1/201 < 0.005; 10,000 prompts x 4 layers of 192 in ~15 s
MAX_PERMUTATIONS = 100_000  # memory and time grow with it; p can reach 1e-5 already
ALPHA = 0.05
SCORE = ("balanced accuracy: the mean of the two classes' recall in each held-out fold, "
         "so chance is 50% whatever the class sizes")
CHANCE = 0.5  # the balanced accuracy of any rule that ignores the activations
TIE_BREAK = ("highest mean balanced accuracy; ties go to the larger held-out separation, "
             "then to the earlier layer")
_TIED = 1e-9  # accuracies this close are equal (means of fractions, rounded differently)


@dataclass(frozen=True)
class LayerScore:
    """Cross-validated (held-out) results at one layer."""

    layer: int
    accuracy: float  # balanced accuracy (`SCORE`), mean over folds
    accuracy_std: float  # standard deviation over folds (ddof 0)
    baseline: float  # shuffled-label balanced accuracy at this layer, mean over relabellings
    baseline_std: float  # standard deviation over relabellings (ddof 0)
    heldout_separation: float  # Cohen's d of the held-out prompts' projections (tie-break)
    accuracy_min: float = float("nan")  # the lowest fold's balanced accuracy
    accuracy_max: float = float("nan")  # the highest fold's (the picture's spread: in 0..1)


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
    top_layer: int  # the layer `TIE_BREAK` picks, significant or not
    fit: ProbeFit  # at top_layer, fitted on every prompt (in-sample)
    shuffled_best: tuple[float, ...]  # per shuffle: its best accuracy over the layers
    exceeding: int  # shuffles whose best accuracy >= the real best accuracy
    alpha: float
    smallest_p: float  # the smallest p these class sizes and shuffles allow
    tie_break: str = TIE_BREAK
    ranking: str = RANKING
    measure: str = SCORE  # what `accuracy`, `baseline` and `shuffled_best` are
    chance: float = CHANCE

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def best_layer(self) -> int | None:
        """The chosen layer when it beats chance (p < alpha), else None."""
        return self.top_layer if self.significant else None

    @property
    def p_value(self) -> float:
        """The whole search's permutation p-value, (1 + exceeding) / (1 + permutations)."""
        return (1 + self.exceeding) / (1 + self.permutations)

    @property
    def hopeless(self) -> bool:
        """No result could be significant with these class sizes and shuffles."""
        return self.smallest_p >= self.alpha

    def score(self, layer: int) -> LayerScore:
        for row in self.layers:
            if row.layer == layer:
                return row
        raise KeyError(layer)

    @property
    def top(self) -> LayerScore:
        return self.score(self.top_layer)


# ---------------------------------------------------------------------------------------------
# checks


def check_classes(count_a: int, count_b: int, label_a: str = "A", label_b: str = "B") -> None:
    """Each class needs two distinct prompts (copies are one sample, `io.distinct`): one to
    hold out and one to train on."""
    for label, count, option in ((label_a, count_a, "--class-a"), (label_b, count_b, "--class-b")):
        if count < 2:
            raise LazarusError(
                f"class {label!r} has {plural(count, 'distinct prompt')}; a "
                "probe needs at least 2 per class to cross-validate, and copies of a prompt "
                f"count once (add other prompts to {option}, e.g. 'a|b|c')")


def check_settings(method: str, permutations: int = PERMUTATIONS, alpha: float = ALPHA) -> None:
    """What can be refused before any model is read: the method, shuffles and level."""
    if method not in METHODS:
        raise LazarusError(f"unknown probe method {method!r} (use one of: {', '.join(METHODS)})")
    if (isinstance(permutations, bool) or not isinstance(permutations, int)
            or not 0 <= permutations <= MAX_PERMUTATIONS):
        raise LazarusError(f"--permutations must be a whole number from 1 to "
                           f"{MAX_PERMUTATIONS}, got {permutations!r} (e.g. {PERMUTATIONS})")
    if not 0 < alpha < 1:
        raise LazarusError(f"--alpha must be between 0 and 1, got {alpha!r} (e.g. {ALPHA})")


def smallest_p(count_a: int, count_b: int, permutations: int) -> float:
    """max(1 / (1 + N), 1 / K); see the module docstring."""
    splits = math.comb(count_a + count_b, count_a) // (2 if count_a == count_b else 1)
    return 1.0 / min(1 + permutations, splits)


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
    alpha: float = ALPHA,
) -> ProbeReport:
    """Probe every layer of `activations` ({layer: [prompts, hidden]}, class A rows first) and
    test the whole search against `permutations` shuffled labellings at level `alpha`."""
    check_settings(method, permutations, alpha)
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
    plan = plan_fits(is_a, folds, permutations, seed)
    scores, shuffled = [], []
    for layer in layers:
        accuracy, margins = cross_validate(activations[layer], plan, method)
        real, baseline = accuracy[0], accuracy[1:].mean(axis=1)
        shuffled.append(baseline)
        scores.append(LayerScore(
            layer=int(layer),
            accuracy=float(real.mean()),
            accuracy_std=float(real.std()),
            baseline=float(baseline.mean()) if permutations else float("nan"),
            baseline_std=float(baseline.std()) if permutations else float("nan"),
            heldout_separation=cohens_d(margins[is_a], margins[~is_a]),
            accuracy_min=float(real.min()), accuracy_max=float(real.max()),
        ))

    top = choose_layer(scores)
    shuffled_best = np.max(shuffled, axis=0)  # [N]: each shuffle's best layer
    observed = max(s.accuracy for s in scores)
    exceeding = int(np.sum(shuffled_best >= observed - _TIED))
    fit = final_fit(activations[top.layer], is_a, top.layer, method, (label_a, label_b))
    return ProbeReport(
        method=method, label_a=label_a, label_b=label_b, count_a=count_a, count_b=count_b,
        folds=folds, permutations=permutations, seed=seed, layers=tuple(scores),
        top_layer=top.layer, fit=fit, shuffled_best=tuple(float(a) for a in shuffled_best),
        exceeding=exceeding, alpha=alpha,
        smallest_p=smallest_p(count_a, count_b, permutations),
    )


def choose_layer(scores: list[LayerScore] | tuple[LayerScore, ...]) -> LayerScore:
    """The rule in `TIE_BREAK`; accuracies equal to 1e-9 count as tied.

    A layer where some fold found no direction at all (its held-out separation is NaN: the
    prompts' activations there do not differ) is chosen only if every layer is like that.
    """
    usable = [s for s in scores if not math.isnan(s.heldout_separation)] or list(scores)
    return min(usable, key=lambda s: (-round(s.accuracy, 9), -s.heldout_separation, s.layer))


def to_direction(report: ProbeReport, model_id: str | None = None, site: str = "resid_post",
                 position: str = "last", *, force: bool = False) -> Direction:
    """The chosen layer's direction, ready for `lazarus.io.directions.save_direction`.

    Refused when no layer beats chance, unless `force`."""
    if not report.significant and not force:
        raise LazarusError(
            f"no layer beats chance (p = {report.p_value:.3g} >= alpha {report.alpha:g}), so "
            "there is no direction worth saving (add prompts, or force it with --force-save)")
    fit, top = report.fit, report.top
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
            "accuracy": top.accuracy,
            "accuracy_std": top.accuracy_std,
            "baseline_accuracy": top.baseline,
            "baseline_accuracy_std": top.baseline_std,
            "p_value": report.p_value,
            "alpha": report.alpha,
            "permutations": report.permutations,
            "significant": float(report.significant),
            "separation": fit.separation,
            "class_a_mean_projection": fit.class_a.mean,
            "class_b_mean_projection": fit.class_b.mean,
            "class_a_std_projection": fit.class_a.std,
            "class_b_std_projection": fit.class_b.std,
        },
    )
