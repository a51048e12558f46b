"""Text for `lazarus introspect neurons`, as its spec lays them out; never prints.

The map and heatmap are `render.grid`'s; here are the statistics, label correlation and
discovery sections and the report that puts them in order (its JSON: `results.neurons`).
"""

from __future__ import annotations

import numpy as np

from lazarus.render.grid import map_decimals, render_activation_map, render_heatmap, signed
from lazarus.results.activations import ActivationMatrix
from lazarus.stats.discover import INTERVAL_TEXT, Discovery
from lazarus.stats.intervals import INTERVAL_ASSUMPTION
from lazarus.stats.neurons import (
    EFFECT,
    MASSIVE_FACTOR,
    SEPARATION_ALPHA,
    SPREAD,
    Choice,
    LabelSummary,
    Massive,
    NeuronStats,
)
from lazarus.stats.welch import FEW_UNITS, FEW_UNITS_NOTE
from lazarus.text import agree, banner, escape, p_shown, plural

# --- statistics and labels ----------------------------------------------------------------------


def _neuron_ids(neurons: list[int]) -> list[str]:
    width = max([4] + [len(str(n)) for n in neurons])
    return [f"Neuron {n:>{width}}" for n in neurons]


def _aligned(texts: list[str]) -> list[str]:
    width = max((len(t) for t in texts), default=0)
    return [t.rjust(width) for t in texts]


def render_stats(
    stats: list[NeuronStats],
    decimals: int,
    weights: dict[int, float] | None = None,
    direction_labels: tuple[str | None, str | None] | None = None,
    ranking: str | None = None,
    selection: str | None = None,
    title: str = "NEURON STATISTICS",
    samples: int | None = None,
    notes: tuple[str, ...] = (),
) -> str:
    """One line per neuron; with direction weights, a closing note on what their sign means.

    `selection` says where the neurons came from when the user did not list them. A neuron
    with values on fewer than `samples` rows (MoE units) says on how many (`n=`).
    """
    names = _neuron_ids([s.neuron for s in stats])
    mins = _aligned([signed(s.min, decimals) for s in stats])
    maxes = _aligned([signed(s.max, decimals) for s in stats])
    means = _aligned([signed(s.mean, decimals) for s in stats])
    stds = _aligned(["·" if np.isnan(s.std) else f"{s.std:.{decimals}f}" for s in stats])
    lines = [
        f"{name}: min= {mn}, max= {mx}, mean= {me}, std= {sd}"
        for name, mn, mx, me, sd in zip(names, mins, maxes, means, stds, strict=True)
    ]
    if samples is not None and any(s.count is not None and s.count < samples for s in stats):
        lines = [f"{line}, n={s.count} of {samples}" for line, s in zip(lines, stats,
                                                                       strict=True)]
    if weights is not None:
        found = [weights.get(s.neuron) for s in stats]
        digits = max(4, map_decimals(np.array([w for w in found if w is not None])))
        texts = _aligned([signed(w, digits) for w in found])
        lines = [f"{line}, weight={text}" for line, text in zip(lines, texts, strict=True)]
        positive, negative = direction_labels or (None, None)
        lines += [
            "",
            f"Positive weight: higher activation = more like {positive or 'class A'}; "
            f"negative: more like {negative or 'class B'}.",
        ]
        if ranking:
            lines.append(f"Neurons ranked by {ranking}.")
    heading = banner(title) + ([f"({selection})"] if selection else [])
    return "\n".join(heading + [f"({note})" for note in notes] + lines)


def _label_notes(summaries: list[LabelSummary], noun: str, choice: Choice,
                 layers: int = 1) -> list[str]:
    """What the intervals and the marks of LABEL CORRELATION claim, for the way the neurons
    were chosen (`stats.neurons.Choice`), at each of `layers` layers shown."""
    groups = len(summaries)
    neurons = len(summaries[0].effects) if summaries else 0
    r_is = "r = point-biserial correlation of the neuron with the label"
    if groups == 1:
        return [f"({r_is}; with one label: r compares a label with the rest, and there is no "
                "rest, so r is n/a and nothing is marked; give at least two labels)"]
    if choice.per_token:
        return [f"({r_is})", f"(per {noun}: the {noun}s of one prompt are not independent "
                "samples, so no interval and no mark; --position last or mean gives one value "
                "per prompt)"]

    def interval(simultaneous: str = "") -> str:
        return (f"[low, high] = its 95% interval{simultaneous}, {INTERVAL_ASSUMPTION}; n/a: "
                f"too few {noun}s, or no spread within any label, for one")

    if choice.by != EFFECT:
        examined = plural(neurons, "neuron") + ("" if groups == 2 else f" x {groups} labels")
        again = f" at each of {layers} layers" if layers > 1 else ""
        notes = [f"({r_is}; {interval()})"]
        if choice.by == SPREAD:
            notes.append(f"(selected: chosen by their spread on these {noun}s, so the intervals "
                         "may cover less than 95%; the choice is blind to the labels, so a "
                         "mark's test of r = 0 stays valid)")
        return notes + [f"(← marks an r whose interval excludes 0: uncorrected, {examined} "
                        f"examined{again}, so about 1 in 20 with no effect is marked by chance)"]
    how = "Bonferroni" if groups == 2 else f"{choice.among} neurons x {groups} labels; Bonferroni"
    family = f" simultaneous over {plural(choice.family(groups), 'interval')} ({how})"
    notes = [f"({r_is}; {interval(family)})",
             f"(selected: --auto-discover chose these neurons as the largest effects of the "
             f"{choice.among} tested on these {noun}s; a simultaneous interval holds for neurons "
             "so chosen, one neuron's would not)"]
    marked = sum(1 for e in summaries[0].effects if e.neuron in choice.survivors
                 ) if summaries else 0
    if not marked:
        clear = any(e.r_ci is not None and (e.r_ci[0] > 0 or e.r_ci[1] < 0)
                    for summary in summaries for e in summary.effects)
        return notes + ["(no mark: no neuron shown survives --auto-discover's correction; "
                        + ("an interval here excludes 0 but assumes one spread per label, which "
                           "the correction does not" if clear else
                           "the largest of many effects is large by chance alone") + ")"]
    return notes + [f"(← marks a survivor of --auto-discover's correction whose interval "
                    f"excludes 0; {marked} of the {neurons} shown survive)"]


