"""What a script passes to the API, checked once before anything loads, as the CLI's parser
checks argv.

Every argument of `Model` (its constructor, so `lazarus.load` too, and each public method) is
checked by its name (`CHECKS`), through `engine.arguments`: by `checked`, or for a command's
options when they are made (`Options`, which the CLI builds too). A wrong type is one
`LazarusError` naming the argument, what was given and what is taken, never a TypeError or
AttributeError from deep inside, nor a bool or float quietly read as a number (`layers=True` as
layer 1). An argument or field with no check fails at import, so a new one cannot be left out.
Checks also normalise (a path object to text, a generator of prompts to a list, numpy integers
to int), so the analyses get plain values. The rules between a command's options are its
`Options.check`; what needs the model (layers against its depth, widths) is left to the
analyses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

from lazarus.engine.placement import DEVICE_MAPS, DEVICES, DTYPES
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, DirectionSource
from lazarus.io.inputs import NeuronIds, parse_layers, resolve_layer
from lazarus.text import shown

Layers = int | Sequence[int] | str  # 3, -1, [0, 2], "0,2,5-7", "all"
LAYERS = ('a layer number (e.g. 0, or -1 for the last), a list of them, or text such as "0,2-5" '
          'or "all"')


def _kind(value: object) -> str:
    """'a float', 'an int', 'None': what a value is, for a message."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _held(item: object) -> str:
    """'a float 0.9', or 'None' (not 'None None'): an item of a list, for a message."""
    return "None" if item is None else f"{_kind(item)} {shown(item)}"


def _refused(name: str, value: object, takes: str, why: str | None = None) -> LazarusError:
    return LazarusError(f"{name}={shown(value)} is {why or _kind(value)}; {name} takes {takes}")


