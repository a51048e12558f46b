"""Per-neuron statistics and how each neuron tracks the prompt labels (numpy only, never prints).

Everything is computed in float64 from the float32 activations and returned as frozen
dataclasses, which `dataclasses.asdict` turns into JSON-friendly dicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lazarus.stats.effects import TIED
from lazarus.stats.intervals import r_interval


class Columns(Protocol):
    """What the statistics read of an activation matrix (`results.ActivationMatrix` is one):
    float32 [samples, neurons] values, the neuron ids, and a label per sample (or None)."""

    values: np.ndarray
    neurons: Sequence[int]
    labels: Sequence[str] | None


GIVEN, SPREAD, EFFECT = "given", "spread", "effect"


@dataclass(frozen=True)
class Choice:
    """How the neurons shown were chosen, which decides what their intervals and marks can
    claim (a neuron picked for a large effect on these very prompts shows a large r by chance).

    `by`: GIVEN (listed, or a direction's top neurons: not chosen on these prompts), SPREAD (the
    largest spreads on these prompts, blind to the labels: under no effect r keeps the
    distribution it has for any neuron, so its test stays valid), or EFFECT (--auto-discover:
    the largest effects on these prompts). `among`: how many neurons the choice looked at.
    `survivors`: with EFFECT, the neurons shown that survive the discovery's correction.
    `per_token`: the samples are the tokens of the prompts, which are not independent.
    """

    by: str = GIVEN
    among: int | None = None
    survivors: frozenset[int] = frozenset()
    per_token: bool = False

    def family(self, labels: int) -> int:
        """How many intervals an interval must hold together with: with EFFECT, one per
        neuron tested and label (one per neuron with two labels, whose r are mirror images);
        else 1 (each interval for its own neuron)."""
        if self.by != EFFECT:
            return 1
        return (self.among or 1) * (labels if labels > 2 else 1)


MASSIVE_FACTOR = 20.0
"""A neuron whose mean |value| is at least this many times the median neuron's (over every
neuron of the layer) is flagged as a "massive activation" dimension: such dimensions dominate
any ranking by spread without saying anything about the prompts."""


@dataclass(frozen=True)
class NeuronStats:
    """One neuron across the prompts where it has a value; `std` is the population std (ddof=0).

    `count` is how many values entered: all of them, except for MoE expert units, which exist
    only where the token was routed to their expert (NaN elsewhere). With no value at all, the
    figures are NaN.
    """

    neuron: int
    min: float
    max: float
    mean: float
    std: float
    count: int | None = None  # values that entered; None for hand-made stats


@dataclass(frozen=True)
class LabelEffect:
    """One neuron on the prompts of one label.

    `r` is the point-biserial correlation of the activation with "prompt has this label":
    None when undefined (every prompt has the label, or the neuron never changes). `r_ci` is
    r's 95% interval (`stats.intervals.r_interval`; simultaneous when the neurons were chosen
    by their effect): None without r, with per-token samples or below 3 values; at |r| = 1
    (the labels perfectly separated, no spread within either) the point r itself.
    `verdict` ("high"/"low", else None) is the mark, given only on evidence (`_verdict`).
    """

    neuron: int
    mean: float
    rest_mean: float | None  # mean over the prompts without the label
    r: float | None
    verdict: str | None
    count: int | None = None  # values with the label that entered (MoE units: the routed ones)
    r_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class LabelSummary:
    label: str
    count: int  # prompts with this label
    effects: tuple[LabelEffect, ...]  # one per neuron, in matrix order


def neuron_stats(matrix: Columns) -> list[NeuronStats]:
    """min, max, mean and population std of each neuron, in matrix order."""
    values = matrix.values.astype(np.float64)
    stats = []
    for neuron, column in zip(matrix.neurons, values.T, strict=True):
        present = column[~np.isnan(column)]
        if present.size == 0:
            stats.append(NeuronStats(neuron, *([float("nan")] * 4), count=0))
            continue
        stats.append(NeuronStats(neuron=neuron, min=float(present.min()),
                                 max=float(present.max()), mean=float(present.mean()),
                                 std=float(present.std(ddof=0)), count=int(present.size)))
    return stats


def point_biserial(values: np.ndarray, member: np.ndarray) -> float | None:
    """Pearson r between `values` and the 0/1 indicator `member`, by the point-biserial formula.

    r = (mean_in - mean_out) * sqrt(p * (1 - p)) / std, with p the share of members and the
    population std of all values. None when the indicator or the values are constant
    (or not finite).
    """
    values = values.astype(np.float64)
    present = ~np.isnan(values)  # MoE units: only the routed tokens count
    values, member = values[present], member[present]
    if values.size == 0:
        return None
    share = float(member.mean())
    if share in (0.0, 1.0) or values.max() == values.min():
        return None
    gap = values[member].mean() - values[~member].mean()
    within = sum(float(((part - part.mean()) ** 2).sum()) for part in (values[member],
                                                                      values[~member]))
    if gap != 0 and within <= TIED * float(((values - values.mean()) ** 2).sum()):
        return 1.0 if gap > 0 else -1.0  # perfectly separated (`stats.effects.separated`)
    r = gap * np.sqrt(share * (1.0 - share)) / values.std(ddof=0)
    if not np.isfinite(r):  # NaN or inf activations
        return None
    return float(np.clip(r, -1.0, 1.0))


SEPARATION_ALPHA = 0.05


def separation_chance(inside: int, outside: int) -> float:
    """At most how often labels dealt at random (`inside` of `inside + outside` values) split
    them as perfectly as r = +-1 does: 2 / C(n, inside) (the label on the top values or on the
    bottom ones), a test that needs no normal assumption."""
    return min(1.0, 2.0 / math.comb(inside + outside, inside))


def _verdict(r: float | None, interval: tuple[float, float] | None, neuron: int,
             choice: Choice, counts: tuple[int, int] = (0, 0)) -> str | None:
    """The mark, given only on evidence: r's interval excludes 0 (an uncorrected test for a
    neuron not chosen by its effect) and, for a neuron chosen by its effect, it also survives
    the discovery's correction (its interval is then the simultaneous one, so that a mark never
    sits beside an interval that reaches 0). At r = +-1 (labels perfectly separated: the
    normal-theory interval is the point r, however few the values) the chance of so clean a
    split, `separation_chance` of `counts` (values with the label, without), must also be
    below `SEPARATION_ALPHA`. Per-token samples: never (tokens of a prompt are not
    independent)."""
    if r is None or interval is None or choice.per_token:
        return None
    if not (interval[0] > 0 or interval[1] < 0):
        return None
    if abs(r) == 1.0 and separation_chance(*counts) >= SEPARATION_ALPHA:
        return None
    if choice.by == EFFECT and neuron not in choice.survivors:
        return None
    return "high" if r > 0 else "low"


def label_correlation(matrix: Columns, choice: Choice | None = None) -> list[LabelSummary]:
    """For each label (in the order first given), each neuron's mean on its prompts and its
    correlation with it, with r's 95% interval and a mark where `choice` allows one."""
    if matrix.labels is None:
        raise ValueError("label correlation needs labels, and this matrix has none")
    choice = choice or Choice()
    labels = np.array(matrix.labels, dtype=object)
    values = matrix.values.astype(np.float64)
    present = ~np.isnan(values)  # MoE units: only the routed tokens count
    groups = len(set(matrix.labels))
    summaries = []
    for label in dict.fromkeys(matrix.labels):
        member = labels == label
        rs = [point_biserial(column, member) for column in values.T]
        inside = (present & member[:, None]).sum(axis=0)
        outside = (present & ~member[:, None]).sum(axis=0)
        intervals = _intervals(rs, inside, outside, choice.family(groups), choice.per_token)
        effects = []
        for j, (neuron, column) in enumerate(zip(matrix.neurons, values.T, strict=True)):
            mine, rest = column[member & present[:, j]], column[~member & present[:, j]]
            effects.append(LabelEffect(
                neuron=neuron,
                mean=float(mine.mean()) if mine.size else float("nan"),
                rest_mean=float(rest.mean()) if rest.size else None,
                r=rs[j],
                verdict=_verdict(rs[j], intervals[j], neuron, choice,
                                 (int(inside[j]), int(outside[j]))),
                count=int(inside[j]),
                r_ci=intervals[j],
            ))
        summaries.append(LabelSummary(label, int(member.sum()), tuple(effects)))
    return summaries