def render_label_correlation(summaries: list[LabelSummary], decimals: int,
                             title: str = "LABEL CORRELATION", noun: str = "prompt",
                             choice: Choice | None = None, layers: int = 1) -> str:
    """Per label: each neuron's mean on its prompts, r, r's interval, and an arrow where the
    evidence allows one (see `stats.neurons.Choice`), with what those claim above them."""
    choice = choice or Choice()
    effects = [e for s in summaries for e in s.effects]
    names = iter(_neuron_ids([e.neuron for e in effects]))
    means = iter(_aligned([signed(e.mean, decimals) for e in effects]))
    lines = banner(title) + _label_notes(summaries, noun, choice, layers)
    if not choice.per_token and any(e.r is not None and abs(e.r) == 1 for e in effects):
        lines.append("(r = ±1: the labels perfectly separated, no spread within either; its "
                     "interval is the point r, the normal-theory limit, so it is marked only "
                     f"where labels dealt at random split the {noun}s so cleanly at most "
                     f"2/C(n, k) < {SEPARATION_ALPHA:g} of the time, n {noun}s, k with the label)")
    for summary in summaries:
        label = escape(summary.label)
        lines += ["", f"{label} ({plural(summary.count, noun)}):"]
        for effect in summary.effects:
            r = "n/a" if effect.r is None else f"{effect.r:+.2f}"
            line = f"  {next(names)}: mean= {next(means)}  r={r:>5}"
            if effect.r_ci is not None:
                line += f" [{effect.r_ci[0]:+.2f}, {effect.r_ci[1]:+.2f}]"
            elif effect.r is not None and not choice.per_token:
                line += " [n/a]"
            if effect.count is not None and effect.count < summary.count:
                line += f"  (n={effect.count} of {summary.count})"
            if effect.verdict is not None:
                line += f"  ← fires {effect.verdict} for {label}"
            lines.append(line)
    return "\n".join(lines)


def render_neurons_report(
    matrix: ActivationMatrix,
    stats: list[NeuronStats],
    label_summaries: list[LabelSummary] | None,
    weights: dict[int, float] | None = None,
    direction_labels: tuple[str | None, str | None] | None = None,
    ranking: str | None = None,
    selection: str | None = None,
    at_layer: bool = False,
    grids: bool = True,
    sample_noun: str = "prompt",
    max_rows: int | None = None,
    color: bool = False,
    notes: tuple[str, ...] = (),
    discovery: Discovery | None = None,
    choice: Choice | None = None,
    layers: int = 1,
) -> str:
    """The spec's sections in order, a blank line apart, without a trailing newline.

    Statistics and label means show one more decimal than the map. `at_layer` names the layer
    in every title (several layers are shown); `grids=False` leaves out the map and heatmap
    (per-token views show strips instead). With more prompts than `max_rows`, the map and the
    heatmap show the first `max_rows` and one row with the mean of the rest. `notes` go under
    the statistics' heading; with `discovery`, its section closes the report. `choice`: how the
    neurons were chosen, which decides what LABEL CORRELATION's intervals and marks claim;
    `layers`: how many layers are shown (each examines the neurons again).
    """
    decimals = map_decimals(matrix.values)
    at = f" AT LAYER {matrix.layer}" if at_layer else ""
    sections = []
    if grids:
        sections += [render_activation_map(matrix, decimals, max_rows),
                     render_heatmap(matrix, decimals, max_rows, color)]
    sections.append(render_stats(stats, decimals + 1, weights, direction_labels, ranking,
                                 selection, title=f"NEURON STATISTICS{at}",
                                 samples=matrix.values.shape[0], notes=notes))
    if label_summaries is not None:
        sections.append(render_label_correlation(label_summaries, decimals + 1,
                                                 title=f"LABEL CORRELATION{at}",
                                                 noun=sample_noun, choice=choice,
                                                 layers=layers))
    if discovery is not None:
        sections.append(render_discovery(discovery, matrix.layer))
    return "\n\n".join(sections)


