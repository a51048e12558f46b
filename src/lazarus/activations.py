"""`ActivationMatrix`: what a capture produced, as plain numpy plus its context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
                f"{len(self.prompts)} prompts x {len(self.neurons)} neurons"
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
