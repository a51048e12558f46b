"""What `lazarus introspect neurons` found, as frozen dataclasses, and its JSON.

JSON: with one layer, exactly the spec's format plus provenance keys. With several, the top
level keeps `model_id`, `neurons`, `prompts` and `labels`, `layers` lists the layer ids, and
`by_layer` maps each layer id (as text) to the spec's per-layer fields (`layer`,
`activations`, `stats`, `label_correlation`, `neuron_weights`); `across_layers` holds each
neuron's mean per layer and, with labels, its per-label mean per layer. With
`position="all"`, `tokens` holds each prompt's token texts and `activations` is
[prompt][token][neuron]. Missing values (MoE units of experts a token was not routed to) are
null, and their stats say how many values they count (`count`). Each layer read at full width
adds `massive_activations` (possibly empty), and `--auto-discover` adds `discovery`. With
labels, `label_correlation_method` says what the intervals and verdicts of `label_correlation`
claim for the way the neurons were chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lazarus import __version__
from lazarus.engine.collect import Collected
from lazarus.engine.positions import Position
from lazarus.results.activations import ActivationMatrix
from lazarus.results.plot_neurons import plot_neurons
from lazarus.results.tables import csv_text, dataframe, neurons_table
from lazarus.stats.discover import CORRECTION, INTERVAL_TEXT, TEST, Discovery
from lazarus.stats.intervals import R_INTERVAL_TEXT
from lazarus.stats.neurons import EFFECT, Choice, LabelSummary, Massive, NeuronStats
from lazarus.stats.power import POWER, WELCH_METHOD
from lazarus.text import json_number


@dataclass(frozen=True)
class LayerResult:
    """One layer: values of the chosen neurons (a row per prompt, or per token for "all"),
    their statistics and, with labels, their per-label means."""

    matrix: ActivationMatrix
    stats: list[NeuronStats]
    label_summaries: list[LabelSummary] | None
    per_token: tuple[np.ndarray, ...] | None = None  # "all": [tokens, neurons] per prompt
    width: int = 0  # neurons the site has at this layer
    experts: int | None = None  # MoE mlp_post: neuron n is unit n % (width / E) of expert n // ..
    massive: tuple[Massive, ...] | None = None  # None: the layer was not read at full width
    discovery: Discovery | None = None  # --auto-discover: the test of every neuron of the layer


@dataclass(frozen=True)
class NeuronsResult:
    layers: tuple[LayerResult, ...]
    neurons: tuple[int, ...]
    prompts: tuple[str, ...]
    labels: tuple[str, ...] | None
    site: str
    position: Position
    selection: str | None  # where the neurons came from, said to the user (None: --neurons)
    choice: Choice = Choice()  # how they were chosen: what their intervals and marks claim
    tokens: tuple[tuple[str, ...], ...] | None = None  # "all": each prompt's token texts
    # "all": how many leading tokens of each prompt are the tokenizer's prefix (e.g. BOS)
    prefixes: tuple[int, ...] | None = None
    weights: dict[int, float] | None = None  # the direction's weights of the neurons
    direction_labels: tuple[str | None, str | None] | None = None
    collected: Collected | None = None
    model_id: str = ""
    layer_count: int = 0
    hidden_size: int = 0
    merged_copies: int = 0  # repeated prompts merged into one (with labels; see io.distinct)

    @property
    def layer_ids(self) -> list[int]:
        return [result.matrix.layer for result in self.layers]

    def neuron_ids(self) -> tuple[int, ...]:
        """The neurons read, in order: what a neuron-ids argument takes from this result
        (`model.ablate(..., neurons=result)`)."""
        return self.neurons

    def to_json(self) -> dict:
        """The document `lazarus introspect neurons -o FILE.json` writes, provenance included."""

        collected = self.collected
        return result_json(self, {
            "lazarus_version": __version__,
            "site": self.site,
            "position": self.position,
            "layer_count": self.layer_count,
            "hidden_size": self.hidden_size,
            "dtype": None if collected is None else collected.dtype,
            "device": None if collected is None else collected.device,
            "neuron_selection": self.selection or "--neurons",
            "merged_copies": self.merged_copies,
        })

    def prefix_rows(self) -> np.ndarray:
        """Which sample rows (per token, position "all") are a tokenizer prefix token such as
        BOS: each prompt's first `prefixes[i]` rows; none for other positions."""
        if self.position == "all" and self.prefixes is not None and self.tokens is not None:
            return prefix_mask([len(tokens) for tokens in self.tokens], self.prefixes)
        return np.zeros(self.layers[0].matrix.values.shape[0], dtype=bool)

    def to_numpy(self, layer: int | None = None) -> np.ndarray:
        """Values of the chosen neurons: [samples, neurons] at `layer`, else [layers, samples,
        neurons]; a sample is a prompt, or a token of a prompt for position "all"."""
        if layer is None:
            return np.stack([result.matrix.values for result in self.layers])
        for result in self.layers:
            if result.matrix.layer == layer:
                return result.matrix.values
        raise KeyError(f"layer {layer} is not in this result (it has {self.layer_ids})")

    def plot(self, path: str) -> None:
        """The heatmap (and per-label means) as .png or .svg; needs matplotlib."""
        plot_neurons(self, path)

    def to_csv(self) -> str:
        """The tidy table as CSV text (what `-o FILE.csv` writes)."""
        return csv_text(*neurons_table(self))

    def to_pandas(self):  # -> pandas.DataFrame
        """The tidy table as a DataFrame; needs pandas."""
        header, rows = neurons_table(self)
        return dataframe({name: [row[k] for row in rows] for k, name in enumerate(header)})


