"""Tidy tables of results: one record per (layer, prompt[, token], neuron) value, for CSV files
and, when pandas is installed, DataFrames."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lazarus.errors import LazarusError


def dataframe(columns: Mapping[str, Sequence[Any]]):  # -> pandas.DataFrame
    try:
        import pandas as pd
    except ImportError:
        raise LazarusError("to_pandas needs pandas (pip install pandas)") from None
    return pd.DataFrame(dict(columns))


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with a header line; None is an empty cell, floats keep every float32 digit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else _cell(value) for value in row])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if value != value else repr(value)
    return value
