"""Text for `lazarus introspect probe`; never prints (its JSON: `lazarus.results.probe`).

Sections, in order: PROBE ACCURACY BY LAYER (a row and a bar per layer, the chosen layer
marked when it beats chance), the verdict of the permutation test of the whole layer search,
PROJECTION ON THE DIRECTION (per class mean +- std and the separation), TOP N NEURONS (signed
weight, importance, how they are ranked) and, when test prompts were given, TEST PREDICTIONS.
Every figure says whether it is held out or in-sample.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

from lazarus.results.probe import hopeless_warning, percent, power_sentence, verdict
from lazarus.stats.probe import CHANCE, METHOD_SUMMARY, ProbeReport
from lazarus.stats.probe_predict import TestScore
from lazarus.text import (
    PROMPT_WIDTH,
    RULE,
    banner,
    display_width,
    escape,
    fit_cell,
    pad,
    plural,
)

BAR_WIDTH = 20  # cells of '█' for 100% accuracy
BEST_MARK = "← best"


# --- text helpers -------------------------------------------------------------------------------


def _wrap(text: str) -> list[str]:
    """Prose lines wrapped at the rule's width, continuation lines indented."""
    return textwrap.wrap(text, width=len(RULE), subsequent_indent="  ",
                         break_long_words=False, break_on_hyphens=False)


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


def render_accuracy_table(report: ProbeReport, merged: int = 0) -> str:
    """One row per layer: held-out accuracy and the shuffled-label baseline (mean ± std), the
    held-out separation that breaks ties, and a bar proportional to accuracy; then the
    permutation test of the whole layer search. `merged`: repeated prompts merged away."""
    runs = plural(report.permutations, "shuffle")
    title = (f"PROBE ACCURACY BY LAYER (balanced; {report.method}, {report.folds} folds held "
             f"out, {runs})")
    lines = banner(title)
    header = f"{'Layer':>5} | {'Accuracy':^15} | {'Shuffled':^15} | {'Held-out d':>10} |"
    lines += [header, "-" * (len(header) + 1 + BAR_WIDTH + 1 + len(BEST_MARK))]
    for row in report.layers:
        bar = "█" * round(BAR_WIDTH * row.accuracy)
        line = (f"{row.layer:>5} | {percent(row.accuracy)} ± {percent(row.accuracy_std)} | "
                f"{percent(row.baseline)} ± {percent(row.baseline_std)} | "
                f"{_number(row.heldout_separation, 2):>10} | {bar.ljust(BAR_WIDTH)}")
        if row.layer == report.best_layer:
            line += f" {BEST_MARK}"
        lines.append(line.rstrip())
    counts = (f"{report.count_a} {escape(report.label_a)}, {report.count_b} "
              f"{escape(report.label_b)}")
    notes = [
        f"Accuracy: held out, balanced (the mean of the two classes' recall, so chance is "
        f"{percent(report.chance).strip()} whatever the class sizes), mean ± std over "
        f"{report.folds} stratified folds "
        + (f"of {report.count_a + report.count_b} distinct prompts "
           f"({plural(merged, 'copy', 'copies')} merged): {counts}." if merged
           else f"({counts} prompts)."),
        "Shuffled: held out, the same cross-validation with the labels shuffled, at that layer "
        "alone, mean ± std over the shuffles.",
        "Held-out d: separation (Cohen's d) of the held-out prompts' margins, each its "
        "projection on its own fold's direction minus that fold's threshold, pooled over the "
        "folds.",
    ]
    if report.shuffled_best:
        chance = sorted(report.shuffled_best)
        high = chance[min(len(chance) - 1, math.ceil(0.95 * len(chance)) - 1)]
        notes.append(
            f"Whole search: the best of the {len(report.layers)} layers scores "
            f"{percent(sum(chance) / len(chance)).strip()} held out on average with shuffled "
            f"labels (95th percentile {percent(high).strip()}); p is the share of shuffles "
            "whose best layer did at least as well as the real one, (1 + count) / (1 + "
            "shuffles): how often label noise alone would give a result this good.")
    summary = [verdict(report)]
    for extra in (power_sentence(report), hopeless_warning(report)):
        if extra:
            summary.append(extra)
    summary += [
        f"Layer rule: {report.tie_break}.",
        f"Method: {report.method} ({METHOD_SUMMARY.get(report.method, report.method)})",
    ]
    lines.append("")
    for text in notes:
        lines += _wrap(text)
    lines.append("")
    for text in summary:
        lines += _wrap(text)
    return "\n".join(lines)


def _layer_title(report: ProbeReport) -> str:
    kind = "" if report.significant else "TOP LAYER, NOT SIGNIFICANT; "
    return f"AT LAYER {report.fit.layer} ({kind}IN-SAMPLE)"


