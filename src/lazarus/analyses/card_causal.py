"""A unit card's causal view: what knocking the unit out costs, and what adding it does.

Ablation: each unit is zeroed (`interventions.zero`, at every token) over the corpus' first
`causal_windows` windows, and the next-token loss is measured by teacher forcing
(`measures.answer_log_probs`: every token of a window after the first, or after the tokenizer's
prefix); the effect is the mean change of that loss over all those tokens, in nats (positive:
the model predicts worse without the unit). Against chance: `controls` random units of the same
site, drawn once for all the cards (seeded, distinct, among the units not carded; as many as
there are when the site has fewer) and ablated alike, as `ablate` does (`stats.controls`:
their mean, std and p, and the unit's percentile among them).
A direction is not ablated (projecting it out is not an edit lazarus makes).
Steering: `steer` itself, on one prompt, at `coefficients`: for a neuron its --neurons mode,
coefficient x the unit's largest |value| over those windows added to it; for a direction, its
direction mode (coefficient x the mean activation norm); by default at
`steer_strength.card_coefficients`, which stay below steer's warning. A head has no vector to
add.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lazarus.analyses.card_options import CardOptions
from lazarus.analyses.options import SteerOptions
from lazarus.analyses.steer import analyse_steer
from lazarus.analyses.steer_strength import card_coefficients
from lazarus.engine import measures
from lazarus.engine.capture import capture_ids
from lazarus.engine.handle import ModelHandle
from lazarus.engine.interventions import zero
from lazarus.engine.loading import LoadedModel
from lazarus.engine.trace import CaptureRequest
from lazarus.io.directions import Direction
from lazarus.results.card import Ablation, Steering
from lazarus.stats.controls import control_summary, zero_to_rounding
from lazarus.text import plural

METRIC = "mean next-token loss change (nats)"
CHUNK = 4  # windows per teacher-forced pass: each holds [tokens, vocab] float64 log-probs
HEAD_STEERING = "a head has no one vector to add, so it is not steered (see its ablation)"
DIRECTION_ABLATION = ("a direction is not ablated (projecting it out is not an edit lazarus "
                      "makes): see its steering")


class Ablator:
    """The baseline loss of the windows, measured once, and the controls' effects, drawn once
    for every card, so each unit costs one more pass over the windows."""

    def __init__(self, loaded: LoadedModel, rows: Sequence[Sequence[int]], start: int,
                 layer: int, site: str, units: Sequence[int], options: CardOptions) -> None:
        self.loaded, self.layer, self.site = loaded, layer, site
        self.rows = [list(row) for row in rows if len(row) > start]
        self.start = start
        self.base = self._log_probs(())
        widths: dict[int, int] = {}
        capture_ids(loaded, self.rows[:1], CaptureRequest((layer,), site, "last"),
                    widths=widths)
        pool = np.setdiff1d(np.arange(widths[layer]), list(units))
        rng = np.random.default_rng(options.seed)
        # distinct units (without replacement): a unit drawn twice would count twice in p
        count = min(options.controls, len(pool))
        self.asked = options.controls
        self.draws = [int(u) for u in rng.choice(pool, size=count, replace=False)] \
            if count else []
        self.effects = [self._effect(unit) for unit in self.draws]
        self.seed = options.seed
        self.eps = float(np.finfo(np.float64 if loaded.dtype == "float64"
                                  else np.float32).eps)

    @property
    def tokens(self) -> int:
        return sum(len(row) - self.start for row in self.rows)

    def _log_probs(self, edits: Sequence) -> list[np.ndarray]:
        """Per window, float64 [its tokens after `start`]: log p(token | the tokens before)."""
        found = []
        for i in range(0, len(self.rows), CHUNK):
            part = self.rows[i:i + CHUNK]
            found += measures.answer_log_probs(self.loaded, [r[:self.start] for r in part],
                                               [r[self.start:] for r in part], edits)
        return found

    def _effect(self, unit: int, kept: list | None = None) -> float:
        ablated = self._log_probs([zero(self.layer, self.site, (unit,))])
        if kept is not None:
            kept.append(ablated)
        return float(np.mean(np.concatenate(self.base) - np.concatenate(ablated)))

    def ablation(self, unit: int) -> Ablation:
        kept: list = []
        effect = self._effect(unit, kept)
        rounding = zero_to_rounding(self.base, kept[0], True, self.eps)
        control = control_summary(effect, self.effects, self.seed, [[[d]] for d in self.draws],
                                  compare=not rounding) if self.effects else None
        note = None
        if rounding:
            note = "the change is zero to float rounding: nothing to compare with the controls"
        elif control is None:
            note = "no controls (--controls 0, or no other unit to draw)"
        elif len(self.draws) < self.asked:
            note = (f"the site has {plural(len(self.draws), 'other unit')}: each is a control "
                    f"once ({len(self.draws)}, not the {self.asked} asked)")
        return Ablation(
            metric=METRIC, effect=effect, windows=len(self.rows), tokens=self.tokens,
            controls=len(self.effects),
            controls_mean=None if control is None else control.mean,
            controls_std=None if control is None else control.std,
            percentile=None if control is None or rounding else float(
                100 * np.mean(np.asarray(self.effects) < effect)),
            p=None if control is None else control.p, note=note)


def steering(model: ModelHandle, prompt: str, layer: int, site: str, unit: int | None,
             direction: Direction | None, scale: float | None, windows: int,
             options: CardOptions) -> Steering:
    """Greedy continuations of `prompt` at each coefficient (0 first), by `steer`."""
    coefficients = options.coefficients
    if coefficients is None:
        coefficients = card_coefficients("direction" if direction is not None else "neurons")
    coefficients = list(coefficients)
    if direction is not None:
        result = analyse_steer(model, [prompt], SteerOptions(
            layer=layer, site=site, direction=direction, coefficients=coefficients,
            max_tokens=options.max_tokens))
        said = (f"coefficient x {result.scale:.4g} (the mean activation norm over the prompt) "
                "along the direction")
    else:
        assert unit is not None and scale is not None
        result = analyse_steer(model, [prompt], SteerOptions(
            layer=layer, site=site, neurons={unit: scale}, coefficients=coefficients,
            max_tokens=options.max_tokens))
        said = (f"coefficient x {scale:.4g} (the unit's largest |value| over the "
                f"{plural(windows, 'window')}) added to the unit")
    return Steering(prompt=prompt, scale=said,
                    runs=tuple((run.coefficient, run.continuations[0]) for run in result.runs))


def largest_values(loaded: LoadedModel, rows: Sequence[Sequence[int]], layer: int, site: str,
                   units: Sequence[int], skip: int = 0) -> list[float | None]:
    """Each unit's largest |value| over every token of `rows` after the first `skip` (the
    tokenizer's prefix: a unit's value at BOS can be far beyond its others, and steering by it
    breaks the text; bench/steer_range.py), None where it has none (an MoE unit never routed
    there)."""
    values = capture_ids(loaded, rows, CaptureRequest((layer,), site, "all", tuple(units)))
    stacked = np.abs(np.concatenate([row[skip:] for row in values[layer]]).astype(np.float64))
    found = []
    for k in range(len(units)):
        column = stacked[:, k][np.isfinite(stacked[:, k])]
        found.append(float(column.max()) if column.size and column.max() > 0 else None)
    return found