def _intervals(rs: list[float | None], inside: np.ndarray, outside: np.ndarray, family: int,
               per_token: bool) -> list[tuple[float, float] | None]:
    """Each r's interval, computed at once for the neurons with the same counts; None without r,
    for per-token samples, and where `r_interval` has none."""
    found: list[tuple[float, float] | None] = [None] * len(rs)
    if per_token:
        return found
    defined = [j for j, r in enumerate(rs) if r is not None]
    for counts in {(int(inside[j]), int(outside[j])) for j in defined}:
        same = [j for j in defined if (int(inside[j]), int(outside[j])) == counts]
        low, high = r_interval(np.array([rs[j] for j in same]), *counts, family=family)
        for j, lo, hi in zip(same, low, high, strict=True):
            found[j] = (float(lo), float(hi)) if np.isfinite(lo) else None
    return found


def spread(values: np.ndarray) -> np.ndarray:
    """Population std per column over its values (NaN ignored); -inf for a column with none."""
    values = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(values)
    counts = present.sum(axis=0)
    filled = np.where(present, values, 0.0)
    mean = filled.sum(axis=0) / np.maximum(counts, 1)
    var = (np.where(present, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(counts, 1)
    return np.where(counts > 0, np.sqrt(var), -np.inf)


@dataclass(frozen=True)
class Massive:
    """A "massive activation" dimension: its mean |value| is `ratio` times the median neuron's."""

    neuron: int
    mean_abs: float
    ratio: float


def massive_dimensions(values: np.ndarray, neurons: np.ndarray | None = None,
                       factor: float = MASSIVE_FACTOR) -> tuple[Massive, ...]:
    """Neurons of `values` [samples, every neuron of a layer] whose mean |value| (NaN ignored) is
    at least `factor` times the median over the neurons, largest first. None flagged when the
    median is 0 (most neurons silent: no scale to compare with)."""
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    present = ~np.isnan(magnitude)
    counts = present.sum(axis=0)
    means = np.where(present, magnitude, 0.0).sum(axis=0) / np.maximum(counts, 1)
    means = np.where(counts > 0, means, np.nan)
    finite = means[np.isfinite(means)]
    if finite.size == 0:
        return ()
    median = float(np.median(finite))
    if not median > 0:
        return ()
    ids = np.arange(means.size) if neurons is None else np.asarray(neurons)
    flagged = np.flatnonzero(np.isfinite(means) & (means >= factor * median))
    flagged = flagged[np.argsort(-means[flagged], kind="stable")]
    return tuple(Massive(int(ids[j]), float(means[j]), float(means[j] / median)) for j in flagged)
