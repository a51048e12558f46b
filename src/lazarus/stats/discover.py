"""`--auto-discover`: which neurons of a layer separate the labels, with corrected statistics.

Every neuron of the layer is tested at once (see `stats.effects` for the choices): the effect is
Cohen's d with two labels (first label given minus second) and eta-squared with more; each
neuron gets a permutation p-value from shuffles shared by all neurons, corrected family-wise by
the max-statistic over all neurons tested; a neuron *survives* when its corrected p is below
`alpha`. The neurons shown are the `top_k` strongest survivors (by |d| or eta-squared, which
order them as the test does). When none survives, nothing is a finding: the `top_k` largest
effects are still returned as `candidates`, for inspection, and the text says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lazarus.errors import LazarusError
from lazarus.stats import effects as stats
from lazarus.stats.intervals import effect_interval
from lazarus.stats.probe import MAX_PERMUTATIONS
from lazarus.text import agree, plural

PERMUTATIONS = 1000  # smallest possible p: 1/1001
ALPHA = 0.05
SEED = 0
CORRECTION = "family-wise, by the max-statistic over all neurons tested (Westfall-Young)"
INTERVAL_TEXT = ("exact for values normal within each label with one spread (noncentral t or F), "
                 "simultaneous over every neuron tested (Bonferroni), so that it holds for "
                 "neurons chosen as the largest")


@dataclass(frozen=True)
class Finding:
    """One neuron: its effect, the effect's 95% interval simultaneous over every neuron tested,
    its own permutation p and its p corrected across every neuron tested."""

    neuron: int
    effect: float
    low: float
    high: float
    p: float
    p_corrected: float


@dataclass(frozen=True)
class Discovery:
    effect: str  # "Cohen's d" or "eta-squared"
    labels: tuple[str, ...]  # in the order first given; d = first minus second
    permutations: int
    alpha: float
    seed: int
    tested: int  # neurons tested (the correction's family)
    untested: tuple[int, ...]  # constant, or with missing or non-finite values
    survivors: int  # corrected p < alpha
    findings: tuple[Finding, ...]  # the strongest survivors, at most top_k; empty when none
    candidates: tuple[Finding, ...]  # when none survives: the largest effects, not findings
    smallest_p: float  # the smallest p any neuron could reach with these label counts

    @property
    def shown(self) -> tuple[Finding, ...]:
        return self.findings or self.candidates

    @property
    def symbol(self) -> str:
        return "d" if self.effect == "Cohen's d" else "eta2"

    def test_text(self) -> str:
        versus = (f"{self.labels[0]} minus {self.labels[1]}" if len(self.labels) == 2
                  else f"{len(self.labels)} labels")
        return (f"permutation test of {self.effect} ({versus}) on "
                f"{plural(self.tested, 'neuron')}, {plural(self.permutations, 'shuffle')} "
                f"shared by all; p corrected {CORRECTION}")

    def describe(self) -> str:
        """The selection, in one sentence: what was tested, how, and what survived."""
        head = f"--auto-discover: {self.test_text()}: "
        if self.smallest_p >= self.alpha:
            head += (f"with these label counts no p can fall below {self.alpha:g} (the "
                     f"smallest possible is {self.smallest_p:.2g}), so ")
        if self.findings:
            return (head + f"{self.survivors} of {self.tested} "
                    f"{agree(self.survivors, 'survives', 'survive')} at corrected p < "
                    f"{self.alpha:g}; showing the {len(self.findings)} strongest")
        return (head + f"none of {self.tested} survives at corrected p < {self.alpha:g}; "
                "shown for inspection only, not findings: the "
                f"{plural(len(self.candidates), 'largest effect')}, which shuffled labels "
                "match")


def check_layers(layers: Sequence[int]) -> None:
    if len(layers) != 1:
        raise LazarusError("--auto-discover tests the neurons of one layer (give one -l)")


def check_request(labels: Sequence[str] | None, neurons: Sequence[int] | None,
                  direction_given: bool, layers: Sequence[int] | None, position: str | int,
                  permutations: int) -> None:
    """The one-line errors of an --auto-discover request, before anything is captured
    (`layers` None: not known yet, checked later by `check_layers`)."""
    if neurons is not None or direction_given:
        raise LazarusError("--auto-discover chooses the neurons itself: leave out "
                           f"{'--neurons' if neurons is not None else '--from-direction'}")
    if labels is None:
        raise LazarusError("--auto-discover needs --labels (a label per prompt) to test "
                           "neurons against")
    if len(set(labels)) < 2:
        raise LazarusError("--auto-discover needs at least two different labels")
    if len(labels) <= len(set(labels)):
        raise LazarusError("--auto-discover needs more prompts than labels (some label "
                           "must have two prompts)")
    if layers is not None:
        check_layers(layers)
    if position == "all":
        raise LazarusError("--auto-discover needs one value per prompt, and tokens of one "
                           "prompt are not independent samples (use --position last, mean, "
                           "or an index)")
    if not 1 <= permutations <= MAX_PERMUTATIONS:
        raise LazarusError(f"--permutations must be from 1 to {MAX_PERMUTATIONS} (got "
                           f"{permutations}; p can go down to 1/(N+1))")


def discover(values: np.ndarray, labels: Sequence[str], neurons: Sequence[int] | None = None,
             *, top_k: int = 10, permutations: int = PERMUTATIONS, alpha: float = ALPHA,
             seed: int = SEED) -> Discovery:
    """Test every column of `values` [prompts, neurons] against `labels` (one per row);
    `neurons` names the columns (default 0, 1, ...)."""
    values = np.asarray(values, dtype=np.float64)
    ids = np.arange(values.shape[1]) if neurons is None else np.asarray(neurons)
    codes, names = stats.label_codes(labels)
    finite = np.isfinite(values).all(axis=0)
    varies = finite & (np.ptp(np.where(finite, values, 0.0), axis=0) > 0)
    columns = np.flatnonzero(varies)
    if columns.size == 0:
        raise LazarusError("no neuron of this layer varies across these prompts, so none can "
                           "separate the labels")
    test = stats.permutation_test(values[:, columns], codes,
                                  stats.shuffles(len(labels), permutations, seed))
    order = np.lexsort((ids[columns], -test.statistic))  # strongest first, then lower id
    surviving = order[test.p_corrected[order] < alpha]
    picked = surviving[:top_k] if surviving.size else order[:top_k]
    effects = stats.effect_size(values[:, columns[picked]], codes)
    low, high = effect_interval(values[:, columns[picked]], codes, family=int(columns.size))
    shown = tuple(Finding(neuron=int(ids[columns[j]]), effect=float(effects[i]),
                          low=float(low[i]), high=float(high[i]), p=float(test.p[j]),
                          p_corrected=float(test.p_corrected[j]))
                  for i, j in enumerate(picked))
    return Discovery(
        effect=stats.effect_name(len(names)), labels=names, permutations=permutations,
        alpha=alpha, seed=seed, tested=int(columns.size),
        untested=tuple(int(ids[j]) for j in np.flatnonzero(~varies)),
        survivors=int(surviving.size), findings=shown if surviving.size else (),
        candidates=() if surviving.size else shown,
        smallest_p=smallest_p(codes))


def smallest_p(codes: np.ndarray) -> float:
    """The smallest exact permutation p any labelling can have: 1 / (distinct labellings),
    twice that with two labels of equal size (swapping them gives the same |d|)."""
    sizes = np.bincount(codes)
    labellings = math.factorial(int(sizes.sum()))
    for size in sizes:
        labellings //= math.factorial(int(size))
    twin = 2 if len(sizes) == 2 and sizes[0] == sizes[1] else 1
    return min(1.0, twin / labellings)
