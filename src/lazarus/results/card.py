"""What a unit card found (`CardResult`): per unit (a neuron, an MoE expert unit, a head or a
saved direction) what it writes (the weight view), where it fires over a corpus (the corpus
view) and what intervening on it does (the causal view), with the JSON `lazarus introspect
card -o` writes, which the HTML dashboard (`render.card_html`) is drawn from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus.results.tables import dataframe
from lazarus.text import json_plain


@dataclass(frozen=True)
class TokenValue:
    token: str  # the token as text
    value: float


@dataclass(frozen=True)
class WeightView:
    """The tokens the unit's write vector promotes and suppresses through the unembedding."""

    method: str  # how the values were computed, said to the user
    promoted: tuple[TokenValue, ...]  # top k, descending
    suppressed: tuple[TokenValue, ...]  # bottom k, ascending
    note: str | None
    values: np.ndarray  # float64 [vocab]: every token's value


@dataclass(frozen=True)
class Context:
    """A kept token in its window: every token shown, each with the unit's value there."""

    tokens: tuple[str, ...]
    values: tuple[float, ...]  # the unit's value at each token (`capture` of the window)
    focus: int  # index in `tokens` of the token this example is about
    value: float  # the scan's value of the focal token
    document: int  # the document's line (or row), 0-based
    window: int  # the window's number within the document
    position: int  # the focal token's position in the document's tokens


Shown = tuple[tuple[Context, ...], tuple[Context, ...]]  # a neuron's (top, bottom) contexts


@dataclass(frozen=True)
class CorpusView:
    count: int  # tokens read (an MoE expert unit's: those routed to its expert)
    mean: float
    std: float  # population (ddof=0)
    min: float
    max: float
    fraction_active: float  # share of tokens with value > 0
    quantiles: tuple[tuple[float, float], ...]  # (q, value) from the scan's sketch
    histogram_edges: tuple[float, ...]
    histogram_counts: tuple[int, ...]
    top: tuple[Context, ...]  # highest first
    bottom: tuple[Context, ...]  # lowest first
    expert: int | None = None  # an MoE expert unit's expert: `count` is its routed tokens
    scored_tokens: int | None = None  # the corpus' scored tokens

    ACTIVE_RULE = "value > 0"


@dataclass(frozen=True)
class Ablation:
    metric: str
    effect: float  # mean change of the next-token loss (nats), positive: ablating hurts
    windows: int  # the corpus windows measured
    tokens: int  # the next tokens measured
    controls: int  # random units of the same site, ablated alike
    controls_mean: float | None
    controls_std: float | None
    percentile: float | None  # % of the controls whose effect is below the unit's
    p: float | None  # (1 + #{controls >= effect}) / (1 + controls)
    note: str | None


@dataclass(frozen=True)
class Steering:
    prompt: str
    scale: str  # what a coefficient multiplies, said to the user
    runs: tuple[tuple[float, str], ...]  # (coefficient, continuation), coefficient 0 first


@dataclass(frozen=True)
class CausalView:
    ablation: Ablation | None
    steering: Steering | None


@dataclass(frozen=True)
class UnitCard:
    id: str  # a short unique label
    kind: str  # neuron, expert_unit, head or direction
    neuron: int | None  # the column (neuron, MoE column e*I+u, head); None for a direction
    expert: int | None
    expert_unit: int | None
    weights: WeightView | None
    corpus: CorpusView | None
    causal: CausalView | None
    notes: tuple[str, ...]  # what is not shown, and why


