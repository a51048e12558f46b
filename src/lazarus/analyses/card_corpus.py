"""A unit card's corpus view: `examples`' scan of the corpus (statistics, quantiles, histogram,
top and bottom tokens), then the windows of the kept tokens run again through `capture` at every
position, so that each token shown in a context carries the unit's value there, not only the
focal one. Only the shown windows run again, and only the cards' columns are kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lazarus.analyses.card_options import CardOptions
from lazarus.analyses.examples import CONTEXT_AFTER, CONTEXT_BEFORE, analyse_examples, find_windows
from lazarus.analyses.options import ExamplesOptions
from lazarus.analyses.shards import ScanSettings
from lazarus.engine.capture import capture_ids
from lazarus.engine.handle import ModelHandle
from lazarus.engine.trace import CaptureRequest
from lazarus.io.corpus import Window, prefix_of
from lazarus.results.card import Context, CorpusView
from lazarus.results.examples import Example, ExamplesResult
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
    tokenizer = model.tokenizer()
    wanted: dict[int, set[int]] = {}
    for neuron in scan.neurons:
        for example in (*neuron.top, *neuron.bottom):
            wanted.setdefault(example.doc, set()).add(example.window)
    settings = ScanSettings(corpus=scan.corpus, layer=layer, site=site, window=scan.window,
                            stride=scan.stride, text_field=scan.text_field)
    windows = find_windows(settings, tokenizer, wanted)
    keys = sorted(windows)
    prefix = prefix_of(tokenizer)
    request = CaptureRequest((layer,), site, "all", tuple(columns))
    rows = capture_ids(model.weights(layer), [prefix + windows[k].tokens for k in keys],
                       request)[layer]  # per window: float32 [prefix + tokens, columns]
    values = {key: row[len(prefix):] for key, row in zip(keys, rows, strict=True)}

    def context(example: Example, k: int) -> Context:
        window: Window = windows[(example.doc, example.window)]
        start = max(0, example.token - CONTEXT_BEFORE)
        end = min(len(window.tokens), example.token + 1 + CONTEXT_AFTER)
        shown = values[(example.doc, example.window)][start:end, k]
        return Context(tokens=tuple(tokenizer.decode([t]) for t in window.tokens[start:end]),
                       values=tuple(float(v) for v in shown), focus=example.token - start,
                       value=example.value, document=example.doc, window=example.window,
                       position=window.start + example.token)

    views = []
    for k, n in enumerate(scan.neurons):
        views.append(CorpusView(
            count=n.count, mean=n.mean, std=n.std, min=n.min, max=n.max,
            fraction_active=n.fraction_positive,
            quantiles=tuple((q, n.quantiles[f"p{round(q * 100)}"]) for q in QUANTILES),
            histogram_edges=n.histogram_edges, histogram_counts=n.histogram_counts,
            top=tuple(context(e, k) for e in n.top),
            bottom=tuple(context(e, k) for e in n.bottom)))
    return scan, views
