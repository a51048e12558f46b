"""What a script passes to the API, checked before anything loads, as the CLI's parser checks
argv: prompt lists, neuron ids and layers, each refused with a message that says the fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lazarus.errors import LazarusError

Layers = int | Sequence[int] | str  # 3, -1, [0, 2], "0,2,5-7", "all"


def resolve_layers(layers: Layers, layer_count: int) -> tuple[int, ...]:
    """Layer ids resolved against a model of `layer_count` layers (negative ones count from the
    end), each once, in the order given."""
    from lazarus.inputs import parse_layers, resolve_layer

    if isinstance(layers, str):
        return parse_layers(layers, layer_count)
    if isinstance(layers, int):
        return (resolve_layer(layers, layer_count),)
    resolved = tuple(dict.fromkeys(resolve_layer(int(n), layer_count) for n in layers))
    if not resolved:
        raise LazarusError("no layer given (give at least one, e.g. layers=0)")
    return resolved


def prompt_list(prompts: Sequence[str], name: str = "prompts", empty: bool = False) -> list[str]:
    """A list of non-empty prompt strings (`empty`: the list may be empty); `name` says which
    argument in the message."""
    if isinstance(prompts, str):
        raise LazarusError(f"{name} is one string; give a list of prompts (e.g. [{prompts!r}])")
    items = list(prompts)
    if not items and not empty:
        raise LazarusError(f"{name} is empty (give at least one prompt)")
    for number, item in enumerate(items, 1):
        if not isinstance(item, str):
            raise LazarusError(f"{name} holds {type(item).__name__} {item!r}, not text "
                               "(give prompts as strings)")
        if not item.strip():
            raise LazarusError(f"{name}: prompt {number} of {len(items)} is empty (remove it)")
    return items


def neuron_ids(neurons: Sequence[int] | None) -> list[int] | None:
    """Neuron ids as given by a script: whole numbers from 0, each once."""
    if neurons is None:
        return None
    if isinstance(neurons, (str, int)):
        raise LazarusError(f"neurons={neurons!r}: give a list of ids (e.g. neurons=[808, 1190])")
    ids = list(neurons)
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise LazarusError(f"neuron id {value!r} is not a whole number from 0 (neurons are "
                               "numbered 0 .. width - 1)")
    if len(set(ids)) != len(ids):
        raise LazarusError("a neuron id is listed twice (list each once)")
    return [int(value) for value in ids]
