"""`Model.card`: a page per unit, what it writes, where it fires and what it does; the analysis
behind `lazarus introspect card` (never prints).

Units, all at one layer and site: neurons at `mlp_post` (at an MoE layer, column e*I + u is
unit u of expert e: an expert unit), heads at `attn_head`, neurons of any other site, or one
saved direction over the residual stream. Each card has up to three views:
- weights (`card_weights`): the tokens the unit's write vector promotes and suppresses through
  the final norm's scale and the unembedding (a neuron of a residual-width site writes its own
  basis vector); none for a head or a router weight;
- corpus (`card_corpus`, with a corpus): `examples`' scan, its contexts shaded token by token
  (a direction's: its projection, the activation . the vector as stored, as one unit; MoE
  expert units: one scan per expert, over the tokens routed to it);
- causal (`card_causal`, with `causal`): zero-ablation over the corpus' first windows against
  random units of the site, and `steer`'s continuations at a few coefficients.
What a card cannot show is said in its `notes`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import islice
from typing import Any

import numpy as np

from lazarus.analyses.card_causal import (
    DIRECTION_ABLATION,
    HEAD_STEERING,
    Ablator,
    largest_values,
    steering,
)
from lazarus.analyses.card_corpus import corpus_views
from lazarus.analyses.card_options import CardOptions
from lazarus.analyses.card_weights import weight_view
from lazarus.analyses.selection import check_direction, check_neurons, direction_name
from lazarus.engine import moe
from lazarus.engine.capture import capture
from lazarus.engine.handle import ModelHandle
from lazarus.engine.loading import LoadedModel
from lazarus.engine.sites import (
    RESIDUAL_WIDTH,
    check_neurons_early,
    decoder_blocks,
    unit_label,
    unit_noun,
)
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError
from lazarus.io.corpus import check_corpus, prefix_of, resolve_corpus, windows
from lazarus.io.directions import Direction
from lazarus.results.card import CardResult, CausalView, Steering, UnitCard

ROUTER_WEIGHTS = "a router weight scales an expert's output, it writes no vector: no weight view"
PROMPT_TOKENS = 8  # steering's default prompt: the first window's first tokens


def analyse_card(model: ModelHandle, corpus: str | None, options: CardOptions,
                 progress: Callable[[int, int], None] | None = None) -> CardResult:
    """The cards of the units `options` names (see the module's notes)."""
    layers = model.layers(options.layer)
    if len(layers) != 1:
        raise LazarusError(f"a card reads one layer; {options.layer} names {len(layers)} "
                           "(give one)")
    layer, direction, neurons = layers[0], options.direction, options.neurons
    site = options.site or (direction.site if direction is not None else None) or (
        "resid_post" if direction is not None else "mlp_post")
    if options.causal and corpus is None:
        raise LazarusError("--causal measures the ablation over the corpus' windows (give "
                           "--corpus)")
    if direction is not None:
        check_direction(model, direction, (layer,), site, None)
    else:
        check_neurons_early(model.info.config, model.hidden_size, site, layer, neurons)
    if corpus is not None:
        corpus = resolve_corpus(corpus)
        check_corpus(corpus, options.text_field)
    loaded = model.whole_weights()
    if neurons is not None:
        widths: dict[int, int] = {}
        capture(loaded, ["a"], CaptureRequest((layer,), site, "last"), widths=widths)
        check_neurons(neurons, widths[layer], site, layer)
    parts = moe.find_moe(decoder_blocks(loaded.model, loaded.blocks_loaded)[layer]) \
        if site == "mlp_post" else None
    columns = [] if neurons is None else list(neurons)
    cards = [_card(loaded, layer, site, column, parts, None, options) for column in columns]
    if direction is not None:
        cards = [_card(loaded, layer, site, None, None, direction, options)]

    scan = None
    if corpus is not None:  # one scan; at an MoE layer, one per expert (`_by_expert`)
        for expert, chosen in _by_expert(len(cards), columns, parts):
            scan, views = corpus_views(model, corpus, layer, site, columns if expert is None
                                       else [columns[i] for i in chosen], options, progress,
                                       direction, expert)
            for i, view in zip(chosen, views, strict=True):
                cards[i] = {**cards[i], "corpus": view}
        if direction is not None:
            cards[0]["notes"].append(f"corpus view: {scan.neuron_choice}")
    if options.causal:
        assert corpus is not None
        _causal(model, loaded, corpus, layer, site, columns, cards, options)
    counts = (scan.windows, scan.scored_tokens) if scan is not None else (
        _counts(model, corpus, options) if corpus is not None else (None, None))
    return CardResult(model_id=model.model_id, site=site, layer=layer, corpus=corpus,
                      corpus_windows=counts[0], corpus_tokens=counts[1],
                      units=tuple(UnitCard(**{**card, "notes": tuple(card["notes"])})
                                  for card in cards))


def _by_expert(cards: int, columns: list[int], parts: moe.MoeParts | None,
               ) -> list[tuple[int | None, list[int]]]:
    """The scans a corpus view needs: (expert, indices into the cards) per expert at an MoE
    layer, since an expert's units have values only at the tokens routed to it; else one."""
    if parts is None:
        return [(None, list(range(cards)))]
    groups: dict[int, list[int]] = {}
    for i, column in enumerate(columns):
        groups.setdefault(parts.expert_unit(column)[0], []).append(i)
    return sorted(groups.items())


def _card(loaded: LoadedModel, layer: int, site: str, column: int | None,
          parts: moe.MoeParts | None, direction: Direction | None,
          options: CardOptions) -> dict[str, Any]:
    """A card's fields, its weight view made (the other views are added later)."""
    notes: list[str] = []
    expert = unit = None
    if direction is not None:
        kind, label = "direction", f"L{layer} {os.path.basename(direction_name(direction))}"
    else:
        kind = "expert_unit" if parts is not None else unit_noun(site)
        label = f"L{layer} {unit_label(site, column, parts and parts.units)}"
        if parts is not None:
            expert, unit = parts.expert_unit(column)
    weights = None
    if site == "router":
        notes.append(ROUTER_WEIGHTS)
    else:
        vector = direction.direction if direction is not None else None
        if direction is None and site in RESIDUAL_WIDTH:  # the basis vector of the stream
            vector = np.eye(loaded.info.hidden_size)[column]
        weights, why = weight_view(loaded, layer, site, column, vector, options.top_k)
        if why is not None:
            notes.append(why)
    return {"id": label, "kind": kind, "neuron": column, "expert": expert,
            "expert_unit": unit, "weights": weights, "corpus": None, "causal": None,
            "notes": notes}


def _causal(model: ModelHandle, loaded: LoadedModel, corpus: str, layer: int, site: str,
            columns: list[int], cards: list[dict[str, Any]], options: CardOptions) -> None:
    """Each card's causal view, over the corpus' first `causal_windows` windows."""
    tokenizer = model.tokenizer()
    first = list(islice(windows(corpus, tokenizer, options.window, options.stride,
                                options.text_field), options.causal_windows))
    if not first:
        raise LazarusError(f"{corpus} holds no text (give a corpus with at least one "
                           "non-empty document)")
    prefix = prefix_of(tokenizer)
    rows = [list(prefix) + list(w.tokens) for w in first]
    prompt = options.prompt or "".join(tokenizer.decode([t], skip_special_tokens=True)
                                       for t in first[0].tokens[:PROMPT_TOKENS])
    if cards[0]["kind"] == "direction":
        card = cards[0]
        card["notes"].append(DIRECTION_ABLATION)
        steered = steering(model, prompt, layer, site, None, options.direction, None,
                           len(rows), options)
        card["notes"] += _silent(steered)
        card["causal"] = CausalView(ablation=None, steering=steered)
        return
    ablator = Ablator(loaded, rows, max(1, len(prefix)), layer, site, columns, options)
    scales = [None] * len(columns) if site == "attn_head" else largest_values(
        loaded, rows, layer, site, columns, len(prefix))
    for card, column, scale in zip(cards, columns, scales, strict=True):
        steered = None
        if site == "attn_head":
            card["notes"].append(HEAD_STEERING)
        elif scale is None:
            card["notes"].append("the unit is never non-zero over the causal windows: not "
                                 "steered")
        else:
            steered = steering(model, prompt, layer, site, column, None, scale, len(rows),
                               options)
            card["notes"] += _silent(steered)
        card["causal"] = CausalView(ablation=ablator.ablation(column), steering=steered)


def _silent(steered: Steering) -> list[str]:
    """A note when the unsteered model says nothing after the prompt (it ends the text): its
    continuations then show only where an edit makes it go on."""
    if dict(steered.runs).get(0.0, "x"):
        return []
    return [f"unsteered, the model ends the text right after {steered.prompt!r}: give --prompt "
            "with a text it continues to see what steering changes"]


def _counts(model: ModelHandle, corpus: str, options: CardOptions) -> tuple[int, int]:
    """(windows, scored tokens) of the corpus, when no scan counted them."""
    count = tokens = 0
    for window in windows(corpus, model.tokenizer(), options.window, options.stride,
                          options.text_field):
        count += 1
        tokens += len(window.tokens) - window.scored_from
    return count, tokens
