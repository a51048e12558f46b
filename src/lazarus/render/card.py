"""Text view of `card`: a compact page per unit: the tokens it promotes and suppresses, its
corpus statistics and top and bottom contexts (the focal token in [brackets]), and what
ablating and steering it did."""

from __future__ import annotations

from lazarus.results.card import Ablation, CardResult, Context, CorpusView, UnitCard, WeightView
from lazarus.stats.sketch import beyond_note
from lazarus.text import banner, escape, plural, routed_share

BAR_WIDTH = 24
ALPHA = 0.05  # the family-wise level of the Bonferroni threshold given for reference


def p_note(tested: int, sortable: bool = False) -> str | None:
    """What the units' p are (`tested`: the units on the page with one): each its own test,
    uncorrected across them, with the Bonferroni threshold for reference; None for one unit.
    `sortable`: the page sorts its units by p (the HTML index; the text keeps their order)."""
    if tested < 2:
        return None
    sorting = ", which sorting puts first," if sortable else ""
    return (f"each unit's p (its ablation against the random units) is its own test, "
            f"uncorrected across the {tested} units on this page (the smallest of {tested}"
            f"{sorting} is small by chance more often than one unit's p); "
            f"Bonferroni threshold for reference: {ALPHA:g} / {tested} = "
            f"{ALPHA / tested:.3g}")


def tested_units(result: CardResult) -> int:
    """The units with an ablation p."""
    return sum(1 for u in result.units if u.causal is not None and u.causal.ablation is not None
               and u.causal.ablation.p is not None)


def render_card(result: CardResult) -> str:
    lines = banner(f"UNIT CARDS - layer {result.layer}, {result.site}")
    where = f"model {result.model_id}"
    if result.corpus is not None:
        where += (f"; corpus {result.corpus}: {plural(result.corpus_windows or 0, 'window')}, "
                  f"{plural(result.corpus_tokens or 0, 'token')}")
    lines.append(where)
    note = p_note(tested_units(result))
    if note is not None:
        lines.append(f"note: {note}")
    for unit in result.units:
        lines += ["", *render_unit(unit, note is not None)]
    return "\n".join(lines)


def render_unit(unit: UnitCard, several: bool = False) -> list[str]:
    """A unit's lines; `several`: its p is one of several on the page (said beside it)."""
    title = {"neuron": f"neuron {unit.neuron}", "head": f"head {unit.neuron}",
             "expert_unit": f"column {unit.neuron}: expert {unit.expert}, unit "
                            f"{unit.expert_unit}",
             "direction": "a saved direction"}[unit.kind]
    lines = [f"{escape(unit.id)} ({title})"]
    if unit.weights is not None:
        lines += _weights(unit.weights)
    if unit.corpus is not None:
        lines += _corpus(unit.corpus)
    if unit.causal is not None:
        if unit.causal.ablation is not None:
            lines += _ablation(unit.causal.ablation, several)
        steering = unit.causal.steering
        if steering is not None:
            lines.append(f"  steering {escape(repr(steering.prompt))} with "
                         f"{escape(steering.scale)}:")
            lines += [f"    {coefficient:>6g}  {escape(repr(text))}"
                      + ("  (empty)" if not text else "")
                      for coefficient, text in steering.runs]
    lines += [f"  note: {escape(note)}" for note in unit.notes]
    return lines


def _weights(w: WeightView) -> list[str]:
    def listed(tokens: tuple) -> str:
        return "  ".join(f"{escape(repr(t.token))} {t.value:+.3f}" for t in tokens)

    return [f"  weights ({w.method})",
            f"    promoted    {listed(w.promoted)}",
            f"    suppressed  {listed(w.suppressed)}"]


def _corpus(c: CorpusView) -> list[str]:
    lines = [f"  corpus  mean {c.mean:.3f}  std {c.std:.3f}  active {100 * c.fraction_active:.1f}%"
             f" ({c.ACTIVE_RULE})  min {c.min:.3f}  max {c.max:.3f}  (n={c.count})",
             "    quantiles " + "  ".join(f"p{round(100 * q)} {v:.3f}" for q, v in c.quantiles),
             "    histogram (approximate: each value counted at its sketch bucket's value)"]
    beyond = beyond_note(c.min, c.max)
    if beyond:
        lines.insert(2, f"    ({beyond})")
    if c.expert is not None and c.scored_tokens is not None:
        lines.insert(1, f"    {routed_share(c.count, c.scored_tokens, c.expert)}")
    largest = max(c.histogram_counts, default=0) or 1
    edges = c.histogram_edges
    lines += [f"      {edges[i]:>9.3f} .. {edges[i + 1]:>9.3f} "
              f"{'#' * round(BAR_WIDTH * n / largest):<{BAR_WIDTH}} {n}"
              for i, n in enumerate(c.histogram_counts)]
    for title, chosen in (("top", c.top), ("bottom", c.bottom)):
        lines.append(f"    {title} {len(chosen)}")
        lines += [_context(x) for x in chosen]
    return lines


def _context(x: Context) -> str:
    text = "".join(f"[{escape(t)}]" if i == x.focus else escape(t)
                   for i, t in enumerate(x.tokens))
    return f"      {x.value:>9.3f}  {text}   (doc {x.document}, token {x.position})"


def _ablation(a: Ablation, several: bool = False) -> list[str]:
    line = (f"  ablation (zero, {plural(a.windows, 'window')}, {plural(a.tokens, 'token')}): "
            f"loss {a.effect:+.4f} nats")
    if a.controls and a.controls_mean is not None:
        line += f"; {plural(a.controls, 'random unit')}: mean {a.controls_mean:+.4f}"
        if a.controls_std is not None:
            line += f", std {a.controls_std:.4f}"
        if a.percentile is not None:
            line += (f"; percentile {a.percentile:.0f}, p {a.p:.3g} (one-sided: loss rising"
                     + ("; uncorrected, see the note at the top)" if several else ")"))
    return [line] + ([f"    {escape(a.note)}"] if a.note else [])
