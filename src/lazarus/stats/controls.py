"""The numbers behind an ablation's verdict: each condition's effect, whether it is zero to float
rounding, and the random-neuron control's p and z, from log-probabilities `ablate` measured.

Effect: one number per condition, the mean over prompts of the drop in the answer's
log-probability (nats; positive = ablation hurts), or for bare prompts the mean
KL(baseline || ablated) of the next-token distribution (nats).
Control (neurons only): `controls` draws of as many random neurons at each of the same layers
and site, uniformly without replacement among the neurons not chosen, from
numpy.random.default_rng(seed), ablated the same way (where no more distinct sets exist than
`controls`, as with a few heads, experts or router units, every set once instead: `every_set`,
so that repeated draws do not pass for independent ones and p is the exact test); p = (1 +
#{draws with effect >= the chosen neurons' effect}) / (1 + draws) is the test, z = (effect -
mean) / std (ddof=1) of the draws is descriptive only (`Z_NOTE`). z is kept because it says how
far beyond the draws an effect lies, which p cannot once no draw reaches it (p stays 1 / (1 +
draws) for an effect just past the largest draw and for one 30 std past it); it is not a test,
because random neurons' effects are skewed (most near 0, a few large): with the chosen effect
drawn from the same skewed law as 100 draws (gamma, shape 0.5), z > 1.645 comes 7.7% of the
time, p <= 0.05 5.1% (4,000 replicates; tests/test_probe_balance.py).
Zero to float rounding (`zero_to_rounding`): when no prompt changed by more than rounding can
explain, there is no effect to compare with random neurons, so there is no p or z. The
log-probabilities are no finer than float32 (float64 for a float64 model: eps below), and
rounding moves one by some ulps of its size; running the demo model's prompts in another
batch moves them by up to 3 ulps of max(1, |log p|), so ROUNDING_ULPS = 64 is a generous bound
that still calls nothing of 1e-5 nats per nat of log-probability rounding. Half-precision
models round more coarsely than this: their rounding shows as a small effect, compared with
random neurons like any other. Per prompt, so that changes of opposite sign cancelling in
the mean are not taken for none:
- pairs: |drop| <= 64 eps x the sum over the answer's tokens of max(1, |log p|);
- bare prompts: KL is quadratic in the change. Log-probabilities each moved by at most
  tau = 64 eps x max(1, the largest |log p| of the baseline distribution) make
  KL <= tau^2 / 2 (Hoeffding's lemma), about 1e-8 nats for float32. So a KL of 1e-7 is real,
  however small (the demo's `-l 2 --site mlp_post -n 12,400 --method mean` gives the same
  KL computed in float64, to 4 digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ROUNDING_ULPS = 64  # a change within this many ulps of the log-probabilities' size is rounding
Z_NOTE = ("descriptive, not a test (the effect minus the draws' mean, in their std; the draws "
          "need not be normal)")
NO_P_AT_ROUNDING = ("no p or z: the effect is zero to float rounding, so there is nothing to "
                    "compare with random neurons")


@dataclass(frozen=True)
class Control:
    draws: int
    seed: int
    effects: tuple[float, ...]  # one per draw
    neurons: tuple[tuple[tuple[int, ...], ...], ...]  # per draw, per layer of the condition
    mean: float
    std: float | None  # ddof=1; None with fewer than 2 draws
    p: float | None  # (1 + #{effect >= chosen}) / (1 + draws); None: zero to float rounding
    z: float | None  # None when std is None or 0, or the effect is zero to float rounding
    # per draw, per prompt: the change `effects` averages (the picture's per-prompt controls)
    prompt_effects: tuple[tuple[float, ...], ...] = ()
    # the draws are every possible set once (no more exist than were asked for): p is exact
    every_set: bool = False


def changes_of(base: list[Any], ablated: list[Any], pairs: bool) -> list[float]:
    """Each prompt's answer log-prob drop (pairs: sums over tokens), else its KL."""
    if pairs:
        return [float(b.sum() - a.sum()) for b, a in zip(base, ablated, strict=True)]
    return [kl_divergence(b, a) for b, a in zip(base, ablated, strict=True)]


def effect_of(base: list[Any], ablated: list[Any], pairs: bool) -> float:
    """Mean answer log-prob drop (pairs: sums over tokens), else mean KL, over the prompts."""
    return float(np.mean(changes_of(base, ablated, pairs)))


def zero_to_rounding(base: list[Any], ablated: list[Any], pairs: bool, eps: float) -> bool:
    """Whether every prompt's change is within float rounding (see the module's docstring):
    `base` and `ablated` as `effect_of` takes them, `eps` the log-probabilities' precision."""
    for b, a in zip(base, ablated, strict=True):
        if pairs:
            size = float(np.sum(np.maximum(1.0, np.abs(b))))
            if not abs(float(b.sum() - a.sum())) <= ROUNDING_ULPS * eps * size:
                return False
        else:
            tau = ROUNDING_ULPS * eps * max(1.0, float(np.max(np.abs(b[np.isfinite(b)]),
                                                              initial=0.0)))
            if not kl_divergence(b, a) <= tau * tau / 2:
                return False
    return True


def empirical_p(effect: float, draws: Sequence[float]) -> float:
    return (1 + sum(d >= effect for d in draws)) / (1 + len(draws))


def control_summary(effect: float, effects: Sequence[float], seed: int,
                    neurons: Sequence[Sequence[Sequence[int]]], compare: bool = True,
                    prompt_effects: Sequence[Sequence[float]] = (),
                    every_set: bool = False) -> Control:
    """The draws' statistics; p and z only when `compare` (not when the effect is zero to
    float rounding); `prompt_effects` kept as given (per draw, per prompt)."""
    values = np.asarray(effects, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    return Control(draws=len(values), seed=seed, effects=tuple(float(v) for v in values),
                   neurons=tuple(tuple(tuple(int(n) for n in layer) for layer in draw)
                                 for draw in neurons),
                   mean=float(values.mean()) if len(values) else float("nan"), std=std,
                   p=empirical_p(effect, values.tolist()) if compare else None,
                   z=None if not std or not compare else float((effect - values.mean()) / std),
                   prompt_effects=tuple(tuple(float(v) for v in draw) for draw in prompt_effects),
                   every_set=every_set)


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> float:
    """KL(p || q) in nats, from log-probabilities over the same vocabulary."""
    p = np.exp(log_p)
    return float(np.sum(np.where(p > 0, p * (log_p - log_q), 0.0)))
