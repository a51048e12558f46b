"""Text and JSON for `lazarus introspect probe`; never prints.

Sections, in order: PROBE ACCURACY BY LAYER (a row and a bar per layer, the chosen layer
marked), the chosen layer with its rule and the method, PROJECTION ON THE DIRECTION (per class
mean +- std and the separation), TOP N NEURONS (signed weight, importance, how they are ranked)
and, when test prompts were given, TEST PREDICTIONS.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from lazarus.probe import METHOD_SUMMARY, Prediction, ProbeReport
from lazarus.text import (
    PROMPT_WIDTH,
    RULE,
    banner,
    display_width,
    escape,
    fit_cell,
    json_number,
    pad,
)

BAR_WIDTH = 20  # cells of '█' for 100% accuracy
BEST_MARK = "← best"


# --- text helpers -------------------------------------------------------------------------------


def _wrap(text: str) -> list[str]:
    """Prose lines wrapped at the rule's width, continuation lines indented."""
    return textwrap.wrap(text, width=len(RULE), subsequent_indent="  ",
                         break_long_words=False, break_on_hyphens=False)


def _percent(value: float) -> str:
    return "  n/a " if math.isnan(value) else f"{100 * value:5.1f}%"


def _number(value: float, decimals: int) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:+.{decimals}f}"


def decimals_for(scale: float, digits: int = 2, most: int = 6) -> int:
    """Decimals that show a quantity of size `scale` with `digits` significant digits.

    16 -> 0, 0.15 -> 2, 0.0012 -> 4 (digits = 2); zero or non-finite -> 0.
    """
    if not math.isfinite(scale) or scale <= 0:
        return 0
    exponent = int(f"{scale:.{digits - 1}e}".split("e")[1])  # after rounding
    return min(most, max(0, digits - 1 - exponent))


# --- sections -----------------------------------------------------------------------------------


def render_accuracy_table(report: ProbeReport) -> str:
    """One row per layer: accuracy and the shuffled-label baseline (mean ± std), the held-out
    separation that breaks ties, and a bar proportional to accuracy."""
    runs = f"{report.permutations} shuffled-label run{'s' if report.permutations != 1 else ''}"
    title = f"PROBE ACCURACY BY LAYER ({report.method}, {report.folds} folds, {runs})"
    lines = banner(title)
    header = f"{'Layer':>5} | {'Accuracy':^15} | {'Shuffled':^15} | {'Held-out d':>10} |"
    lines += [header, "-" * (len(header) + 1 + BAR_WIDTH + 1 + len(BEST_MARK))]
    for row in report.layers:
        bar = "█" * round(BAR_WIDTH * row.accuracy)
        line = (f"{row.layer:>5} | {_percent(row.accuracy)} ± {_percent(row.accuracy_std)} | "
                f"{_percent(row.baseline)} ± {_percent(row.baseline_std)} | "
                f"{_number(row.heldout_separation, 2):>10} | {bar.ljust(BAR_WIDTH)}")
        if row.layer == report.best_layer:
            line += f" {BEST_MARK}"
        lines.append(line.rstrip())
    notes = [
        f"Accuracy: mean ± std over {report.folds} stratified folds "
        f"({report.count_a} {escape(report.label_a)}, {report.count_b} "
        f"{escape(report.label_b)} prompts).",
        "Shuffled: the same cross-validation with the labels shuffled, mean ± std over runs; "
        "an accuracy near it means no signal.",
        "Held-out d: separation (Cohen's d) of the held-out prompts' projections.",
    ]
    summary = [
        f"Best layer: {report.best_layer} ({report.tie_break})",
        f"Method: {report.method} ({METHOD_SUMMARY.get(report.method, report.method)})",
    ]
    lines.append("")
    for text in notes:
        lines += _wrap(text)
    lines.append("")
    for text in summary:
        lines += _wrap(text)
    return "\n".join(lines)


