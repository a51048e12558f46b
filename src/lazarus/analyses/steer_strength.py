"""How strong to steer, in one place: the coefficient `steer` uses when given none, the range
a bare `--compare` sweeps, the typical activation norm an added vector is measured against, and
when it is long enough to warn about.

Measured on the demo model (`bench/steer_range.py`, README "How strong to steer"), with 32
problems: a direction added at coefficient x the mean activation norm keeps 95-100% of the
continuations well-formed answers up to 0.3 while changing 19-64% of them, and from 0.5 to 1
turns more and more into repeated digits (64-94% at 1, 12-69% at 2); hence 0.2 by default, a
sweep of ±0.1..±0.3 and a warning above 0.3 of the norm (--absolute: the same lengths).
`--neurons` values are in activation units the user chose, so their default is 1 (the values as
given) and their sweep ±0.5..±1.5 of them: a neuron at 1-2x its largest value over the prompts
keeps 98-100% well-formed. One MLP neuron is large beside the norm of the whole sparse site
vector (2-3x at its largest value, harmless), so for neurons the warning starts at 4x.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lazarus.io.corpus import prefix_length

DIRECTION_COEFFICIENT = 0.2  # x the mean activation norm: changes answers, keeps them answers
UNIT_COEFFICIENT = 1.0  # --neurons values / --absolute lengths, as given
DIRECTION_SWEEP = (-0.3, -0.2, -0.1, 0.1, 0.2, 0.3)
UNIT_SWEEP = (-1.5, -1.0, -0.5, 0.5, 1.0, 1.5)
WARN_FRACTION = 0.3  # an added vector longer than this x the mean activation norm: warned
NEURON_WARN_FRACTION = 4.0  # the same for --neurons (one sparse unit against the whole vector)
CARD_NEURON_COEFFICIENTS = (-1.0, 1.0, 2.0)  # a card's neuron: x its largest value


def mode(neurons: object, absolute: bool) -> str:
    """"direction" (the coefficient multiplies the mean activation norm), "absolute" (it is the
    added length) or "neurons" (it multiplies values in activation units)."""
    return "neurons" if neurons is not None else "absolute" if absolute else "direction"


def default_coefficients(kind: str) -> tuple[float, ...]:
    """What steer runs (besides 0) when no coefficient is given, for a `mode`."""
    return (DIRECTION_COEFFICIENT if kind == "direction" else UNIT_COEFFICIENT,)


def sweep(kind: str, norm: float) -> tuple[float, ...]:
    """What a bare `--compare` runs (besides 0) for a `mode`: symmetric, within the coherent
    range. With --absolute, the direction's range as lengths (x `norm`, 2 significant digits),
    since a length of 1.5 is nothing next to a norm of 60."""
    if kind == "absolute":
        return tuple(float(f"{c * norm:.2g}") for c in DIRECTION_SWEEP)
    return DIRECTION_SWEEP if kind == "direction" else UNIT_SWEEP


def activation_norm(rows: Sequence[np.ndarray], token_ids: Sequence[Sequence[int]],
                    prefix: Sequence[int]) -> tuple[float, int]:
    """(mean L2 norm of the site's per-token vectors, tokens averaged over): every token of
    each prompt but a leading tokenizer `prefix` (BOS: its norm is an outlier, 2-3x the others
    past layer 0 of the demo model), or every token when nothing else is left. At an MoE layer's
    mlp_post, a token's vector is the units of the experts it was routed to (the others are NaN:
    they do not exist for it)."""
    kept = [row[prefix_length(ids, prefix):] for row, ids in zip(rows, token_ids, strict=True)]
    values = np.concatenate(kept) if sum(len(k) for k in kept) else np.concatenate(list(rows))
    values = values.astype(np.float64)
    # MoE expert units are NaN for the experts a token was not routed to: never computed, and
    # never edited (`moe.edited_output`), so each token's norm is over the units it has
    norms = np.sqrt(np.sum(np.where(np.isnan(values), 0.0, values) ** 2, axis=1))
    return float(np.mean(norms)), int(norms.size)


def card_coefficients(kind: str) -> tuple[float, ...]:
    """What a unit card steers with: a neuron at -1, 1 and 2 times its largest value, a
    direction over the sweep; neither warns."""
    return CARD_NEURON_COEFFICIENTS if kind == "neurons" else DIRECTION_SWEEP


def too_strong(kind: str, coefficients: Sequence[float],
               fractions: Sequence[float], swept: bool = False) -> str | None:
    """The one-line warning when an added vector's length over the mean activation norm
    exceeds the `mode`'s limit, else None. The fraction is compared as printed (2 decimals):
    "above 0.3x" is never said of a 0.30x that float rounding put a hair past 0.3. `swept`: the
    coefficients are a bare --compare's own (with --neurons, x values that are large already)."""
    limit = NEURON_WARN_FRACTION if kind == "neurons" else WARN_FRACTION
    over = [(abs(f), c) for c, f in zip(coefficients, fractions, strict=True)
            if float(f"{abs(f):.2f}") > limit]
    if not over:
        return None
    fraction, coefficient = max(over)
    return (f"coefficient {coefficient:g} adds a vector {fraction:.2f}x the mean activation "
            f"norm; above {limit:g}x{' with --neurons' if kind == 'neurons' else ''} "
            "continuations often stop being text (README: How strong to steer; "
            + ("give smaller --neurons values)" if swept
               else "a bare --compare sweeps a safer range)"))
