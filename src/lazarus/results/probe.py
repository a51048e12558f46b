"""What `lazarus introspect probe` found (`ProbeResult`), its verdict sentences, and its JSON
(`probe_json`): the report as plain JSON types, each figure named as held out or in-sample
(`FIGURES`); never prints. The text report (`lazarus.render.probe`) uses the same sentences.
A `ProbeResult` is taken wherever a direction is (`to_direction`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lazarus import __version__
from lazarus.engine.positions import Position
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, save_direction
from lazarus.results.plot_probe import plot_probe
from lazarus.results.tables import dataframe
from lazarus.stats.power import (
    ACCURACY_METHOD,
    POWER,
    accuracy_to_d,
    critical_value,
    detectable_accuracy,
)
from lazarus.stats.probe import ProbeReport, to_direction
from lazarus.stats.probe_predict import Prediction, TestScore
from lazarus.text import json_number, p_shown, plural

FIGURES = {  # which figures the fit saw the prompts of
    "accuracy": "held out (cross-validated balanced accuracy, see `score`)",
    "baseline": "held out (cross-validated balanced accuracy, shuffled labels)",
    "heldout_separation": "held out (cross-validated)",
    "p_value": "held out (permutation test of the whole layer search)",
    "smallest_detectable": "held out (the accuracy the test needed, 80% of the time)",
    "projection": "in-sample (the final fit on all training prompts)",
    "separation": "in-sample (the final fit on all training prompts)",
    "threshold": "in-sample (the final fit's boundary on the projection)",
    "training_projections": "in-sample",
    "top_neurons": "in-sample",
    "predictions": "held out (test prompts), except those marked in_sample (training prompts)",
    "test_accuracy": "held out (the test prompts that are not training prompts)",
    "test_balanced_accuracy": "held out (the test prompts that are not training prompts)",
}
SCORES = ("accuracy", "accuracy_std", "baseline", "baseline_std", "heldout_separation")


def probe_json(
    report: ProbeReport,
    *,
    model_id: str | None = None,
    top_k: int = 10,
    prompts: Sequence[str] | None = None,
    test_prompts: Sequence[str] | None = None,
    test: TestScore | None = None,
) -> dict:
    """The report as plain JSON types; NaN and infinities become null. `prompts` are the
    training prompts (class A first), named beside their in-sample projections."""
    fit = report.fit
    labels = [report.label_a] * report.count_a + [report.label_b] * report.count_b
    result: dict = {
        "model_id": model_id,
        "method": report.method,
        "label_a": report.label_a,
        "label_b": report.label_b,
        "count_a": report.count_a,
        "count_b": report.count_b,
        "folds": report.folds,
        "permutations": report.permutations,
        "seed": report.seed,
        "figures": FIGURES,
        "score": report.measure,
        "chance": report.chance,
        "layers": [
            {
                "layer": row.layer,
                **{key: json_number(getattr(row, key)) for key in SCORES},
            }
            for row in report.layers
        ],
        "best_layer": report.best_layer,
        "top_layer": report.top_layer,
        "significant": report.significant,
        "p_value": json_number(report.p_value),
        "alpha": report.alpha,
        "exceeding": report.exceeding,
        "smallest_p": json_number(report.smallest_p),
        "verdict": verdict(report),
        "warning": hopeless_warning(report),
        "smallest_detectable": _detectable_json(report),
        "shuffled_best": [json_number(a) for a in report.shuffled_best],
        "tie_break": report.tie_break,
        "hidden_size": fit.hidden_size,
        "projection": {
            key: {"label": cls.label, "count": cls.count, "mean": json_number(cls.mean),
                  "std": json_number(cls.std)}
            for key, cls in (("class_a", fit.class_a), ("class_b", fit.class_b))
        },
        "separation": json_number(fit.separation),
        "threshold": json_number(fit.threshold),
        "decision": f"{report.label_a} when projection > threshold, else {report.label_b}",
        "training_projections": [
            {"prompt": prompts[i] if prompts is not None else None, "label": labels[i],
             "projection": json_number(float(value)), "in_sample": True}
            for i, value in enumerate(fit.projections)
        ],
        "ranking": report.ranking,
        "top_neurons": [
            {"neuron": n.neuron, "weight": json_number(n.weight),
             "importance": json_number(n.importance)}
            for n in fit.top_neurons(top_k)
        ],
    }
    if test_prompts:
        if test is None:
            raise ValueError("test prompts need their TestScore")
        result["predictions"] = [
            {"prompt": prompt, "label": p.label, "probability": json_number(p.probability),
             "probability_a": json_number(p.probability_a),
             "projection": json_number(float(test.projections[i])),
             "true_label": None if test.labels is None else test.labels[i],
             "in_sample": bool(test.in_sample and test.in_sample[i])}
            for i, (prompt, p) in enumerate(zip(test_prompts, test.predictions, strict=True))
        ]
        result["test_accuracy"] = json_number(test.accuracy)
        result["test_balanced_accuracy"] = json_number(test.balanced_accuracy)
        result["test_in_sample"] = sum(test.in_sample)
    return result


def percent(value: float) -> str:
    return "  n/a " if math.isnan(value) else f"{100 * value:5.1f}%"


def p_text(value: float) -> str:
    """A p-value with two significant digits: 0.005, 0.048, 0.33, 1."""
    return f"{value:.2g}" if value < 1 else "1"


def verdict(report: ProbeReport) -> str:
    """One sentence: does a layer beat chance, and why (not)."""
    top = report.top
    count = plural(report.permutations, "shuffled labelling")
    if report.significant:
        return (f"Best layer: {report.top_layer} ({percent(top.accuracy).strip()} held out), "
                f"p = {p_shown(report.p_value, p_text(report.p_value), report.alpha)} < "
                f"{report.alpha:g}: only {report.exceeding} of "
                f"{count} had a best layer that did as well.")
    if report.permutations == 0:
        why = "no shuffled labellings were run to compare with"
    else:
        why = (f"{report.exceeding} of {count} had a best layer that did as well "
               f"(p = {p_text(report.p_value)}, not below {report.alpha:g})")
    return (f"No layer beats chance: the top layer, {report.top_layer}, scores "
            f"{percent(top.accuracy).strip()} held out, and {why}; no layer is marked best.")


def detectable(report: ProbeReport) -> float | None:
    """The held-out accuracy the best layer needed to beat chance with 80% power at these counts
    (`stats.power`); inf when none could, None without shuffles."""
    if report.permutations == 0:
        return None
    critical = critical_value(np.array(report.shuffled_best), report.alpha)
    return detectable_accuracy(critical, report.top.baseline_std)


def _detectable_json(report: ProbeReport) -> dict | None:
    accuracy = detectable(report)
    if accuracy is None:
        return None
    return {"accuracy": json_number(accuracy), "heldout_d": json_number(accuracy_to_d(accuracy)),
            "power": POWER, "method": ACCURACY_METHOD}


def power_sentence(report: ProbeReport) -> str | None:
    """When no layer beats chance: how good a layer would have had to be to (80% of the time)."""
    accuracy = detectable(report)
    if report.significant or report.hopeless or accuracy is None:
        return None  # hopeless: `hopeless_warning` says why nothing could
    if not math.isfinite(accuracy):
        return (f"Not beating chance is not absence: with these counts no accuracy would beat "
                f"chance with {POWER:.0%} power.")
    return (f"Not beating chance is not absence (in balanced accuracy held out, chance "
            f"{percent(report.chance).strip()}, as in the table): with these counts a layer "
            "needed about "
            f"{percent(accuracy).strip()} held out (held-out d = {accuracy_to_d(accuracy):.2g}) "
            f"to beat chance with {POWER:.0%} power ({ACCURACY_METHOD}; d = 2 x the accuracy's "
            "normal quantile, for normal projections with one spread).")


def hopeless_warning(report: ProbeReport) -> str | None:
    """Why no result could be significant with these class sizes and shuffles, if so."""
    if not report.hopeless:
        return None
    floor = f"smallest possible p = {p_text(report.smallest_p)}"
    if report.smallest_p > 1.0 / (1 + report.permutations):
        splits = round(1.0 / report.smallest_p)
        reason = (f"{report.count_a} and {report.count_b} prompts can be split into the two "
                  f"classes in only {plural(splits, 'distinct way')}")
        fix = "add prompts to both classes"
    else:
        reason = f"{report.permutations} shuffled labellings cannot give a smaller p"
        fix = "raise --permutations"
    return (f"Warning: {reason}, so no result can reach p < {report.alpha:g} ({floor}); "
            f"{fix}.")


@dataclass(frozen=True)
class ProbeResult:
    report: ProbeReport
    test_prompts: tuple[str, ...]
    test: TestScore  # the test prompts' projections, predictions and, with labels, accuracy
    model_id: str
    site: str
    position: Position
    device: str
    dtype: str
    training_prompts: tuple[str, ...] = ()  # class A first, then class B; each once
    merged_copies: int = 0  # repeated training prompts merged into one (see io.distinct)
    test_merged_copies: int = 0  # repeated test prompts merged likewise

    @property
    def best_layer(self) -> int | None:
        """The chosen layer when it beats chance (p < alpha), else None."""
        return self.report.best_layer

    @property
    def significant(self) -> bool:
        return self.report.significant

    @property
    def predictions(self) -> tuple[Prediction, ...]:
        return self.test.predictions

    def direction(self, force: bool = False) -> Direction:
        """The best layer's direction, as `--save-direction` writes it; refused when no layer
        beats chance, unless `force` (then it is the top layer's)."""
        try:
            made = to_direction(self.report, self.model_id, self.site, str(self.position),
                                force=force)
        except LazarusError as error:  # its fix names the CLI's option: say Python's too
            raise LazarusError(f"{error}; from Python, direction(force=True) or "
                               "save_direction(path, force=True) takes the top layer's "
                               "anyway") from None
        return replace(made, source=f"the probe's direction (layer {made.layer})")

    def to_direction(self) -> Direction:
        """What this result stands for where a direction is taken (`model.neurons(direction=
        result)`, ablate, steer, examples): `direction()`, the best layer's, the same as its
        saved `.npz` reads back; refused when no layer beats chance (to use the top layer's
        anyway, give `direction(force=True)` instead)."""
        return self.direction()

    def save_direction(self, path: str, force: bool = False) -> None:
        save_direction(path, self.direction(force))

    def plot(self, path: str) -> None:
        """Accuracy by layer over the shuffled baseline, as .png or .svg; needs matplotlib."""
        plot_probe(self.report, path)

    def to_json(self) -> dict:
        """The document `lazarus introspect probe -o FILE.json` writes, provenance included."""
        document = probe_json(self.report, model_id=self.model_id,
                              prompts=self.training_prompts, test_prompts=self.test_prompts,
                              test=self.test)
        document.update(lazarus_version=__version__, dtype=self.dtype, device=self.device,
                        site=self.site, position=self.position,
                        merged_copies=self.merged_copies,
                        test_merged_copies=self.test_merged_copies)
        return document

    def to_numpy(self) -> np.ndarray:
        """The scores of each layer searched, float64 [layers, 5], rows in `report.layers`
        order, columns `SCORES` (accuracy, accuracy_std, baseline, baseline_std,
        heldout_separation; NaN where there is none); `direction()` holds the weights."""
        return np.array([[getattr(row, key) for key in SCORES] for row in self.report.layers],
                        dtype=np.float64).reshape(len(self.report.layers), len(SCORES))

    def to_pandas(self):  # -> pandas.DataFrame
        """Accuracy by layer: one row per layer searched (`layer` and `SCORES`, missing where
        there is no score); needs pandas."""
        rows = self.to_json()["layers"]
        return dataframe({key: [row[key] for row in rows] for key in rows[0]})
