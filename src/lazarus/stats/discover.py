"""`--auto-discover`: which neurons of a layer separate the label means, with corrected statistics.

Every neuron of the layer is tested at once (see `stats.welch` for the test and `stats.effects`
for the effects): each neuron's Welch F (a difference in label means that allows each label its
own spread) gets a p-value from a null-centred bootstrap whose resamples are shared by all
neurons, corrected family-wise by the max-statistic over all neurons tested; a neuron *survives*
when its corrected p is below `alpha`. The effect shown is Cohen's d (pooled sd; first label
given minus second) with two labels and eta-squared with more. The neurons shown are the `top_k`
survivors with the largest F. When none survives, nothing is a finding: the `top_k` largest F
are still returned as `candidates`, for inspection, and the text says so, with the smallest
effect the test would have found with 80% power (`stats.power`), so that "none" says how large
an effect it rules out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lazarus.errors import LazarusError
from lazarus.stats import effects as stats
from lazarus.stats.intervals import effect_interval
from lazarus.stats.power import POWER, WELCH_METHOD, critical_value, detectable_welch
from lazarus.stats.probe import MAX_PERMUTATIONS
from lazarus.stats.welch import bootstrap_test, within_label_draws
from lazarus.text import agree, plural

PERMUTATIONS = 1000  # bootstrap resamples of the test; smallest possible p: 1/1001
ALPHA = 0.05
SEED = 0
SPARSE_SHARE = 0.5  # share of the null's maxima from silent-on-most units that is said
TEST = ("Welch's F (label means compared, each label with its own spread) against a bootstrap "
        "of prompts within each label, every label centred at its mean")
CORRECTION = "family-wise, by the max-statistic over all neurons tested (Westfall-Young)"
INTERVAL_TEXT = ("exact for values normal within each label with one spread (noncentral t or F), "
                 "simultaneous over every neuron tested (Bonferroni), so that it holds for "
                 "neurons chosen as the largest")


@dataclass(frozen=True)
class Finding:
    """One neuron: its effect, the effect's 95% interval simultaneous over every neuron tested,
    its own p (Welch's F against the bootstrap) and its p corrected across every neuron tested."""

    neuron: int
    effect: float
    low: float
    high: float
    p: float
    p_corrected: float
    separated: bool = False  # no spread within any label: d = +-inf, eta2 = 1 (`effects.TIED`)


@dataclass(frozen=True)
class Discovery:
    effect: str  # "Cohen's d" or "eta-squared"
    labels: tuple[str, ...]  # in the order first given; d = first minus second
    permutations: int  # the test's bootstrap resamples (the name of the CLI's option)
    alpha: float
    seed: int
    tested: int  # neurons tested (the correction's family)
    untested: tuple[int, ...]  # constant, or with missing or non-finite values
    survivors: int  # corrected p < alpha
    findings: tuple[Finding, ...]  # the strongest survivors, at most top_k; empty when none
    candidates: tuple[Finding, ...]  # when none survives: the largest F, not findings
    smallest_p: float  # the smallest p any neuron could reach in this run
    detectable: float  # the smallest effect found with POWER (d or eta2); inf: none could be
    # neurons with one value on at least half the prompts (silent on most: ReLU-like), and the
    # share of resamples whose largest F was one of theirs (`sparse_note`)
    sparse: int = 0
    sparse_share: float = 0.0

    @property
    def shown(self) -> tuple[Finding, ...]:
        return self.findings or self.candidates

    @property
    def symbol(self) -> str:
        return "d" if self.effect == "Cohen's d" else "eta2"

    def test_text(self) -> str:
        versus = (f"{self.labels[0]} minus {self.labels[1]}, pooled sd" if len(self.labels) == 2
                  else f"{len(self.labels)} labels")
        return (f"bootstrap test of a difference in label means that allows unequal spreads "
                f"(Welch's F) on {plural(self.tested, 'neuron')}, "
                f"{plural(self.permutations, 'resample')} of prompts within each label shared "
                f"by all; p corrected {CORRECTION}; effect shown: {self.effect} ({versus})")

    def detectable_text(self, method: bool = True) -> str:
        """What finding none rules out: the smallest effect found with 80% power (and how that
        was computed, with `method`)."""
        if math.isinf(self.detectable):
            return (f"with these label counts the test could not find an effect of any size "
                    f"with {POWER:.0%} power (give more prompts)")
        how = f" ({WELCH_METHOD})" if method else ""
        return (f"an effect of {self.symbol} = {self.detectable:.2g} or more would have been "
                f"found with {POWER:.0%} power{how}")

    def sparse_note(self) -> str | None:
        """Why nothing survived when the null's maxima came mostly from units that are silent
        on most prompts: a resample that misses their few values leaves a label nearly tied and
        their F huge, which raises the bar for every neuron (a loss of power, said, not fixed)."""
        if self.findings or self.sparse_share < SPARSE_SHARE:
            return None
        return (f"in {self.sparse_share:.0%} of the resamples the largest F came from one of the "
                f"{plural(self.sparse, 'neuron')} that take one value on at least half the "
                "prompts (silent on most, as ReLU units and router weights are): a resample "
                "that misses their few other values gives them a huge F, which raises the bar "
                "for every neuron (more prompts did not help on a ReLU model); read a site "
                "without such units, e.g. resid_post")

    def floor_cause(self) -> tuple[str, str]:
        """Why no p can fall below alpha, and what to change: the resamples alone (p is at least
        1/(1 + resamples)), or the label counts (resamples without any spread count against
        every neuron)."""
        if 1 / (1 + self.permutations) >= self.alpha:
            return f"with {plural(self.permutations, 'resample')}", "give more --permutations"
        return "with these label counts", "give more prompts"

    def describe(self) -> str:
        """The selection, in one sentence: what was tested, how, and what survived."""
        head = f"--auto-discover: {self.test_text()}: "
        if self.smallest_p >= self.alpha:
            head += (f"{self.floor_cause()[0]} no p can fall below {self.alpha:g} (the "
                     f"smallest possible is {self.smallest_p:.2g}), so ")
        if self.findings:
            return (head + f"{self.survivors} of {self.tested} "
                    f"{agree(self.survivors, 'survives', 'survive')} at corrected p < "
                    f"{self.alpha:g}; showing the {len(self.findings)} strongest")
        return (head + f"none of {self.tested} survives at corrected p < {self.alpha:g} "
                f"({self.detectable_text(method=False)}); shown for inspection only, not "
                f"findings: the {plural(len(self.candidates), 'largest statistic')}, which the "
                "null resamples match")


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
        raise LazarusError(f"--permutations must be a whole number from 1 to "
                           f"{MAX_PERMUTATIONS}, got {permutations!r} (e.g. {PERMUTATIONS}; "
                           "p can go down to 1/(N+1))")
    check_label_sizes(labels)


def check_label_sizes(labels: Sequence[str]) -> None:
    """Welch's F needs each label's own spread, so each label needs two prompts."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    alone = [label for label, count in counts.items() if count < 2]
    if alone:
        raise LazarusError(f"--auto-discover compares label means allowing each label its own "
                           f"spread, so every label needs at least 2 prompts (label "
                           f"{alone[0]!r} has 1)")


def discover(values: np.ndarray, labels: Sequence[str], neurons: Sequence[int] | None = None,
             *, top_k: int = 10, permutations: int = PERMUTATIONS, alpha: float = ALPHA,
             seed: int = SEED) -> Discovery:
    """Test every column of `values` [prompts, neurons] against `labels` (one per row);
    `neurons` names the columns (default 0, 1, ...)."""
    values = np.asarray(values, dtype=np.float64)
    ids = np.arange(values.shape[1]) if neurons is None else np.asarray(neurons)
    check_label_sizes(labels)
    codes, names = stats.label_codes(labels)
    finite = np.isfinite(values).all(axis=0)
    varies = finite & (np.ptp(np.where(finite, values, 0.0), axis=0) > 0)
    columns = np.flatnonzero(varies)
    if columns.size == 0:
        raise LazarusError("no neuron of this layer varies across these prompts, so none can "
                           "separate the labels")
    test = bootstrap_test(values[:, columns], codes,
                          within_label_draws(codes, permutations, seed))
    sparse = _silent_on_most(values[:, columns])
    order = np.lexsort((ids[columns], -test.statistic))  # largest F first, then lower id
    surviving = order[test.p_corrected[order] < alpha]
    picked = surviving[:top_k] if surviving.size else order[:top_k]
    effects = stats.effect_size(values[:, columns[picked]], codes)
    split = stats.separated(values[:, columns[picked]], codes)
    low, high = effect_interval(values[:, columns[picked]], codes, family=int(columns.size))
    shown = tuple(Finding(neuron=int(ids[columns[j]]), effect=float(effects[i]),
                          low=float(low[i]), high=float(high[i]), p=float(test.p[j]),
                          p_corrected=float(test.p_corrected[j]), separated=bool(split[i]))
                  for i, j in enumerate(picked))
    return Discovery(
        effect=stats.effect_name(len(names)), labels=names, permutations=permutations,
        alpha=alpha, seed=seed, tested=int(columns.size),
        untested=tuple(int(ids[j]) for j in np.flatnonzero(~varies)),
        survivors=int(surviving.size), findings=shown if surviving.size else (),
        candidates=() if surviving.size else shown, smallest_p=test.smallest_p,
        detectable=detectable_welch(critical_value(test.max_null, alpha),
                                    np.bincount(codes).tolist()),
        sparse=int(sparse.sum()), sparse_share=_sparse_share(sparse, test.max_column))


def _silent_on_most(values: np.ndarray) -> np.ndarray:
    """bool per column of `values` [n, m]: one value (exactly) on at least half the rows;
    blind to the labels."""
    ordered = np.sort(values, axis=0)
    half = (values.shape[0] + 1) // 2
    # a value held by `half` rows fills some `half` consecutive sorted rows
    return (ordered[half - 1:] == ordered[:values.shape[0] - half + 1]).any(axis=0)


def _sparse_share(sparse: np.ndarray, max_column: np.ndarray) -> float:
    """The share of the resamples with a largest F whose largest came from a `sparse` column."""
    counted = max_column[max_column >= 0]
    return float(sparse[counted].mean()) if counted.size else 0.0