def render_projection(report: ProbeReport) -> str:
    """mean ± std of x·direction per class, and the separation: all in-sample."""
    fit = report.fit
    scale = [abs(fit.class_a.mean - fit.class_b.mean), fit.class_a.std, fit.class_b.std]
    positive = [s for s in scale if math.isfinite(s) and s > 0]
    decimals = decimals_for(min(positive)) if positive else 0
    names = [escape(c.label) for c in (fit.class_a, fit.class_b)]
    width = max(display_width(name) for name in names)
    lines = banner(f"PROJECTION ON THE DIRECTION {_layer_title(report)}")
    lines += _wrap(f"In-sample: the direction was fitted on these {report.count_a + report.count_b}"
                   " prompts, so they separate better than new prompts would.")
    lines.append("Projection x·direction per class, mean ± std over its prompts:")
    for name, cls in zip(names, (fit.class_a, fit.class_b), strict=True):
        lines.append(f"{pad(name, width)} ({cls.count:>3} prompts): "
                     f"{_number(cls.mean, decimals)} ± {abs(cls.std):.{decimals}f}")
    lines += _wrap(f"Separation (in-sample): {_number(fit.separation, 2)} (Cohen's d: "
                   "difference of the class means over their pooled std)")
    lines += _wrap(f"Direction: unit length, raw activation coordinates; positive = {names[0]}.")
    return "\n".join(lines)


def render_top_neurons(report: ProbeReport, k: int = 10) -> str:
    fit = report.fit
    top = fit.top_neurons(k)
    lines = banner(f"TOP {len(top)} NEURONS {_layer_title(report)}")
    lines += _wrap(f"Ranked by importance (in-sample): {report.ranking}.")
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


def boundary_decimals(projections: Sequence[float], threshold: float, least: int = 4,
                      most: int = 12) -> int:
    """Decimals (from `least`) at which no projection prints the same as the threshold unless
    it is the threshold, so each row's side of it can be read off the numbers shown."""
    decimals = least
    while decimals < most and any(
            p != threshold and _number(p, decimals) == _number(threshold, decimals)
            for p in projections):
        decimals += 1
    return decimals


def render_predictions(prompts: Sequence[str], test: TestScore) -> str:
    """Each test prompt's prediction, probability and projection (held out), the threshold on
    the projection that decides between the classes, and with the true labels the held-out
    accuracy (plain and balanced)."""
    predictions = test.predictions
    if len(prompts) != len(predictions):
        raise ValueError("one prediction per test prompt is needed")
    projections = [float(p) for p in test.projections]
    decimals = boundary_decimals(projections, test.threshold)
    cells = [_number(p, decimals) for p in projections]
    proj_width = max([len("Projection")] + [len(cell) for cell in cells])
    labels = [escape(p.label) for p in predictions]
    width = max([len("Prediction")] + [display_width(label) for label in labels])
    truth = [escape(label) for label in test.labels] if test.labels is not None else None
    true_width = max([len("Label")] + [display_width(t) for t in truth or []])
    header = f"{fit_cell('Prompt', PROMPT_WIDTH)} | "
    if truth is not None:
        header += f"{'Label'.ljust(true_width)} | "
    header += f"{'Prediction'.ljust(width)} | Probability | Projection"
    name_a, name_b = (escape(name) for name in test.classes)
    seen = test.in_sample or (False,) * len(predictions)
    lines = banner("TEST PREDICTIONS (HELD OUT" + (", EXCEPT THOSE MARKED IN-SAMPLE)"
                                                   if any(seen) else ")"))
    lines += _wrap(f"Decision: {name_a} when the projection is above t = "
                   f"{_number(test.threshold, decimals)}, else {name_b} (t is where the fit "
                   f"gives {name_a} a probability of 50%; fitted in-sample). Probability: the "
                   "fit's probability of the predicted class.")
    lines += [header, "-" * len(header)]
    for index, (prompt, label, prediction) in enumerate(
            zip(prompts, labels, predictions, strict=True)):
        line = f"{fit_cell(prompt, PROMPT_WIDTH)} | "
        if truth is not None:
            line += f"{pad(truth[index], true_width)} | "
        line += (f"{pad(label, width)} | {percent(prediction.probability).strip():>11} | "
                 f"{cells[index]:>{proj_width}}")
        lines.append(line + ("  in-sample" if seen[index] else ""))
    in_sample = sum(seen)
    if in_sample:
        lines.append("")
        lines += _wrap(f"In-sample: {in_sample} of these {len(predictions)} test prompts "
                       + ("is a training prompt; the probe saw it, so it is" if in_sample == 1
                          else "are training prompts; the probe saw them, so they are")
                       + " not held out.")
    if truth is not None:
        lines.append("")
        uncounted = (f"; {in_sample} in-sample not counted" if in_sample else "")
        lines += _wrap(
            f"Test accuracy (held out): {test.correct} of {test.held_out} "
            f"({percent(test.accuracy).strip()}){uncounted}." if test.accuracy is not None
            else "Test accuracy (held out): none; every test prompt is a training prompt.")
        if test.balanced_accuracy is not None:
            recalls = ", ".join(f"{escape(name)} {right} of {count}"
                                for name, right, count in test.recalls())
            lines += _wrap(f"Balanced (held out): {percent(test.balanced_accuracy).strip()}, "
                           f"the mean of the two classes' recall ({recalls}); chance "
                           f"{percent(CHANCE).strip()}.")
    return "\n".join(lines)


def render_probe_report(
    report: ProbeReport,
    *,
    top_k: int = 10,
    test_prompts: Sequence[str] | None = None,
    test: TestScore | None = None,
    merged: int = 0,
) -> str:
    """Every section, separated by blank lines, ending with a newline; `merged` counts the
    repeated training prompts merged away."""
    sections = [render_accuracy_table(report, merged), render_projection(report),
                render_top_neurons(report, top_k)]
    if test_prompts:
        if test is None:
            raise ValueError("test prompts need their TestScore")
        sections.append(render_predictions(test_prompts, test))
    return "\n\n".join(sections) + "\n"
