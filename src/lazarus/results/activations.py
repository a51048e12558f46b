"""`ActivationMatrix` and `Activations`: what a capture produced, as plain numpy plus its
context, and as JSON, numpy and a tidy table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lazarus import __version__
from lazarus.results.tables import dataframe
from lazarus.text import json_plain, plural


@dataclass(frozen=True)
class ActivationMatrix:
    """Activations of some neurons at one layer and site, one row per prompt.

    `values[i, j]` is neuron `neurons[j]` on prompt `prompts[i]`, float32.
    """

    values: np.ndarray  # [prompts, neurons]
    prompts: tuple[str, ...]
    neurons: tuple[int, ...]
    layer: int
    labels: tuple[str, ...] | None = None
    site: str = "resid_post"
    model_id: str = ""

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.prompts), len(self.neurons)):
            raise ValueError(
                f"values shape {self.values.shape} does not match "
                f"{plural(len(self.prompts), 'prompt')} x {plural(len(self.neurons), 'neuron')}"
            )
        if self.labels is not None and len(self.labels) != len(self.prompts):
            raise ValueError("one label per prompt is needed")

    @classmethod
    def from_rows(
        cls,
        rows: np.ndarray,
        prompts: Sequence[str],
        layer: int,
        labels: Sequence[str] | None = None,
        site: str = "resid_post",
        model_id: str = "",
    ) -> ActivationMatrix:
        """Wrap full-width rows (every neuron of the layer) as a matrix."""
        return cls(
            values=np.asarray(rows, dtype=np.float32),
            prompts=tuple(prompts),
            neurons=tuple(range(rows.shape[1])),
            layer=layer,
            labels=None if labels is None else tuple(labels),
            site=site,
            model_id=model_id,
        )

    def select(self, neurons: Sequence[int]) -> ActivationMatrix:
        """The same prompts, only the given neurons, in the given order."""
        column_of = {neuron: column for column, neuron in enumerate(self.neurons)}
        columns = [column_of[neuron] for neuron in neurons]
        return ActivationMatrix(
            values=self.values[:, columns],
            prompts=self.prompts,
            neurons=tuple(int(n) for n in neurons),
            layer=self.layer,
            labels=self.labels,
            site=self.site,
            model_id=self.model_id,
        )


@dataclass(frozen=True)
class Activations:
    """Every neuron of a site at some layers, as `Model.capture` returns it.

    `rows[layer]` is float32 [prompts, width], or for position "all" a list of [tokens, width]
    arrays, one per prompt. NaN marks MoE expert units a token was not routed to.
    """

    rows: dict[int, np.ndarray | list[np.ndarray]]
    prompts: tuple[str, ...]
    layers: tuple[int, ...]
    site: str
    position: str | int
    model_id: str
    device: str
    dtype: str

    def to_json(self) -> dict:
        """Every value with its context, in plain JSON types: `activations` maps each layer (as
        text) to its rows, [prompt][neuron], or [prompt][token][neuron] for position "all";
        NaN (an MoE unit a token was not routed to) is null."""
        return json_plain({
            "lazarus_version": __version__, "model_id": self.model_id, "site": self.site,
            "position": self.position, "layers": list(self.layers),
            "prompts": list(self.prompts), "device": self.device, "dtype": self.dtype,
            "activations": {str(layer): [np.asarray(rows).tolist() for rows in self.rows[layer]]
                            for layer in self.layers},
        })

    def to_numpy(self, layer: int | None = None) -> np.ndarray | list[np.ndarray]:
        """One layer's rows; without `layer`, every layer stacked as [layers, prompts, width]
        (position "all": the list of per-prompt [layers, tokens, width] arrays)."""
        if layer is not None:
            if layer not in self.rows:
                raise KeyError(f"layer {layer} was not captured (captured: {list(self.layers)})")
            return self.rows[layer]
        if self.position == "all":
            return [np.stack([self.rows[n][i] for n in self.layers])
                    for i in range(len(self.prompts))]
        return np.stack([self.rows[n] for n in self.layers])

    def to_pandas(self):  # -> pandas.DataFrame
        """A tidy table, one row per (layer, prompt[, token], neuron); needs pandas."""
        records = {"layer": [], "prompt_index": [], "prompt": [], "token_index": [],
                   "neuron": [], "value": []}
        for layer in self.layers:
            for index, prompt in enumerate(self.prompts):
                values = np.atleast_2d(self.rows[layer][index])  # [tokens or 1, width]
                tokens, width = values.shape
                records["layer"] += [layer] * values.size
                records["prompt_index"] += [index] * values.size
                records["prompt"] += [prompt] * values.size
                token_ids = np.repeat(np.arange(tokens), width)
                records["token_index"] += token_ids.tolist() if self.position == "all" else (
                    [None] * values.size)
                records["neuron"] += np.tile(np.arange(width), tokens).tolist()
                records["value"] += values.reshape(-1).tolist()
        if self.position != "all":
            del records["token_index"]
        return dataframe(records)
