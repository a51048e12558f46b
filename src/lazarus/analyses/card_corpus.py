"""A unit card's corpus view: `examples`' scan of the corpus (statistics, quantiles, histogram,
top and bottom tokens), each shown context with every token's value (`contexts`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lazarus.analyses.card_options import CardOptions
from lazarus.analyses.contexts import shaded_contexts
from lazarus.analyses.examples import analyse_examples
from lazarus.analyses.options import ExamplesOptions
from lazarus.engine.handle import ModelHandle
from lazarus.results.card import CorpusView
from lazarus.results.examples import ExamplesResult
from lazarus.stats.sketch import QUANTILES


def corpus_views(model: ModelHandle, corpus: str, layer: int, site: str,
                 columns: Sequence[int], options: CardOptions,
                 progress: Callable[[int, int], None] | None = None,
                 ) -> tuple[ExamplesResult, list[CorpusView]]:
    """The scan's result and a view per column of `columns`, in order."""
    scan = analyse_examples(model, corpus, ExamplesOptions(
        layer=layer, site=site, neurons=list(columns), examples=options.examples,
        window=options.window, stride=options.stride, text_field=options.text_field,
        work_dir=options.work_dir), progress)
    views = []
    for n, (top, bottom) in zip(scan.neurons, shaded_contexts(model, scan), strict=True):
        views.append(CorpusView(
            count=n.count, mean=n.mean, std=n.std, min=n.min, max=n.max,
            fraction_active=n.fraction_positive,
            quantiles=tuple((q, n.quantiles[f"p{round(q * 100)}"]) for q in QUANTILES),
            histogram_edges=n.histogram_edges, histogram_counts=n.histogram_counts,
            top=top, bottom=bottom))
    return scan, views
