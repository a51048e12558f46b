"""What `attribute` found: every unit's estimated patching effect per site and layer, the top
units, and the self-check of the estimates against real patches; the JSON `lazarus introspect
attribute -o` writes, the estimates as arrays (`to_numpy`) and a table (`to_pandas`), and a
picture (`plot`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lazarus import __version__
from lazarus.engine.pair_terms import POSITION_SITES
from lazarus.engine.sites import unit_label
from lazarus.results.attribute_plot import plot_attribution
from lazarus.results.tables import dataframe
from lazarus.text import json_plain

# The self-check's verdict, by two rank correlations of estimate and real effect: over all the
# checked units (the top ones and the random ones: a stratified sample, on which an estimate that
# only separates the top from the rest already scores ~0.75) and within the top units alone (is
# their order right?). The verdict is the worse of the two, so neither figure decides alone.
GOOD, POOR = 0.9, 0.5
TOP_MIN = 3  # fewer top units have no order to check (2 points always rank-correlate +-1)
VERDICTS = {
    "good": f"good (both rank correlations >= {GOOD}): trust the ranking",
    "fair": f"fair (the lower rank correlation is >= {POOR} but < {GOOD}): the order is "
            "rough; check the units you care about with real patches",
    "poor": f"poor (the lower rank correlation is < {POOR}): the linear estimate fails here; "
            "try --method ig",
    "undetermined": "undetermined: too few units, or their real effects are all equal, to "
                    f"correlate (give a larger --check, at least {TOP_MIN})",
}
VERDICT_RULE = (f"the worse of the two: good if both >= {GOOD}, fair if both >= {POOR}, else "
                "poor; undetermined if either is undefined")


def verdict(rho: float) -> str:
    """'good', 'fair', 'poor', or 'undetermined' (no correlation: NaN)."""
    if not np.isfinite(rho):
        return "undetermined"
    return "good" if rho >= GOOD else "fair" if rho >= POOR else "poor"


def combined_verdict(stratified: float, within_top: float) -> str:
    """The worse of the two figures' verdicts (`VERDICT_RULE`); undetermined if either is."""
    order = ("undetermined", "poor", "fair", "good")
    return min(verdict(stratified), verdict(within_top), key=order.index)


@dataclass(frozen=True)
class Unit:
    """One unit: a neuron (an MoE layer's column expert * units + unit), a head, or a token
    position (residual sites), with its estimated normalised effect."""

    layer: int
    site: str
    unit: int
    estimate: float


@dataclass(frozen=True)
class SelfCheck:
    """The estimates against real patches of the same units (denoising, all pairs)."""

    units: tuple[Unit, ...]  # the top `top_count` units by |estimate|, then random ones
    real: tuple[float, ...]  # each one's real normalised effect
    top_count: int  # how many of `units` are the top ones
    total: int  # units estimated in all
    spearman: float  # over all the checked units (top and random: a stratified sample)
    pearson: float  # over all the checked units
    seed: int
    spearman_top: float = float("nan")  # within the top `top_count` units alone

    @property
    def verdict(self) -> str:
        return combined_verdict(self.spearman, self.spearman_top)

    def misses(self, count: int = 5) -> list[tuple[Unit, float]]:
        """The `count` checked units whose estimate was furthest from the real effect."""
        order = np.argsort([-abs(u.estimate - r) for u, r in zip(self.units, self.real,
                                                                  strict=True)], kind="stable")
        return [(self.units[i], self.real[i]) for i in order[:count]]