def render_projection(report: ProbeReport) -> str:
    """mean ± std of x·direction per class, and the separation."""
    fit = report.fit
    scale = [abs(fit.class_a.mean - fit.class_b.mean), fit.class_a.std, fit.class_b.std]
    positive = [s for s in scale if math.isfinite(s) and s > 0]
    decimals = decimals_for(min(positive)) if positive else 0
    names = [escape(c.label) for c in (fit.class_a, fit.class_b)]
    width = max(display_width(name) for name in names)
    lines = banner(f"PROJECTION ON THE DIRECTION AT LAYER {fit.layer}")
    for name, cls in zip(names, (fit.class_a, fit.class_b), strict=True):
        lines.append(f"{pad(name, width)} ({cls.count:>3} prompts): "
                     f"{_number(cls.mean, decimals)} ± {abs(cls.std):.{decimals}f}")
    lines += _wrap(f"Separation: {_number(fit.separation, 2)} (Cohen's d: difference of the "
                   "class means over their pooled std)")
    lines += _wrap(f"Direction: unit length, raw activation coordinates; positive = {names[0]}.")
    return "\n".join(lines)


def render_top_neurons(report: ProbeReport, k: int = 10) -> str:
    fit = report.fit
    top = fit.top_neurons(k)
    lines = banner(f"TOP {len(top)} NEURONS AT LAYER {fit.layer}")
    lines += _wrap(f"Ranked by importance: {report.ranking}.")
    lines += _wrap(f"Weight > 0: higher activation = more like {escape(report.label_a)}; "
                   f"< 0: more like {escape(report.label_b)}.")
    largest = max((abs(n.importance) for n in top), default=0.0)
    decimals = decimals_for(largest, digits=4)
    id_width = max([4] + [len(str(n.neuron)) for n in top])
    imp_width = max([1] + [len(_number(n.importance, decimals)) for n in top])
    for neuron in top:
        lines.append(f"Neuron {neuron.neuron:>{id_width}}: weight={neuron.weight:+.4f}  "
                     f"importance={_number(neuron.importance, decimals):>{imp_width}}")
    return "\n".join(lines)


def render_predictions(prompts: Sequence[str], predictions: Sequence[Prediction]) -> str:
    if len(prompts) != len(predictions):
        raise ValueError("one prediction per test prompt is needed")
    labels = [escape(p.label) for p in predictions]
    width = max([len("Prediction")] + [display_width(label) for label in labels])
    header = f"{fit_cell('Prompt', PROMPT_WIDTH)} | {'Prediction'.ljust(width)} | Probability"
    lines = banner("TEST PREDICTIONS")
    lines += [header, "-" * len(header)]
    for prompt, label, prediction in zip(prompts, labels, predictions, strict=True):
        lines.append(f"{fit_cell(prompt, PROMPT_WIDTH)} | {pad(label, width)} | "
                     f"{_percent(prediction.probability).strip():>11}")
    return "\n".join(lines)


def render_probe_report(
    report: ProbeReport,
    *,
    top_k: int = 10,
    test_prompts: Sequence[str] | None = None,
    predictions: Sequence[Prediction] | None = None,
) -> str:
    """Every section, separated by blank lines, ending with a newline."""
    sections = [render_accuracy_table(report), render_projection(report),
                render_top_neurons(report, top_k)]
    if test_prompts:
        sections.append(render_predictions(test_prompts, predictions or ()))
    return "\n\n".join(sections) + "\n"


# --- JSON ---------------------------------------------------------------------------------------


def probe_json(
    report: ProbeReport,
    *,
    model_id: str | None = None,
    top_k: int = 10,
    test_prompts: Sequence[str] | None = None,
    predictions: Sequence[Prediction] | None = None,
) -> dict:
    """The report as plain JSON types; NaN and infinities become null."""
    fit = report.fit
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
        "tie_break": report.tie_break,
        "hidden_size": fit.hidden_size,
        "projection": {
            key: {"label": cls.label, "count": cls.count, "mean": json_number(cls.mean),
                  "std": json_number(cls.std)}
            for key, cls in (("class_a", fit.class_a), ("class_b", fit.class_b))
        },
        "separation": json_number(fit.separation),
        "ranking": report.ranking,
        "top_neurons": [
            {"neuron": n.neuron, "weight": json_number(n.weight),
             "importance": json_number(n.importance)}
            for n in fit.top_neurons(top_k)
        ],
    }
    if test_prompts:
        result["predictions"] = [
            {"prompt": prompt, "label": p.label, "probability": json_number(p.probability),
             "probability_a": json_number(p.probability_a)}
            for prompt, p in zip(test_prompts, predictions or (), strict=True)
        ]
    return result