@dataclass(frozen=True)
class CardResult:
    model_id: str
    site: str
    layer: int
    corpus: str | None  # the corpus file
    corpus_windows: int | None
    corpus_tokens: int | None
    units: tuple[UnitCard, ...]

    def neuron_ids(self) -> tuple[int, ...]:
        """The units' columns (not the directions'), in order: what a neuron-ids argument
        takes from this result."""
        return tuple(u.neuron for u in self.units if u.neuron is not None)

    def to_json(self) -> dict[str, Any]:
        """What `lazarus introspect card -o FILE.json` writes (plain JSON, null for NaN; an MoE
        expert unit's corpus view has its `expert` and `routed_tokens` (its `count`) out of the
        `scored_tokens`):
        {model, site, layer, corpus: {path, windows, tokens} | null, units: [UNIT]}, a UNIT
        {id, kind, neuron, expert, expert_unit, weights, corpus, causal, notes}."""
        corpus = None if self.corpus is None else {
            "path": self.corpus, "windows": self.corpus_windows, "tokens": self.corpus_tokens}
        return json_plain({"model": self.model_id, "site": self.site, "layer": self.layer,
                           "corpus": corpus, "units": [_unit_json(u) for u in self.units]})

    def to_numpy(self) -> np.ndarray:
        """The weight views' values, float64 [units, vocab]: row i is every token's value
        through the unembedding for unit i (NaN for a unit with no weight view)."""
        views = [u.weights for u in self.units]
        width = next((len(v.values) for v in views if v is not None), 0)
        rows = [v.values if v is not None else np.full(width, np.nan) for v in views]
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)

    def to_pandas(self):  # -> pandas.DataFrame
        """One row per unit: its statistics (the columns the dashboard sorts by); needs
        pandas."""
        rows = [_unit_row(self, u) for u in self.units]
        return dataframe({key: [row[key] for row in rows] for key in rows[0]} if rows else {})


def _unit_json(u: UnitCard) -> dict[str, Any]:
    weights = None if u.weights is None else {
        "method": u.weights.method,
        "promoted": [{"token": t.token, "value": t.value} for t in u.weights.promoted],
        "suppressed": [{"token": t.token, "value": t.value} for t in u.weights.suppressed],
        "note": u.weights.note}
    return {"id": u.id, "kind": u.kind, "neuron": u.neuron, "expert": u.expert,
            "expert_unit": u.expert_unit, "weights": weights,
            "corpus": None if u.corpus is None else _corpus_json(u.corpus),
            "causal": None if u.causal is None else _causal_json(u.causal),
            "notes": list(u.notes)}


def _corpus_json(c: CorpusView) -> dict[str, Any]:
    def context(x: Context) -> dict[str, Any]:
        return {"tokens": list(x.tokens), "values": list(x.values), "focus": x.focus,
                "value": x.value, "document": x.document, "window": x.window,
                "position": x.position}

    return {"count": c.count, "scored_tokens": c.scored_tokens,
            "routed_tokens": None if c.expert is None else c.count, "expert": c.expert,
            "mean": c.mean, "std": c.std, "min": c.min, "max": c.max,
            "fraction_active": c.fraction_active, "active_rule": c.ACTIVE_RULE,
            "quantiles": [{"q": q, "value": v} for q, v in c.quantiles],
            "histogram": {"edges": list(c.histogram_edges),
                          "counts": list(c.histogram_counts)},
            "top": [context(x) for x in c.top], "bottom": [context(x) for x in c.bottom]}


def _causal_json(c: CausalView) -> dict[str, Any]:
    a, s = c.ablation, c.steering
    ablation = None if a is None else {
        "metric": a.metric, "effect": a.effect, "windows": a.windows, "tokens": a.tokens,
        "controls": {"count": a.controls, "mean": a.controls_mean, "std": a.controls_std,
                     "percentile": a.percentile, "p": a.p},
        "note": a.note}
    return {"ablation": ablation,
            "steering": None if s is None else [
                {"coefficient": k, "continuation": text} for k, text in s.runs],
            "steering_prompt": None if s is None else s.prompt,
            "steering_scale": None if s is None else s.scale}


def _unit_row(result: CardResult, u: UnitCard) -> dict[str, Any]:
    w, c = u.weights, u.corpus
    a = None if u.causal is None else u.causal.ablation
    return {"model": result.model_id, "layer": result.layer, "site": result.site, "id": u.id,
            "kind": u.kind, "neuron": u.neuron, "expert": u.expert,
            "expert_unit": u.expert_unit,
            "top_promoted": None if w is None or not w.promoted else w.promoted[0].token,
            "top_promoted_value": None if w is None or not w.promoted else w.promoted[0].value,
            **{key: None if c is None else getattr(c, key)
               for key in ("count", "mean", "std", "min", "max", "fraction_active")},
            "ablation_effect": None if a is None else a.effect,
            "ablation_percentile": None if a is None else a.percentile}
