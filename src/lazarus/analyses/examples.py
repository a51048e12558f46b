"""`Model.examples`: the top- and bottom-activating tokens of chosen neurons over a corpus.

Choose the neurons (ids, a direction's top-k, or every neuron of the site) and the work folder
(`examples_plan`), scan the corpus (`scan.run_scan`, resumable, one process or Ray workers),
then give each kept example its context: the window's tokens around it, at most CONTEXT_BEFORE
before and CONTEXT_AFTER after, as the model saw them (the window's own tokens, not the
document's beyond it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lazarus.analyses.examples_plan import plan_examples
from lazarus.analyses.options import ExamplesOptions
from lazarus.analyses.scan import ScanOutcome, local_executor, run_scan
from lazarus.analyses.scan_ray import ray_executor
from lazarus.analyses.shards import ScanSettings
from lazarus.engine.handle import ModelHandle
from lazarus.errors import LazarusError
from lazarus.io.corpus import Window, document_windows, read_documents
from lazarus.results.examples import Example, ExamplesResult, NeuronExamples
from lazarus.stats.sketch import QUANTILES, Summary

CONTEXT_BEFORE = 16  # tokens of context shown before an example's token
CONTEXT_AFTER = 4  # and after it
HISTOGRAM_BINS = 10


def analyse_examples(model: ModelHandle, corpus: str, options: ExamplesOptions,
                     progress: Callable[[int, int], None] | None = None) -> ExamplesResult:
    """Scan `corpus` as `options` say (see `examples_plan`), then give each kept example its
    context."""
    plan = plan_examples(model, corpus, options)
    settings, folder = plan.settings, plan.folder
    budget, batch = options.token_budget, options.max_batch
    if options.ray or options.ray_address is not None:  # here: cut the windows, merge
        executor = ray_executor(model, settings, folder, options.ray_workers, budget, batch,
                                options.ray_address)
    else:
        executor = local_executor(lambda: model.weights(settings.layer), settings, folder,
                                  budget, batch)
    tokenizer = model.tokenizer()
    outcome = run_scan(tokenizer, model.info.config, settings, folder, executor, progress,
                       plan.width, model.warn)
    return _result(model, settings, outcome, plan.choice, tokenizer)


def _result(model: ModelHandle, settings: ScanSettings, outcome: ScanOutcome, choice: str,
            tokenizer: Any) -> ExamplesResult:
    summary = outcome.summary
    if summary.count == 0:  # only expert units: their expert was routed no scored token
        raise LazarusError(f"no token of {settings.corpus} is routed to these units' expert "
                           "(give a longer corpus or another expert's units)")
    ids = settings.neurons if settings.neurons is not None else tuple(range(summary.width))
    contexts = _contexts(settings, tokenizer, summary)
    quantiles = summary.quantiles()
    edges, counts = summary.histogram(HISTOGRAM_BINS)
    std = summary.std()
    neurons = []
    for k, neuron in enumerate(ids):
        def chosen(values: Any, where: Any, k: int = k) -> tuple[Example, ...]:
            return tuple(Example(float(v), *map(int, at), *contexts[tuple(map(int, at))])
                         for v, at in zip(values[k], where[k], strict=True))

        neurons.append(NeuronExamples(
            neuron=int(neuron), count=summary.count, mean=float(summary.mean[k]),
            std=float(std[k]), fraction_positive=float(summary.positive[k] / summary.count),
            min=float(summary.bottom[k, 0]), max=float(summary.top[k, 0]),
            quantiles={f"p{round(q * 100)}": float(v)
                       for q, v in zip(QUANTILES, quantiles[k], strict=True)},
            histogram_edges=tuple(float(e) for e in edges[k]),
            histogram_counts=tuple(int(c) for c in counts[k]),
            top=chosen(summary.top, summary.top_ids),
            bottom=chosen(summary.bottom, summary.bottom_ids)))
    return ExamplesResult(
        model_id=model.model_id, layer=settings.layer, site=settings.site,
        corpus=settings.corpus, window=settings.window, stride=settings.stride,
        text_field=settings.text_field, examples=settings.examples,
        documents=outcome.documents, windows=outcome.windows, tokens=summary.count,
        shards=outcome.shards, resumed_shards=outcome.resumed, work_dir=str(outcome.folder),
        neuron_choice=choice, neurons=tuple(neurons), summary=summary,
        scored_tokens=outcome.scored)


def _contexts(settings: ScanSettings, tokenizer: Any,
              summary: Summary) -> dict[tuple[int, int, int], tuple[str, str, str]]:
    """(before, token, after) texts of every kept example, read again from the corpus."""
    wanted: dict[int, set[tuple[int, int]]] = {}
    for where in (summary.top_ids, summary.bottom_ids):
        for doc, window, token in where.reshape(-1, 3).tolist():
            wanted.setdefault(doc, set()).add((window, token))

    def text(tokens: Sequence[int]) -> str:
        return "".join(tokenizer.decode([t]) for t in tokens)

    windows = find_windows(settings, tokenizer, {doc: {window for window, _token in places}
                                                 for doc, places in wanted.items()})
    found = {}
    for doc, places in wanted.items():
        for window, token in places:
            tokens = windows[(doc, window)].tokens
            found[(doc, window, token)] = (
                text(tokens[max(0, token - CONTEXT_BEFORE):token]), text(tokens[token:token + 1]),
                text(tokens[token + 1:token + 1 + CONTEXT_AFTER]))
    return found


def find_windows(settings: ScanSettings, tokenizer: Any,
                 wanted: dict[int, set[int]]) -> dict[tuple[int, int], Window]:
    """The scan's windows named by `wanted` ({doc: window indices}), read again from the
    corpus: only their documents are tokenized."""
    found = {}
    for doc, document in read_documents(settings.corpus, settings.text_field):
        if doc in wanted:
            found.update(((doc, w.index), w) for w in document_windows(
                tokenizer, doc, document, settings.window, settings.stride)
                if w.index in wanted[doc])
    return found