def _is_whole(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def whole(name: str, value: Any) -> int:
    if not _is_whole(value):
        raise _refused(name, value, "a whole number (e.g. 3)")
    return int(value)


def positive(name: str, value: Any) -> int:
    """A whole number from 1 (for the knobs no analysis checks: batch sizes)."""
    if whole(name, value) < 1:
        raise _refused(name, value, "a whole number from 1 (or None for the default)",
                       "below 1")
    return int(value)


def number(name: str, value: Any) -> float:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise _refused(name, value, "a number (e.g. 0.5)")
    if not math.isfinite(value):
        raise _refused(name, value, "a finite number", "not finite")
    return float(value)


def flag(name: str, value: Any) -> bool:
    if type(value).__name__ not in ("bool", "bool_"):  # Python's or numpy's
        raise _refused(name, value, "True or False")
    return bool(value)


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _refused(name, value, "text (a str)")
    return value


def path(name: str, value: Any) -> str:
    if not isinstance(value, str | os.PathLike) or not isinstance(os.fspath(value), str):
        raise _refused(name, value, "a path (a str or pathlib.Path)")
    return os.fspath(value)


def callback(name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise _refused(name, value, "a function (or None)")
    return value


def choice(*choices: str, none: bool = False) -> Callable[[str, Any], str]:
    """One of `choices` (`none`: or None, said in the message)."""
    takes = f"one of {', '.join(map(repr, choices))}" + (" or None" if none else "")

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _refused(name, value, takes,
                           "an unknown value" if isinstance(value, str) else None)
        return value
    return check


def _items(name: str, value: Any, takes: str) -> list[Any]:
    """The items of a list-like argument (a str, bytes or dict is not one)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise _refused(name, value, takes)
    return list(value)


def texts(name: str, value: Any) -> list[str]:
    """A list of strings (labels, answers, words)."""
    if isinstance(value, str):  # 'a|b' is the CLI's form: the example splits it
        raise _refused(name, value, f"a list of strings (e.g. {name}={shown(value.split('|'))})",
                       "one string")
    items = _items(name, value, "a list of strings")
    for item in items:
        if not isinstance(item, str):
            raise LazarusError(f"{name} holds {_held(item)}; {name} takes "
                               "strings only")
    return items


def site_names(name: str, value: Any) -> list[str]:
    """Several sites: a list of names, or one text naming one or more ("resid_post,attn_out",
    as the CLI takes them)."""
    sites = ([part.strip() for part in value.split(",")] if isinstance(value, str)
             else [site.strip() for site in texts(name, value)])
    if "" in sites:
        given = "--site" if isinstance(value, str) else name  # a text is the CLI's form
        raise LazarusError(f"{given} {shown(value)} holds an empty site name (name each site "
                           "once, commas only between them: e.g. resid_post,attn_out)")
    return sites


def prompt_list(prompts: Any, name: str = "prompts", empty: bool = False) -> list[str]:
    """A list of non-empty prompt strings (`empty`: the list may be empty); `name` says which
    argument in the message."""
    items = texts(name, prompts)
    if not items and not empty:
        raise LazarusError(f"{name} is empty (give at least one prompt)")
    for index, item in enumerate(items, 1):
        if not item.strip():
            raise LazarusError(f"{name}: prompt {index} of {len(items)} is empty (remove it)")
    return items


def layers(name: str, value: Any) -> str | int | list[int]:
    """Layers as `resolve_layers` takes them; bools and floats are refused, not rounded."""
    if isinstance(value, str):
        return value
    if _is_whole(value):
        return int(value)
    items = _items(name, value, LAYERS)
    for item in items:
        if not _is_whole(item):
            raise LazarusError(f"{name} holds {_held(item)}; a layer is a whole "
                               "number (e.g. 0, or -1 for the last)")
    return [int(item) for item in items]


def resolve_layers(given: str | int | list[int], layer_count: int) -> tuple[int, ...]:
    """Layer ids (as `layers` leaves them) resolved against a model of `layer_count` layers
    (negative ones count from the end), each once, in the order given."""
    if isinstance(given, str):
        return parse_layers(given, layer_count)
    if isinstance(given, int):
        return (resolve_layer(given, layer_count),)
    resolved = tuple(dict.fromkeys(resolve_layer(n, layer_count) for n in given))
    if not resolved:
        raise LazarusError("no layer given (give at least one, e.g. layers=0)")
    return resolved


def position(name: str, value: Any) -> str | int:
    if isinstance(value, str):
        return value
    if not _is_whole(value):
        raise _refused(name, value, '"last", "first", "mean", "all" or a token index (e.g. 0)')
    return int(value)


def neuron_ids(neurons: Any, name: str = "neurons") -> list[int] | None:
    """Neuron ids as given by a script: whole numbers from 0, each once; or a result that names
    neurons (`NeuronIds`: a neurons result), its ids."""
    if neurons is None:
        return None
    if isinstance(neurons, NeuronIds):
        neurons = neurons.neuron_ids()
    ids = _items(name, neurons, f"a list of neuron ids (e.g. {name}=[808, 1190])")
    for value in ids:
        if not _is_whole(value) or value < 0:
            raise LazarusError(f"neuron id {shown(value)} is not a whole number from 0 (neurons "
                               "are numbered 0 .. width - 1)")
    if len(set(ids)) != len(ids):
        raise LazarusError("a neuron id is listed twice (list each once)")
    return [int(value) for value in ids]


def neuron_values(name: str, value: Any) -> dict[int, float]:
    """steer's {neuron id: value}."""
    if not isinstance(value, Mapping) or not value:
        raise _refused(name, value, "{neuron id: value} (e.g. neurons={808: 2.5, 1190: -1.0})",
                       "empty" if isinstance(value, Mapping) else None)
    ids = neuron_ids(list(value), name)
    return {n: number(f"{name}[{n}]", value[n]) for n in ids}


def numbers(name: str, value: Any) -> list[float]:
    items = _items(name, value, f"a list of numbers (e.g. {name}=[-2, 0, 2])")
    return [number(f"{name}[{index}]", item) for index, item in enumerate(items)]


def direction(name: str, value: Any) -> Any:
    """A `Direction`, a direction file's path, or a result that stands for a direction
    (`DirectionSource`: a probe's, whose best layer's direction it is; refused, as its
    `save_direction` is, when no layer beats chance)."""
    if isinstance(value, DirectionSource):
        value = value.to_direction()
    if isinstance(value, Direction):
        return value
    takes = "a Direction, a probe's result or a direction file's path (a str or pathlib.Path)"
    if not isinstance(value, str | os.PathLike) or not isinstance(os.fspath(value), str):
        raise _refused(name, value, takes)
    return os.fspath(value)


CHECKS: dict[str | tuple[str, str], Callable[[str, Any], Any]] = {
    "model": path, "device": choice(*DEVICES), "dtype": choice(*DTYPES),
    "device_map": choice(*DEVICE_MAPS, none=True), "notify": callback, "warn": callback,
    "progress": callback, "up_to_layer": whole,
    **dict.fromkeys(("prompts", "class_a", "class_b", "reference", "positive", "negative",
                     "clean", "corrupt"),
                    lambda name, value: prompt_list(value, name)),
    "test": lambda name, value: prompt_list(value, name, empty=True),
    **dict.fromkeys(("labels", "test_labels", "answers", "wrongs", "tokens", "sites"), texts),
    "layers": layers, "layer": layers, ("steer", "layer"): whole, "position": position,
    "neurons": lambda name, value: neuron_ids(value, name), ("steer", "neurons"): neuron_values,
    "direction": direction, ("patch", "direction"): choice("denoise", "noise"),
    "sites": site_names, "coefficients": numbers, "corpus": path, "work_dir": path,
    **dict.fromkeys(("site", "method", "component", "label_a", "label_b", "text_field", "metric",
                     "ray_address", "prompt"), text),
    **dict.fromkeys(("top_k", "permutations", "controls", "seed", "max_tokens", "examples",
                     "window", "stride", "shard_windows", "ray_workers", "steps", "top",
                     "self_check", "causal_windows"), whole),
    **dict.fromkeys(("token_budget", "max_batch"), positive),
    **dict.fromkeys(("alpha", "temperature"), number),
    **dict.fromkeys(("trust_remote_code", "use_cache", "whole", "auto_discover", "sweep", "ray",
                     "absolute", "clamp", "causal", "compare", "projection"), flag),
}


