"""A unit card's corpus view: `examples`' scan of the corpus (statistics, quantiles, histogram,
top and bottom tokens), each shown context with every token's value (`contexts`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lazarus.analyses.card_options import CardOptions
from lazarus.analyses.contexts import shaded_contexts
from lazarus.analyses.examples import analyse_examples
from lazarus.analyses.options import ExamplesOptions
from lazarus.engine.handle import ModelHandle
from lazarus.io.directions import Direction
from lazarus.results.card import CorpusView
from lazarus.results.examples import ExamplesResult
from lazarus.stats.sketch import QUANTILES


def corpus_views(model: ModelHandle, corpus: str, layer: int, site: str,
                 columns: Sequence[int], options: CardOptions,
                 progress: Callable[[int, int], None] | None = None,
                 direction: Direction | None = None, expert: int | None = None,
                 ) -> tuple[ExamplesResult, list[CorpusView]]:
    """The scan's result and a view per column of `columns`, in order; with a `direction`,
    one view of its projection (`ExamplesOptions.projection`: the activation's dot product
    with the vector as stored). `expert`: the columns are all units of this MoE expert, and
    the statistics are over the tokens routed to it (`scan_summary.summarize`)."""
    scan = analyse_examples(model, corpus, ExamplesOptions(
        layer=layer, site=site, neurons=None if direction is not None else list(columns),
        direction=direction, projection=direction is not None, examples=options.examples,
        window=options.window, stride=options.stride, text_field=options.text_field,
        work_dir=options.work_dir), progress)
    views = []
    shown = shaded_contexts(model, scan, None if direction is None else direction.direction)
    for n, (top, bottom) in zip(scan.neurons, shown, strict=True):
        views.append(CorpusView(
            count=n.count, mean=n.mean, std=n.std, min=n.min, max=n.max,
            fraction_active=n.fraction_positive,
            quantiles=tuple((q, n.quantiles[f"p{round(q * 100)}"]) for q in QUANTILES),
            histogram_edges=n.histogram_edges, histogram_counts=n.histogram_counts,
            top=top, bottom=bottom, expert=expert, scored_tokens=scan.scored_tokens))
    return scan, views
