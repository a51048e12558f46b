"""What activation patching found: per site a grid of normalised scores (layers x token
positions, or layers x heads), with bootstrap intervals over pairs, the raw scores behind them,
and the JSON, CSV, arrays, tables and pictures made from them.

A cell's value is (mean over pairs of the patched run's metric - mean corrupted) / (mean clean -
mean corrupted): 1 = the clean run's score, 0 = the corrupted run's, in both directions
(denoising: clean activations patched into the corrupted run, where 1 means the patched
activation alone restores the clean behaviour; noising: corrupted activations patched into the
clean run, where 0 means it alone destroys it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus import __version__
from lazarus.engine.pair_terms import SCALE
from lazarus.results.patch_plot import plot_patch
from lazarus.results.tables import csv_text, dataframe
from lazarus.stats.bootstrap import FEW_PAIRS, NOTE, ROUGH
from lazarus.text import json_plain


@dataclass(frozen=True, eq=False)
class SiteGrid:
    """One site's grid. `axis` is "position" (a column is a token position, patched alone) or
    "head" (a column is a head, patched at every position)."""

    site: str
    axis: str
    values: np.ndarray  # float64 [layers, columns]: normalised
    low: np.ndarray | None  # float64 [layers, columns]: the interval (None for one pair)
    high: np.ndarray | None
    scores: np.ndarray  # float64 [pairs, layers, columns]: each patched run's raw metric


@dataclass(frozen=True, eq=False)
class PatchResult:
    model_id: str
    direction: str  # "denoise" or "noise"
    direction_text: str  # said in every output
    metric: str
    metric_text: str
    clean: tuple[str, ...]  # per pair, the prompts as given
    corrupt: tuple[str, ...]
    answer: tuple[str, ...]  # per pair, the judged token of the answer, and of the wrong text
    wrong: tuple[str, ...] | None
    clean_score: np.ndarray  # float64 [pairs]
    corrupt_score: np.ndarray  # float64 [pairs]
    layers: tuple[int, ...]
    positions: tuple[int, ...]  # the position columns, as token indices of pair 1
    tokens: tuple[str, ...]  # pair 1's clean tokens at those positions
    differs: tuple[bool, ...]  # per position: clean and corrupted tokens differ in some pair
    lengths: tuple[int, ...]  # per pair, its tokens (the answers' shared start included)
    seed: int
    grids: tuple[SiteGrid, ...]

    @property
    def pairs(self) -> int:
        return len(self.clean)

    @property
    def aligned(self) -> bool:
        """Pairs of different lengths: positions are counted from each pair's end."""
        return len(set(self.lengths)) > 1

    @property
    def interval_note(self) -> str | None:
        if self.pairs < 2:
            return None
        return NOTE + (f"; {ROUGH}" if self.pairs < FEW_PAIRS else "")

    def grid(self, site: str | None = None) -> SiteGrid:
        """The grid of `site` (default: the first)."""
        if site is None:
            return self.grids[0]
        for grid in self.grids:
            if grid.site == site:
                return grid
        raise KeyError(f"site {site!r} is not in this result (it has "
                       f"{', '.join(g.site for g in self.grids)})")

    def columns(self, grid: SiteGrid) -> list[tuple[int, str | None, bool | None]]:
        """Per column of `grid`: (position or head, its token or None, differs or None)."""
        if grid.axis == "head":
            return [(head, None, None) for head in range(grid.values.shape[1])]
        return list(zip(self.positions, self.tokens, self.differs, strict=True))

    def to_numpy(self, site: str | None = None) -> np.ndarray:
        """float64 [layers, positions] (or [layers, heads] for a head site): the normalised
        grid of `site` (default: the first site)."""
        return self.grid(site).values

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """(header, rows): one row per site x layer x column, long format."""
        header = ["site", "layer", "axis", "index", "token", "differs", "value", "low", "high"]
        rows = []
        for grid in self.grids:
            for k, layer in enumerate(self.layers):
                for c, (index, token, differs) in enumerate(self.columns(grid)):
                    bounds = ([None, None] if grid.low is None or grid.high is None else
                              [float(grid.low[k, c]), float(grid.high[k, c])])
                    rows.append([grid.site, layer, grid.axis, index, token, differs,
                                 float(grid.values[k, c]), *bounds])
        return header, rows

    def to_csv(self) -> str:
        """The long table as CSV text (what `-o FILE.csv` writes)."""
        return csv_text(*self.table())

    def to_pandas(self):  # -> pandas.DataFrame
        """The long table (site, layer, axis, index, token, differs, value, low, high) as a
        DataFrame; needs pandas."""
        header, rows = self.table()
        return dataframe({name: [row[k] for row in rows] for k, name in enumerate(header)})

    def to_json(self) -> dict[str, Any]:
        """Every number: what `lazarus introspect patch -o FILE.json` writes."""
        return json_plain({
            "lazarus_version": __version__,
            "model_id": self.model_id,
            "direction": self.direction,
            "direction_text": self.direction_text,
            "metric": self.metric,
            "metric_text": self.metric_text,
            "scale": SCALE,
            "pairs": [{"clean": self.clean[i], "corrupt": self.corrupt[i],
                       "answer_token": self.answer[i],
                       "wrong_token": None if self.wrong is None else self.wrong[i],
                       "tokens": self.lengths[i],
                       "clean_score": float(self.clean_score[i]),
                       "corrupt_score": float(self.corrupt_score[i])}
                      for i in range(self.pairs)],
            "clean_score": float(self.clean_score.mean()),
            "corrupt_score": float(self.corrupt_score.mean()),
            "layers": list(self.layers),
            "positions": list(self.positions),
            "tokens": list(self.tokens),
            "differs": list(self.differs),
            "aligned_from_end": self.aligned,
            "seed": self.seed,
            "interval": self.interval_note,
            "sites": {grid.site: {
                "axis": grid.axis,
                "values": grid.values.tolist(),
                "low": None if grid.low is None else grid.low.tolist(),
                "high": None if grid.high is None else grid.high.tolist(),
                "scores": grid.scores.tolist(),
            } for grid in self.grids},
        })

    def plot(self, path: str) -> None:
        """One heatmap per site (layers down, positions or heads across) as .png or .svg;
        needs matplotlib."""
        plot_patch(self, path)
