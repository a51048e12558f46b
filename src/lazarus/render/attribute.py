"""The text report of `attribute`: what the estimate is, the units of largest |estimate|, and
the self-check against real patches with its verdict."""

from __future__ import annotations

import textwrap

from lazarus.engine.pair_terms import METRIC_HELP, POSITION_SITES
from lazarus.results.attribute import TOP_MIN, VERDICT_RULE, VERDICTS, AttributionResult, Unit
from lazarus.text import banner, fit_cell, plural

MISSES = 5  # checked units of largest |estimate - real| shown
TOKEN = 8
WIDTH = 80


def render_attribution(result: AttributionResult) -> str:
    pairs = len(result.clean)
    method = ("attribution patching estimate of each unit's denoising effect (patching its "
              "clean values into the corrupted run), from one forward per prompt and one "
              "backward: gradient at the corrupted run x (clean - corrupted)"
              if result.method == "atp" else
              f"integrated gradients ({result.steps} steps from the corrupted to the clean "
              "values) of each unit's denoising effect (patching its clean values into the "
              "corrupted run)")
    first = (f"'{result.clean[0]}' -> '{result.corrupt[0]}' (answer '{result.answer[0]}'"
             + ("" if result.wrong is None else f", wrong '{result.wrong[0]}'") + ")")
    header = [f"Pairs: {pairs} (first: {first}).",
              f"Metric: {result.metric} ({METRIC_HELP[result.metric]}); clean "
              f"{_mean(result.clean_score)}, corrupted {_mean(result.corrupt_score)}.",
              f"Estimate: {method}; per unit, averaged over the pairs and divided by the gap "
              f"({result.gap:.4g}): 1 = the whole clean - corrupted gap, 0 = no change.",
              _units_line(result)]
    lines = [*banner(f"ATTRIBUTION: {', '.join(result.sites)}, "
                     f"{plural(len(result.layers), 'layer')}"),
             *(wrapped for text in header for wrapped in textwrap.wrap(
                 text, WIDTH, subsequent_indent="  ", break_on_hyphens=False)), "",
             f"Top {plural(len(result.top), 'unit')} by |estimate| (of {result.units}):"]
    width = _width(result, result.top)
    lines.append(f"  {'layer':>5}  {fit_cell('site', 10)}  {'unit':>{width}}  {'estimate':>9}")
    for unit in result.top:
        lines.append(f"  {unit.layer:>5}  {fit_cell(unit.site, 10)}  "
                     f"{_name(result, unit):>{width}}  {unit.estimate:>+9.4f}")
    lines += ["", *_check_lines(result)]
    return "\n".join(line.rstrip() for line in lines).rstrip("\n")


def _units_line(result: AttributionResult) -> str:
    parts = []
    for site in result.sites:
        if site in POSITION_SITES:
            parts.append(f"{site}: token positions (each position's whole vector)")
        elif site == "attn_head":
            parts.append(f"{site}: heads (summed over every position)")
        else:
            parts.append(f"{site}: neurons (summed over every position)")
    return "Units: " + "; ".join(parts) + "."


def _check_lines(result: AttributionResult) -> list[str]:
    check = result.check
    if check is None:
        return ["Self-check: not run (--check 0): the estimates are not tested against real "
                "patches."]
    random = len(check.units) - check.top_count
    lines = [*textwrap.wrap(
                 f"Self-check: {len(check.units)} of {check.total} units patched for real (the "
                 f"top {check.top_count} by |estimate| and {random} drawn at random, seed "
                 f"{check.seed}); the other units are not tested.", WIDTH,
                 subsequent_indent="  "),
             "  Spearman rank correlation of estimate and real effect:",
             f"    over all {len(check.units)} checked units (top and random): "
             f"{_correlation(check.spearman)}; Pearson: {_correlation(check.pearson)}.",
             f"    within the top {check.top_count} alone (their order): "
             f"{_correlation(check.spearman_top, check.top_count)}.",
             *textwrap.wrap("  The first is over a stratified sample: an estimate that only "
                            "tells the top from the rest, with no order within the top, still "
                            "scores about 0.75 there; hence the second.", WIDTH,
                            subsequent_indent="  "),
             *textwrap.wrap(f"  Verdict: {VERDICTS[check.verdict]}.", WIDTH,
                            subsequent_indent="    "),
             *textwrap.wrap(f"  (rule: {VERDICT_RULE})", WIDTH, subsequent_indent="   "),
             "  Largest misses:"]
    misses = check.misses(MISSES)
    width = _width(result, [unit for unit, _ in misses])
    lines.append(f"  {'layer':>5}  {fit_cell('site', 10)}  {'unit':>{width}}  "
                 f"{'estimate':>9}  {'real':>9}")
    for unit, real in misses:
        lines.append(f"  {unit.layer:>5}  {fit_cell(unit.site, 10)}  "
                     f"{_name(result, unit):>{width}}  {unit.estimate:>+9.4f}  {real:>+9.4f}")
    return lines


def _name(result: AttributionResult, unit: Unit) -> str:
    """A unit's name in a table (`result.label`: N448, H2, E3 U17), a position with its
    token (P7:6)."""
    if unit.site in POSITION_SITES:
        token = result.tokens[unit.unit].replace(" ", "_")
        return f"{result.label(unit)}:{fit_cell(token, TOKEN).rstrip()}"
    return result.label(unit)


def _width(result: AttributionResult, units: list[Unit]) -> int:
    """The unit column's width: its widest name, at least 6."""
    return max([6, *(len(_name(result, unit)) for unit in units)])


def _correlation(value: float, units: int | None = None) -> str:
    if value == value:
        return f"{value:.3f}"
    if units is not None and units < TOP_MIN:
        return f"undefined (fewer than {TOP_MIN} units)"
    return "undefined"


def _mean(scores: tuple[float, ...]) -> str:
    value = sum(scores) / len(scores)
    return f"{value:.4g}" + (" on average" if len(scores) > 1 else "")
