"""The commands the server computes, and the analysis each runs: named as "module:function",
imported at first use, so that a command computing on the server imports no analysis."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# command -> (its analysis, whether that takes a progress callback)
ANALYSES: dict[str, tuple[str, bool]] = {
    "neurons": ("lazarus.analyses.neurons:analyse_neurons", True),
    "probe": ("lazarus.analyses.probe:analyse_probe", True),
    "ablate": ("lazarus.analyses.ablate:analyse_ablation", True),
    "steer": ("lazarus.analyses.steer:analyse_steer", False),
    "patch": ("lazarus.analyses.patch:analyse_patch", True),
    "attribute": ("lazarus.analyses.attribute:analyse_attribution", True),
    "examples": ("lazarus.analyses.contexts:examples_and_contexts", True),
    "card": ("lazarus.analyses.card:analyse_card", True)}
COMMANDS = tuple(ANALYSES)


def analysis_of(command: str) -> tuple[Callable[..., Any], bool]:
    name, takes_progress = ANALYSES[command]
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function), takes_progress
