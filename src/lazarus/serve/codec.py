"""Results and options as plain JSON, never pickle: a frozen lazarus dataclass becomes its class
name and fields, a numpy array its dtype, shape and bytes (base64). Decoding builds only
dataclasses of the whitelisted lazarus modules, and arrays of plain (numeric, bool, text)
dtypes, so a frame from the socket can make nothing else."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import math
from typing import Any

import numpy as np

# The modules whose dataclasses may cross the socket: the results, what they hold, the options.
MODULES = frozenset({
    "lazarus.results.ablation", "lazarus.results.activations", "lazarus.results.neurons",
    "lazarus.results.probe", "lazarus.results.steer", "lazarus.stats.controls",
    "lazarus.stats.discover", "lazarus.stats.neurons", "lazarus.stats.probe",
    "lazarus.stats.probe_fit", "lazarus.stats.probe_predict", "lazarus.stats.intervals",
    "lazarus.stats.welch", "lazarus.engine.collect", "lazarus.io.directions",
    "lazarus.analyses.options", "lazarus.results.patch", "lazarus.results.attribute",
    "lazarus.results.examples", "lazarus.results.card", "lazarus.stats.sketch",
    "lazarus.analyses.patch_options", "lazarus.analyses.attribute_options",
    "lazarus.analyses.card_options",
})
DTYPE_KINDS = "biufcUS"  # bool, integers, floats, complex, fixed-width text; never objects


class CodecError(ValueError):
    """A frame that does not decode to something lazarus sends."""


def encode(value: Any) -> Any:
    """`value` as JSON-ready data (dicts, lists, strings, numbers) with tagged objects."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype.kind not in DTYPE_KINDS:
            raise TypeError(f"cannot send an array of dtype {array.dtype}")
        return {"__array__": {"dtype": array.dtype.str, "shape": list(array.shape),
                              "scalar": isinstance(value, np.generic),
                              "data": base64.b64encode(
                                  np.ascontiguousarray(array).tobytes()).decode("ascii")}}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, tuple | frozenset | set):
        tag = {tuple: "__tuple__", frozenset: "__frozenset__", set: "__set__"}[type(value)]
        return {tag: [encode(item) for item in value]}
    if isinstance(value, dict):
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if cls.__module__ not in MODULES:
            raise TypeError(f"cannot send a {cls.__module__}.{cls.__qualname__}")
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: encode(getattr(value, f.name))
                           for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot send a {type(value).__name__}")


def decode(data: Any) -> Any:
    """The value `encode` made; `CodecError` for anything else."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise CodecError(f"unexpected {type(data).__name__} in a frame")
    if "__dataclass__" in data:
        return _dataclass(data.get("__dataclass__"), data.get("fields"))
    ((tag, body),) = data.items()
    if tag == "__float__" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "__array__" and isinstance(body, dict):
        return _array(body)
    if not isinstance(body, list):
        raise CodecError(f"unexpected {tag!r} in a frame")
    if tag == "__tuple__":
        return tuple(decode(item) for item in body)
    if tag in ("__frozenset__", "__set__"):
        return (frozenset if tag == "__frozenset__" else set)(decode(item) for item in body)
    if tag == "__dict__" and all(isinstance(p, list) and len(p) == 2 for p in body):
        return {decode(k): decode(v) for k, v in body}
    raise CodecError(f"unexpected {tag!r} in a frame")


def _array(body: dict) -> np.ndarray | np.generic:
    try:
        dtype = np.dtype(str(body["dtype"]))
        shape = tuple(int(n) for n in body["shape"])
        raw = base64.b64decode(body["data"], validate=True)
        if dtype.kind not in DTYPE_KINDS or dtype.hasobject:
            raise ValueError(f"dtype {dtype} is not sent")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as err:
        raise CodecError(f"a bad array in a frame: {err}") from None
    return array[()] if body.get("scalar") else array


def _dataclass(name: Any, fields: Any) -> Any:
    if not isinstance(name, str) or ":" not in name or not isinstance(fields, dict):
        raise CodecError("a bad object in a frame")
    module, qualname = name.split(":", 1)
    if module not in MODULES:
        raise CodecError(f"{module} is not a module whose objects are sent")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)
            and cls.__module__ == module):
        raise CodecError(f"{name} is not a lazarus result type")
    names = {f.name for f in dataclasses.fields(cls)}
    if set(fields) != names:
        raise CodecError(f"{name}: fields {sorted(fields)} are not {sorted(names)}")
    # Made as it was sent, field by field: __init__ / __post_init__ already ran on the server.
    value = object.__new__(cls)
    for key, item in fields.items():
        object.__setattr__(value, key, decode(item))
    return value