def result_json(result: NeuronsResult, extra: dict) -> dict:
    """The saved format (see the module doc)."""
    documents = [_layer_json(result, layer) for layer in result.layers]
    for layer, document in zip(result.layers, documents, strict=True):
        document["site_width"] = layer.width  # MoE models mix dense and expert layers
    if len(documents) == 1:
        return {**documents[0], **extra}
    keep = ("model_id", "neurons", "prompts", "labels", "tokens")
    document = {key: documents[0][key] for key in keep if key in documents[0]}
    document["layers"] = result.layer_ids
    document["by_layer"] = {str(layer.matrix.layer): {k: v for k, v in doc.items()
                                                      if k not in keep}
                            for layer, doc in zip(result.layers, documents, strict=True)}
    across: dict = {"mean": {str(n): {str(layer.matrix.layer): json_number(layer.stats[j].mean)
                                       for layer in result.layers}
                             for j, n in enumerate(result.neurons)}}
    if result.labels is not None:
        across["label_means"] = {
            summary.label: {str(n): {str(layer.matrix.layer): json_number(
                layer.label_summaries[k].effects[j].mean) for layer in result.layers}
                for j, n in enumerate(result.neurons)}
            for k, summary in enumerate(result.layers[0].label_summaries)}
    document["across_layers"] = across
    return {**document, **extra}


def _layer_json(result: NeuronsResult, layer: LayerResult) -> dict:
    matrix = layer.matrix
    if result.position == "all":  # the spec's fields, per prompt rather than per token
        matrix = replace(matrix, prompts=result.prompts, labels=result.labels,
                         values=np.zeros((len(result.prompts), len(result.neurons)), np.float32))
    document = neurons_json(matrix, layer.stats, layer.label_summaries, result.weights, {})
    if layer.experts:
        units = layer.width // layer.experts
        document["moe"] = {"experts": layer.experts, "units_per_expert": units,
                           "expert_unit": {str(n): list(divmod(n, units))
                                           for n in result.neurons}}
        for summary in layer.label_summaries or ():
            for effect in summary.effects:
                if effect.count is not None and effect.count < summary.count:
                    label = document["label_correlation"][summary.label]["neurons"]
                    label[str(effect.neuron)]["count"] = effect.count
    if layer.label_summaries is not None:
        document["label_correlation_method"] = label_method_json(result.choice,
                                                                 len(layer.label_summaries))
    if layer.massive is not None:
        document["massive_activations"] = massive_json(layer.massive)
    if layer.discovery is not None:
        document["discovery"] = discovery_json(layer.discovery)
    samples = layer.matrix.values.shape[0]
    for stat in layer.stats:
        if stat.count is not None and stat.count < samples:
            document["stats"][str(stat.neuron)]["count"] = stat.count
    if result.position == "all":
        document["tokens"] = [list(tokens) for tokens in result.tokens]
        document["activations"] = [[[json_number(v) for v in row] for row in values.tolist()]
                                   for values in layer.per_token]
    return document