def massive_note(massive: tuple[Massive, ...], shown: tuple[int, ...]) -> str | None:
    """One sentence naming the layer's massive-activation dimensions, or None without any."""
    if not massive:
        return None
    named = ", ".join(f"{m.neuron} ({m.ratio:.0f}x)" for m in massive[:10])
    more = f" and {len(massive) - 10} more" if len(massive) > 10 else ""
    among = [str(m.neuron) for m in massive if m.neuron in shown]
    told = f"; among those shown: {', '.join(among)}" if among else ""
    return (f"massive-activation dimensions at this layer (mean |value| at least "
            f"{MASSIVE_FACTOR:g}x the median neuron's): {named}{more}; they top any ranking by "
            f"spread whatever the prompts{told}")


SPREAD_CAVEAT = ("its simultaneous 95% interval excludes 0, but that interval assumes one "
                 "spread per label; the test allows each label its own, and with few prompts "
                 "per label it is the stricter of the two, so this is no finding, nor chance "
                 "alone")


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def render_discovery(discovery: Discovery, layer: int) -> str:
    """What --auto-discover tested and how, then each surviving neuron: effect, 95% interval,
    p and corrected p; with none, one plain sentence, the smallest effect the test would have
    found (80% power), and the largest statistic chance gave."""
    symbol = discovery.symbol
    form = "+.2f" if discovery.effect == "Cohen's d" else ".3f"  # eta-squared is never < 0
    lines = banner(f"DISCOVERED NEURONS AT LAYER {layer}") + [
        f"(test: {discovery.test_text()}; seed {discovery.seed}; 95% CI: {INTERVAL_TEXT})"]
    if discovery.effect == "Cohen's d":
        lines.append(f"(d > 0: higher on {escape(discovery.labels[0])} than on "
                     f"{escape(discovery.labels[1])})")
    if any(f.separated for f in discovery.shown):
        lines.append(f"({symbol} = {'±inf' if symbol == 'd' else '1'}: the labels perfectly "
                     "separated, no spread within any (pooled sd 0), and its interval that "
                     "point, as every other value is rejected; the evidence is the p)")
    if discovery.untested:
        lines.append(f"({plural(len(discovery.untested), 'neuron')} not tested: constant, or "
                     "missing or "
                     "non-finite values)")
    if discovery.smallest_p >= discovery.alpha:
        cause, fix = discovery.floor_cause()
        lines.append(f"({cause} no p can fall below {discovery.alpha:g}: the smallest possible "
                     f"is {discovery.smallest_p:.2g}; {fix})")
    if not discovery.findings:
        best = discovery.candidates[0] if discovery.candidates else None
        lines.append(f"No neuron survives: none of the {discovery.tested} tested has corrected "
                     f"p < {discovery.alpha:g}, so none separates the label means beyond what "
                     "resamples without a difference do.")
        lines.append(f"Not finding is not absence: {discovery.detectable_text()}.")
        if discovery.sparse_note() is not None:
            lines.append(f"({discovery.sparse_note()})")
        if best is not None:
            why = (SPREAD_CAVEAT if best.low > 0 or best.high < 0 else
                   "a maximum over every neuron, expected to be large by chance alone")
            lines.append(f"(the largest F of the {discovery.tested}, neuron {best.neuron}: "
                         f"{symbol}={best.effect:{form}}, corrected p={_p(best.p_corrected)}; "
                         f"{why}; the neurons shown above are for inspection only)")
        return "\n".join(lines)
    lines.append(f"{discovery.survivors} of {plural(discovery.tested, 'neuron')} "
                 f"{agree(discovery.survivors, 'survives', 'survive')} at corrected p < "
                 f"{discovery.alpha:g}; the {len(discovery.findings)} strongest:")
    names = _neuron_ids([f.neuron for f in discovery.findings])
    effects = _aligned([f"{f.effect:{form}}" for f in discovery.findings])
    intervals = _aligned([f"[{f.low:{form}}, {f.high:{form}}]" for f in discovery.findings])
    for name, effect, interval, found in zip(names, effects, intervals, discovery.findings,
                                             strict=True):
        lines.append(f"{name}: {symbol}= {effect}  95% CI {interval}  p={_p(found.p)}  "
                     f"corrected p="
                     f"{p_shown(found.p_corrected, _p(found.p_corrected), discovery.alpha)}")
    lines.append(f"(p cannot go below 1/{discovery.permutations + 1} = "
                 f"{_p(1 / (discovery.permutations + 1))} with "
                 f"{plural(discovery.permutations, 'resample')}. "
                 "The corrected p and the intervals allow for testing every neuron; the "
                 "effects do not: chosen as the largest, they tend to overstate the true "
                 "effect)")
    if discovery.tested < FEW_UNITS:
        lines.append(f"({FEW_UNITS_NOTE.format(tested=discovery.tested)})")
    return "\n".join(lines)


# --- JSON ---------------------------------------------------------------------------------------