@dataclass(frozen=True, eq=False)
class AttributionResult:
    model_id: str
    clean: tuple[str, ...]
    corrupt: tuple[str, ...]
    answer: tuple[str, ...]  # per pair, the judged token of the answer
    wrong: tuple[str, ...] | None  # and of the wrong text
    tokens: tuple[str, ...]  # the first pair's clean tokens (position units are named by them)
    metric: str
    method: str  # "atp" or "ig"
    steps: int | None  # ig: points on the path
    layers: tuple[int, ...]
    sites: tuple[str, ...]
    clean_score: tuple[float, ...]  # per pair
    corrupt_score: tuple[float, ...]
    estimates: Mapping[str, tuple[np.ndarray, ...]]  # per site, per layer: float [units]
    top: tuple[Unit, ...]  # by |estimate|, over every site and layer
    check: SelfCheck | None
    # per MoE layer (mlp_post units are expert units there): units per expert
    units_per_expert: Mapping[int, int] = field(default_factory=dict)

    def label(self, unit: Unit) -> str:
        """The unit's name (`engine.sites.unit_label`): N448, H2, E3 U17; P7 for a position."""
        if unit.site in POSITION_SITES:
            return f"P{unit.unit}"
        per_expert = self.units_per_expert.get(unit.layer) if unit.site == "mlp_post" else None
        return unit_label(unit.site, unit.unit, per_expert)

    @property
    def gap(self) -> float:
        """Mean clean score minus mean corrupted score: the normalisation's 1."""
        return float(np.mean(self.clean_score) - np.mean(self.corrupt_score))

    @property
    def units(self) -> int:
        return sum(len(row) for rows in self.estimates.values() for row in rows)

    def to_numpy(self, site: str | None = None) -> np.ndarray:
        """float64 [layers, units] of `site` (default: the first): the estimates, NaN past a
        layer's width where layers differ (an MoE model's dense and expert layers)."""
        rows = self.estimates[site or self.sites[0]]
        out = np.full((len(rows), max(len(row) for row in rows)), np.nan)
        for index, row in enumerate(rows):
            out[index, :len(row)] = row
        return out

    def to_pandas(self):  # -> pandas.DataFrame
        """One row per unit: site, layer, unit, label (`label`), estimate."""
        columns: dict[str, list[Any]] = {"site": [], "layer": [], "unit": [], "label": [],
                                          "estimate": []}
        for site, rows in self.estimates.items():
            for layer, row in zip(self.layers, rows, strict=True):
                columns["site"] += [site] * len(row)
                columns["layer"] += [layer] * len(row)
                columns["unit"] += list(range(len(row)))
                columns["label"] += [self.label(Unit(layer, site, unit, 0.0))
                                     for unit in range(len(row))]
                columns["estimate"] += [float(v) for v in row]
        return dataframe(columns)

    def plot(self, path: str) -> None:
        """The per-layer profile of |estimate| and, with a self-check, estimate against real
        effect; .png or .svg; needs matplotlib."""
        plot_attribution(self, path)

    def to_json(self) -> dict[str, Any]:
        """Every number: what `lazarus introspect attribute -o FILE.json` writes."""
        check = self.check
        return json_plain({
            "lazarus_version": __version__,
            "model_id": self.model_id,
            "pairs": [{"clean": c, "corrupt": k, "answer": a,
                       "wrong": None if self.wrong is None else self.wrong[i],
                       "clean_score": self.clean_score[i], "corrupt_score": self.corrupt_score[i]}
                      for i, (c, k, a) in enumerate(zip(self.clean, self.corrupt, self.answer,
                                                        strict=True))],
            "tokens": self.tokens,
            "metric": self.metric,
            "normalisation": "estimate / (mean clean score - mean corrupted score): 1 = the "
                             "whole gap, 0 = no change",
            "gap": self.gap,
            "method": self.method,
            "steps": self.steps,
            "layers": self.layers,
            "sites": self.sites,
            "estimates": {site: [[float(v) for v in row] for row in rows]
                          for site, rows in self.estimates.items()},
            "units_per_expert": {str(k): v for k, v in self.units_per_expert.items()},
            "top": [self._unit(u) for u in self.top],
            "self_check": None if check is None else {
                "checked": len(check.units), "of": check.total, "top": check.top_count,
                "seed": check.seed, "spearman": check.spearman, "pearson": check.pearson,
                "spearman_over": "every checked unit: the top ones and the random ones",
                "spearman_top": check.spearman_top,
                "spearman_top_over": f"the top {check.top_count} units alone",
                "verdict": check.verdict, "verdict_rule": VERDICT_RULE,
                "units": [{**self._unit(u), "real": r, "random": i >= check.top_count}
                          for i, (u, r) in enumerate(zip(check.units, check.real,
                                                         strict=True))],
            },
        })

    def _unit(self, unit: Unit) -> dict[str, Any]:
        """A unit's JSON: where, its name, and at MoE layers its expert and unit there."""
        document: dict[str, Any] = {"layer": unit.layer, "site": unit.site, "unit": unit.unit,
                                    "label": self.label(unit), "estimate": unit.estimate}
        per_expert = self.units_per_expert.get(unit.layer) if unit.site == "mlp_post" else None
        if per_expert:
            expert, rest = divmod(unit.unit, per_expert)
            document.update(expert=expert, expert_unit=rest, units_per_expert=per_expert)
        elif unit.site in POSITION_SITES:
            document["token"] = self.tokens[unit.unit]
        return document
