"""The commands the server computes, and the analysis each runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazarus.analyses.ablate import analyse_ablation
from lazarus.analyses.neurons import analyse_neurons
from lazarus.analyses.probe import analyse_probe
from lazarus.analyses.steer import analyse_steer

# command -> (its analysis, whether that takes a progress callback)
ANALYSES: dict[str, tuple[Callable[..., Any], bool]] = {
    "neurons": (analyse_neurons, True), "probe": (analyse_probe, True),
    "ablate": (analyse_ablation, True), "steer": (analyse_steer, False)}
COMMANDS = tuple(ANALYSES)


def analysis_of(command: str) -> tuple[Callable[..., Any], bool]:
    return ANALYSES[command]
