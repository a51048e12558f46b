"""Text view of `examples`: per neuron, its statistics, a histogram, and its top and bottom
tokens in context, the token in [brackets] (on a colour terminal, instead shaded by its value
on the diverging scale of `results.palette`, relative to the neuron's largest |value|)."""

from __future__ import annotations

from collections.abc import Sequence

from lazarus.render import html_parts as h
from lazarus.results import palette
from lazarus.results.card import Shown
from lazarus.results.examples import Example, ExamplesResult, NeuronExamples
from lazarus.stats.sketch import beyond_note
from lazarus.text import banner, escape, plural, routed_share

BAR_WIDTH = 30


def render_examples(result: ExamplesResult, color: bool = False) -> str:
    lines = banner(f"TOP-ACTIVATING EXAMPLES - layer {result.layer}, {result.site}")
    lines += [f"model {result.model_id}; corpus {result.corpus}: {_counts(result)}",
              f"neurons: {result.neuron_choice}"]
    for neuron in result.neurons:
        lines += ["", *render_neuron(neuron, color)]
    return "\n".join(lines)


def _counts(result: ExamplesResult) -> str:
    return (f"{plural(result.documents, 'document')}, {plural(result.windows, 'window')} of "
            f"{plural(result.window, 'token')} (stride {result.stride}), "
            + (f"{plural(result.tokens, 'token')} scored" if result.scored_tokens in (
                None, result.tokens) else routed_share(result.tokens, result.scored_tokens)))


def render_neuron(n: NeuronExamples, color: bool = False) -> list[str]:
    q = n.quantiles
    lines = [f"neuron {n.neuron}",
             f"  mean {n.mean:.3f}  std {n.std:.3f}  positive {100 * n.fraction_positive:.1f}%  "
             f"min {n.min:.3f}  max {n.max:.3f}  (n={n.count})",
             "  quantiles " + "  ".join(f"{key} {value:.3f}" for key, value in q.items())]
    beyond = beyond_note(n.min, n.max)
    lines += [f"  ({beyond})"] if beyond else []
    lines += ["  histogram (approximate: each value counted at its sketch bucket's value)",
              *_histogram(n.histogram_edges, n.histogram_counts)]
    limit = max(abs(n.min), abs(n.max)) if color else None
    for title, chosen in (("top", n.top), ("bottom", n.bottom)):
        lines.append(f"  {title} {len(chosen)}")
        lines += [_example(e, limit) for e in chosen]
    return lines


def _histogram(edges: tuple[float, ...], counts: tuple[int, ...]) -> list[str]:
    largest = max(counts, default=0) or 1
    return [f"    {edges[i]:>9.3f} .. {edges[i + 1]:>9.3f} "
            f"{'#' * round(BAR_WIDTH * count / largest):<{BAR_WIDTH}} {count}"
            for i, count in enumerate(counts)]


def _example(e: Example, limit: float | None) -> str:
    """One context line; with `limit` (colour), the token shaded by `e.value / limit`."""
    token = escape(e.text)
    marked = f"[{token}]" if limit is None else palette.shaded(token, e.value, limit)
    where = f"doc {e.doc}:{e.window}:{e.token}"
    return f"    {e.value:>9.3f}  {escape(e.before)}{marked}{escape(e.after)}   ({where})"


def render_html(result: ExamplesResult, contexts: Sequence[Shown]) -> str:
    """A self-contained page (inline style, no script, nothing fetched): per neuron its
    statistics, quantiles and histogram, and its top and bottom tokens in context (`contexts`:
    `analyses.contexts.shaded_contexts(model, result)`), every token shaded by the neuron's
    value there relative to its largest |value| (`results.palette`), the value as its title."""
    title = f"lazarus examples: {result.model_id}, layer {result.layer}, {result.site}"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{h.text(title)}</title><style>{h.STYLE}</style></head><body>",
             f"<h1>{h.text(title)}</h1>",
             f"<p>corpus {h.text(result.corpus)}: {_counts(result)}; neurons: "
             f"{h.text(result.neuron_choice)}</p>"]
    missing = "no value" if result.scored_tokens in (None, result.tokens) else "not routed"
    for n, shown in zip(result.neurons, contexts, strict=True):
        limit = h.limit_of([n.min, n.max])
        parts += [f'<section class="neuron" id="neuron-{n.neuron}"><h2>neuron {n.neuron}</h2>',
                  f"<p>mean {n.mean:.4g}, std {n.std:.4g}, positive "
                  f"{100 * n.fraction_positive:.1f}%, min {n.min:.4g}, max {n.max:.4g} "
                  f"(n={n.count})</p>",
                  h.quantiles_table(list(n.quantiles.items())),
                  beyond_html(n.min, n.max),
                  "<p class=\"note\">histogram (approximate: each value counted at its sketch "
                  "bucket's value)</p>",
                  h.histogram_svg(n.histogram_edges, n.histogram_counts, limit)]
        for kind, chosen, kept in (("top", n.top, shown[0]), ("bottom", n.bottom, shown[1])):
            parts.append(f'<h3>{kind} {len(chosen)}</h3><table class="{kind}">')
            for e, c in zip(chosen, kept, strict=True):
                parts.append(
                    f"<tr>{h.number(e.value)}<td class=\"ctx\">"
                    f"{h.tokens(c.tokens, c.values, c.focus, limit, missing)}</td>"
                    f"<td>doc {e.doc}:{e.window}:{e.token}</td></tr>")
            parts.append("</table>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def beyond_html(low: float, high: float) -> str:
    """`stats.sketch.beyond_note` as a note paragraph ("" when every value is in range)."""
    note = beyond_note(low, high)
    return "" if note is None else f'<p class="note">{h.text(note)}</p>'
