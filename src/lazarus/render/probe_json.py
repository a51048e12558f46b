"""JSON for `lazarus introspect probe` and `Model.probe(...).to_json()`: the report as plain
JSON types, each figure named as held out or in-sample (`FIGURES`); never prints.

The verdict and the warning are the same sentences as the text's (`lazarus.render.probe`).
"""

from __future__ import annotations

from collections.abc import Sequence

from lazarus.render.probe import hopeless_warning, verdict
from lazarus.stats.probe import ProbeReport, TestScore
from lazarus.text import json_number

FIGURES = {  # which figures the fit saw the prompts of
    "accuracy": "held out (cross-validated)",
    "baseline": "held out (cross-validated, shuffled labels)",
    "heldout_separation": "held out (cross-validated)",
    "p_value": "held out (permutation test of the whole layer search)",
    "projection": "in-sample (the final fit on all training prompts)",
    "separation": "in-sample (the final fit on all training prompts)",
    "training_projections": "in-sample",
    "top_neurons": "in-sample",
    "predictions": "held out (test prompts)",
    "test_accuracy": "held out (test prompts)",
}


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
        "layers": [
            {
                "layer": row.layer,
                "accuracy": json_number(row.accuracy),
                "accuracy_std": json_number(row.accuracy_std),
                "baseline": json_number(row.baseline),
                "baseline_std": json_number(row.baseline_std),
                "heldout_separation": json_number(row.heldout_separation),
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
        "shuffled_best": [json_number(a) for a in report.shuffled_best],
        "tie_break": report.tie_break,
        "hidden_size": fit.hidden_size,
        "projection": {
            key: {"label": cls.label, "count": cls.count, "mean": json_number(cls.mean),
                  "std": json_number(cls.std)}
            for key, cls in (("class_a", fit.class_a), ("class_b", fit.class_b))
        },
        "separation": json_number(fit.separation),
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
             "in_sample": False}
            for i, (prompt, p) in enumerate(zip(test_prompts, test.predictions, strict=True))
        ]
        result["test_accuracy"] = json_number(test.accuracy)
    return result
