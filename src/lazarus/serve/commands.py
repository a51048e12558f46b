"""The commands the server computes, and the analysis each runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazarus.analyses.ablate import analyse_ablation
from lazarus.analyses.attribute import analyse_attribution
from lazarus.analyses.card import analyse_card
from lazarus.analyses.contexts import Shown, shaded_contexts
from lazarus.analyses.examples import analyse_examples
from lazarus.analyses.neurons import analyse_neurons
from lazarus.analyses.options import ExamplesOptions
from lazarus.analyses.patch import analyse_patch
from lazarus.analyses.probe import analyse_probe
from lazarus.analyses.steer import analyse_steer
from lazarus.engine.handle import ModelHandle
from lazarus.results.examples import ExamplesResult


def examples_and_contexts(model: ModelHandle, corpus: str, options: ExamplesOptions,
                          shade: bool, progress: Callable[[int, int], None] | None = None,
                          ) -> tuple[ExamplesResult, list[Shown] | None]:
    """`examples`' scan and, for its HTML page (`shade`), the shown contexts shaded token by
    token: both need the model, so both run where it is."""
    result = analyse_examples(model, corpus, options, progress)
    if not shade:
        return result, None
    direction = options.direction if options.projection else None
    return result, shaded_contexts(model, result, None if direction is None
                                   else direction.direction)  # type: ignore[union-attr]


# command -> (its analysis, whether that takes a progress callback)
ANALYSES: dict[str, tuple[Callable[..., Any], bool]] = {
    "neurons": (analyse_neurons, True), "probe": (analyse_probe, True),
    "ablate": (analyse_ablation, True), "steer": (analyse_steer, False),
    "patch": (analyse_patch, True), "attribute": (analyse_attribution, True),
    "examples": (examples_and_contexts, True), "card": (analyse_card, True)}
COMMANDS = tuple(ANALYSES)


def analysis_of(command: str) -> tuple[Callable[..., Any], bool]:
    return ANALYSES[command]
