"""Every token of a corpus scan's shown contexts with the unit's value there: `examples` keeps
only the focal token's value, so the windows of the kept tokens run again through `capture` at
every position. Only the shown windows run again, a chunk of windows at a time, each chunk
reading only the columns its examples need (a scan of every neuron stays within memory), and
only the shown slice of each window is kept. Shared by the card's corpus view and the
`examples` HTML page."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lazarus.analyses.examples import (
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    analyse_examples,
    find_windows,
)
from lazarus.analyses.options import ExamplesOptions
from lazarus.analyses.scan import project
from lazarus.analyses.shards import ScanSettings
from lazarus.engine.capture import capture_ids
from lazarus.engine.handle import ModelHandle
from lazarus.engine.trace import CaptureRequest
from lazarus.io.corpus import prefix_of
from lazarus.results.card import Context, Shown
from lazarus.results.examples import Example, ExamplesResult

CHUNK_WINDOWS = 64  # windows captured together (times the columns they need: the memory used)


def shaded_contexts(model: ModelHandle, scan: ExamplesResult,
                    direction: np.ndarray | None = None) -> list[Shown]:
    """Per neuron of `scan`, in order, its top and bottom examples as `Context`s: the tokens
    around each (at most CONTEXT_BEFORE before, CONTEXT_AFTER after, as `examples` shows them),
    each with the neuron's value at that token (NaN where the site has none). With the
    `direction` a projection scan read (`ExamplesOptions.projection`), its one unit's value:
    every token's activation . direction, as the scan computes it (`scan.project`)."""
    import torch

    tokenizer = model.tokenizer()
    needs: dict[tuple[int, int], set[int]] = {}  # (doc, window) -> neuron indices shown there
    for k, neuron in enumerate(scan.neurons):
        for example in (*neuron.top, *neuron.bottom):
            needs.setdefault((example.doc, example.window), set()).add(k)
    wanted: dict[int, set[int]] = {}
    for doc, window in needs:
        wanted.setdefault(doc, set()).add(window)
    settings = ScanSettings(corpus=scan.corpus, layer=scan.layer, site=scan.site,
                            window=scan.window, stride=scan.stride, text_field=scan.text_field)
    windows = find_windows(settings, tokenizer, wanted)
    prefix = list(prefix_of(tokenizer))
    loaded = model.weights(scan.layer)
    ids = scan.neuron_ids()
    vector = None if direction is None else torch.tensor(np.asarray(direction, np.float32))
    values: dict[tuple[int, int, int], list[float]] = {}  # (doc, window, k) -> window's values
    keys = sorted(needs)
    for start in range(0, len(keys), CHUNK_WINDOWS):
        chunk = keys[start:start + CHUNK_WINDOWS]
        shown = sorted(set().union(*(needs[key] for key in chunk)))
        request = CaptureRequest((scan.layer,), scan.site, "all",
                                 None if vector is not None else tuple(ids[k] for k in shown))
        rows = capture_ids(loaded, [prefix + list(windows[key].tokens) for key in chunk],
                           request)[scan.layer]  # per window: float32 [prefix + tokens, shown]
        if vector is not None:
            rows = [project(torch.as_tensor(row), vector).numpy() for row in rows]
        for key, row in zip(chunk, rows, strict=True):
            for j, k in enumerate(shown):
                if k in needs[key]:
                    values[(*key, k)] = [float(v) for v in row[len(prefix):, j]]

    def context(example: Example, k: int) -> Context:
        window = windows[(example.doc, example.window)]
        first = max(0, example.token - CONTEXT_BEFORE)
        end = min(len(window.tokens), example.token + 1 + CONTEXT_AFTER)
        return Context(tokens=tuple(tokenizer.decode([t]) for t in window.tokens[first:end]),
                       values=tuple(values[(example.doc, example.window, k)][first:end]),
                       focus=example.token - first, value=example.value, document=example.doc,
                       window=example.window, position=window.start + example.token)

    return [(tuple(context(e, k) for e in n.top), tuple(context(e, k) for e in n.bottom))
            for k, n in enumerate(scan.neurons)]


def examples_and_contexts(model: ModelHandle, corpus: str, options: ExamplesOptions,
                          shade: bool, progress: Callable[[int, int], None] | None = None,
                          ) -> tuple[ExamplesResult, list[Shown] | None]:
    """`examples`' scan and, for its HTML page (`shade`), the shown contexts shaded token by
    token: both need the model, so both run where it is (`lazarus serve`, or in process)."""
    result = analyse_examples(model, corpus, options, progress)
    if not shade:
        return result, None
    direction = options.direction if options.projection else None
    return result, shaded_contexts(model, result, None if direction is None
                                   else direction.direction)  # type: ignore[union-attr]
