"""What `examples` found (`ExamplesResult`): per neuron its statistics over every token of a
corpus and its top and bottom tokens in context, with the JSON `lazarus introspect examples -o`
writes and the rows of its Parquet file."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lazarus.errors import LazarusError
from lazarus.io.files import write_atomically
from lazarus.results.plot_examples import plot_examples
from lazarus.results.tables import dataframe
from lazarus.stats.sketch import Summary
from lazarus.text import json_plain


@dataclass(frozen=True)
class Example:
    value: float
    doc: int  # the document's line (or row), 0-based
    window: int  # the window's number within the document
    token: int  # the token's position within the window (special prefix not counted)
    before: str  # the window's text before the token (at most CONTEXT_BEFORE tokens)
    text: str  # the token
    after: str  # after it (at most CONTEXT_AFTER tokens)


@dataclass(frozen=True)
class NeuronExamples:
    neuron: int
    count: int  # tokens scored
    mean: float
    std: float  # population (ddof=0)
    fraction_positive: float
    min: float
    max: float
    quantiles: dict[str, float]  # "p1" ... "p99", from the sketch (within 0.78% relative)
    histogram_edges: tuple[float, ...]
    histogram_counts: tuple[int, ...]
    top: tuple[Example, ...]  # highest first
    bottom: tuple[Example, ...]  # lowest first


@dataclass(frozen=True)
class ExamplesResult:
    model_id: str
    layer: int
    site: str
    corpus: str
    window: int
    stride: int
    text_field: str
    examples: int
    documents: int
    windows: int
    tokens: int
    shards: int
    resumed_shards: int
    work_dir: str
    neuron_choice: str  # how the neurons were chosen
    neurons: tuple[NeuronExamples, ...]
    summary: Summary  # the merged summary itself (arrays per neuron, in `neurons` order)
    # the corpus' scored tokens; `tokens` is fewer for an MoE expert's units: the tokens routed
    # to their expert, the only ones where they have a value (None: as many as `tokens`)
    scored_tokens: int | None = None

    def neuron_ids(self) -> tuple[int, ...]:
        """The neurons' ids, in order: what a neuron-ids argument takes from this result."""
        return tuple(n.neuron for n in self.neurons)

    def plot(self, path: str) -> None:
        """Each neuron's histogram with its quantiles (see `results.plot_examples`), as .png or
        .svg; needs matplotlib."""
        plot_examples(self, path)

    def to_json(self) -> dict[str, Any]:
        """What `lazarus introspect examples -o FILE.json` writes (plain JSON types)."""
        document = {key: value for key, value in asdict(self).items() if key != "summary"}
        document["neurons"] = [asdict(n) for n in self.neurons]
        return json_plain(document)

    def to_numpy(self) -> np.ndarray:
        """The kept examples' values, float64 [neurons, 2, kept]: [:, 0] the top ones (highest
        first), [:, 1] the bottom ones (lowest first); kept = min(examples, tokens scored)."""
        shape = (len(self.neurons), 2, len(self.neurons[0].top) if self.neurons else 0)
        return np.array([[[e.value for e in n.top], [e.value for e in n.bottom]]
                         for n in self.neurons], dtype=np.float64).reshape(shape)

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per example (what `-o FILE.parquet` writes), with its neuron's summary."""
        rows = []
        for n in self.neurons:
            stats = {"neuron": n.neuron, "count": n.count, "mean": n.mean, "std": n.std,
                     "fraction_positive": n.fraction_positive, "min": n.min, "max": n.max,
                     **n.quantiles}
            for kind, chosen in (("top", n.top), ("bottom", n.bottom)):
                for rank, example in enumerate(chosen, start=1):
                    rows.append({"model": self.model_id, "layer": self.layer, "site": self.site,
                                 "kind": kind, "rank": rank, **asdict(example), **stats})
        return rows

    def to_pandas(self):  # -> pandas.DataFrame
        """`to_rows()` as a DataFrame: one row per example (the Parquet file's rows); needs
        pandas."""
        rows = self.to_rows()
        return dataframe({key: [row[key] for row in rows] for key in rows[0]} if rows else {})

    def write_parquet(self, path: str) -> None:
        """Write `to_rows()` as Parquet, atomically (needs pyarrow)."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise LazarusError("writing .parquet needs pyarrow (pip install pyarrow), or use "
                               "a .json name") from None

        table = pa.Table.from_pylist(self.to_rows())
        write_atomically(path, lambda temp: pq.write_table(table, str(temp)))