def neurons_json(
    matrix: ActivationMatrix,
    stats: list[NeuronStats],
    label_summaries: list[LabelSummary] | None,
    weights: dict[int, float] | None,
    extra: dict,
) -> dict:
    """The spec's saved format; `neuron_weights` only with weights, `label_correlation` only
    with labels, then the keys of `extra` (which may not replace any of these)."""
    result: dict = {
        "model_id": matrix.model_id,
        "layer": int(matrix.layer),
        "neurons": [int(n) for n in matrix.neurons],
        "prompts": list(matrix.prompts),
        "labels": None if matrix.labels is None else list(matrix.labels),
        "activations": [[json_number(v) for v in row] for row in matrix.values.tolist()],
    }
    if weights is not None:
        result["neuron_weights"] = {str(n): json_number(weights.get(n)) for n in matrix.neurons}
    result["stats"] = {
        str(s.neuron): {key: json_number(getattr(s, key)) for key in ("min", "max", "mean", "std")}
        for s in stats
    }
    if label_summaries is not None:
        result["label_correlation"] = {
            s.label: {
                "count": s.count,
                "neurons": {
                    str(e.neuron): {
                        "mean": json_number(e.mean),
                        "rest_mean": json_number(e.rest_mean),
                        "r": json_number(e.r),
                        "r_ci95": None if e.r_ci is None else [json_number(v) for v in e.r_ci],
                        "verdict": e.verdict,
                    }
                    for e in s.effects
                },
            }
            for s in label_summaries
        }
    clash = sorted(result.keys() & extra.keys())
    if clash:
        raise ValueError(f"extra keys would replace the report's own: {', '.join(clash)}")
    result.update(extra)
    return result


def label_method_json(choice: Choice, groups: int) -> dict:
    """What `label_correlation`'s intervals and verdicts claim: how the neurons were chosen
    (`chosen_by`: given, spread or effect; `among`: how many the choice looked at), the
    interval's method and family (1: each interval for its own neuron), and the rule behind a
    verdict."""
    if choice.per_token:
        interval, marks = None, "none: the tokens of one prompt are not independent samples"
    else:
        interval = R_INTERVAL_TEXT + ("; simultaneous (Bonferroni)" if choice.by == EFFECT
                                      else "")
        marks = ("the interval excludes 0" + (
            " and the neuron survives --auto-discover's correction" if choice.by == EFFECT
            else " (uncorrected)"))
    return {"chosen_by": choice.by, "among": choice.among, "interval": interval,
            "interval_family": None if interval is None else choice.family(groups),
            "verdict": marks}


def discovery_json(discovery: Discovery) -> dict:
    """--auto-discover's test, correction, counts and each shown neuron's figures."""
    def finding(f) -> dict:  # type: ignore[no-untyped-def]
        # d = +-inf (perfect separation) is null, as every non-finite number: its sign and
        # its why are said beside it
        return {"neuron": f.neuron, "effect": json_number(f.effect),
                "ci95": [json_number(f.low), json_number(f.high)], "p": f.p,
                "p_corrected": f.p_corrected, "perfect_separation": f.separated,
                "effect_text": f"{f.effect:+g}" if f.separated and f.effect != 1.0 else None}
    return {
        "effect": discovery.effect,
        "labels": list(discovery.labels),
        "test": TEST,
        "correction": CORRECTION,
        "interval": INTERVAL_TEXT,
        "permutations": discovery.permutations,
        "interval_family": discovery.tested,
        "alpha": discovery.alpha,
        "seed": discovery.seed,
        "tested": discovery.tested,
        "untested": list(discovery.untested),
        "survivors": discovery.survivors,
        "smallest_possible_p": discovery.smallest_p,
        "smallest_detectable": {"effect": json_number(discovery.detectable),
                                "measure": discovery.effect, "power": POWER,
                                "method": WELCH_METHOD},
        "silent_on_most": {"neurons": discovery.sparse, "share_of_null_maxima":
                           discovery.sparse_share, "note": discovery.sparse_note()},
        "findings": [finding(f) for f in discovery.findings],
        "candidates": [finding(f) for f in discovery.candidates],
    }


def massive_json(massive: tuple[Massive, ...]) -> list[dict]:
    return [{"neuron": m.neuron, "mean_abs": json_number(m.mean_abs),
             "ratio_to_median": json_number(m.ratio)} for m in massive]


def prefix_mask(lengths: Sequence[int], prefixes: Sequence[int]) -> np.ndarray:
    """bool [sum(lengths)]: the rows of prompts of `lengths` tokens, one after another, that are
    their first `prefixes[i]` tokens (the tokenizer's prefix, e.g. BOS)."""
    return np.concatenate([np.arange(length) < count for length, count
                           in zip(lengths, prefixes, strict=True)]) if lengths else \
        np.zeros(0, dtype=bool)
