"""Tidy tables of results: one record per (layer, prompt[, token], neuron) value, for CSV files
and, when pandas is installed, DataFrames."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lazarus.errors import LazarusError


def dataframe(columns: Mapping[str, Sequence[Any]]):  # -> pandas.DataFrame
    """`columns` (equal lengths) as a DataFrame; pandas is an optional extra, imported here."""
    try:
        import pandas as pd
    except ImportError:
        raise LazarusError("to_pandas needs pandas (pip install 'lazarus[pandas]')") from None
    return pd.DataFrame(dict(columns))


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with a header line; None and NaN are empty cells, floats keep every digit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else _cell(value) for value in row])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if value != value else repr(value)  # NaN: no value, as null in the JSON
    return value


def neurons_table(result: Any) -> tuple[list[str], list[list]]:
    """(header, rows) of a `NeuronsResult`'s tidy table: one row per layer x sample x neuron."""
    every = result.position == "all"
    header = ["layer", "prompt_index", "prompt", "label", *(
        ["token_index", "token"] if every else []), "neuron", "value"]
    samples = [(i, j) for i, prompt in enumerate(result.prompts)
               for j in range(len(result.tokens[i]) if every else 1)]
    rows = []
    for layer in result.layers:
        values = layer.matrix.values.tolist()  # [samples, neurons]
        for (i, j), row in zip(samples, values, strict=True):
            label = None if result.labels is None else result.labels[i]
            where = [j, result.tokens[i][j]] if every else []
            rows += [[layer.matrix.layer, i, result.prompts[i], label, *where, neuron, value]
                     for neuron, value in zip(result.neurons, row, strict=True)]
    return header, rows
