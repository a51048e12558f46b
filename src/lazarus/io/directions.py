"""A direction in a layer's activation space and its `.npz` file, which holds plain arrays only.

Keys: `direction` (float32, hidden size) is required; `layer`, `label_positive`,
`label_negative`, `model_id`, `method`, `accuracy`, `separation`, `class_a_mean_projection`,
`class_b_mean_projection`, `hidden_size`, `importance` (float32, hidden size), `ranking`
(what `importance` measures) and `lazarus_version` are optional. Nothing is ever unpickled:
only the keys above are read, each within a size cap checked before it is inflated
(`lazarus.io.npz`), so a hostile file costs no more memory than a real one.

`DirectionSource` is what a script may give as a direction besides a `Direction` or a file: a
result that stands for one (a probe's).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from lazarus import __version__
from lazarus.errors import LazarusError
from lazarus.io.files import write_atomically
from lazarus.io.npz import NpzError, read_arrays
from lazarus.text import plural

_TEXT_KEYS = ("label_positive", "label_negative", "model_id", "method", "ranking", "site",
              "position")
_NUMBER_KEYS = ("accuracy", "separation", "class_a_mean_projection", "class_b_mean_projection")
MAX_ELEMENTS = 1 << 24  # per vector: far above any model's hidden size, bounds the memory used
_VECTOR_BYTES = MAX_ELEMENTS * 8  # float64 is fine too
_TEXT_BYTES = 1 << 16  # a label or model ID of up to 16384 characters
_SCALAR_BYTES = 16
# Only these keys are ever read; anything else in the file is never inflated.
_CAPS = {"direction": _VECTOR_BYTES, "importance": _VECTOR_BYTES, "layer": _SCALAR_BYTES,
         **{key: _TEXT_BYTES for key in _TEXT_KEYS},
         **{key: _SCALAR_BYTES for key in _NUMBER_KEYS}}


@dataclass(frozen=True)
class Direction:
    """Unit vector in raw activation coordinates; positive means more like class A."""

    direction: np.ndarray
    layer: int | None = None
    label_positive: str | None = None
    label_negative: str | None = None
    model_id: str | None = None
    method: str | None = None
    importance: np.ndarray | None = None  # per neuron, larger = separates the classes more
    ranking: str | None = None  # what `importance` measures, shown to the user
    metrics: dict[str, float] = field(default_factory=dict)  # accuracy, separation, ...
    site: str | None = None  # where it was read (`sites.SITES`); None: not said
    position: str | None = None  # which token (`positions`); None: not said
    source: str | None = None  # the file it was read from (not saved), for messages

    @property
    def hidden_size(self) -> int:
        return int(self.direction.shape[0])

    def ranking_scores(self) -> np.ndarray:
        """The per-neuron score that orders the top neurons: importance if stored, else |w|."""
        if self.importance is not None:
            return self.importance
        return np.abs(self.direction)

    def ranking_name(self) -> str:
        if self.importance is not None:
            return self.ranking or "importance stored in the file"
        return "|weight|"

    def top_neurons(self, k: int, warn: Callable[[str], None] | None = None) -> list[int]:
        """The k highest-scoring neurons, best first; ties go to the lower id. All of them when
        k is more than the direction has, said through `warn` if given."""
        scores = self.ranking_scores()
        width = scores.shape[0]
        if warn is not None and k > width:
            warn(f"--top-k {k} is more than the direction's {plural(width, 'neuron')}; using "
                 f"{'it' if width == 1 else f'all {width}'}")
        order = np.lexsort((np.arange(scores.shape[0]), -scores))
        return [int(i) for i in order[:k]]

    def weights_of(self, neurons: list[int]) -> dict[int, float]:
        return {n: float(self.direction[n]) for n in neurons}


@runtime_checkable
class DirectionSource(Protocol):
    """Anything that stands for a direction (a probe's result): taken wherever a `Direction`
    is (`model.neurons(direction=result)`). `to_direction` may refuse with a `LazarusError`."""

    def to_direction(self) -> Direction: ...


def save_direction(path: str, direction: Direction) -> None:
    arrays: dict[str, np.ndarray] = {
        "direction": np.asarray(direction.direction, dtype=np.float32),
        "hidden_size": np.array(direction.hidden_size, dtype=np.int64),
        "lazarus_version": np.array(__version__),
    }
    if direction.layer is not None:
        arrays["layer"] = np.array(direction.layer, dtype=np.int64)
    for key in _TEXT_KEYS:
        value = getattr(direction, key)
        if value is not None:
            arrays[key] = np.array(str(value))
    if direction.importance is not None:
        arrays["importance"] = np.asarray(direction.importance, dtype=np.float32)
    for key, value in direction.metrics.items():
        arrays[key] = np.array(float(value), dtype=np.float64)

    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.savez(handle, **arrays)

    write_atomically(path, write)


def load_direction(path: str, zeros: str = "it ranks no neuron") -> Direction:
    """Read and validate a direction file; every problem is a one-line `LazarusError`. `zeros`:
    what an all-zero direction leaves the reader without, said when refusing one."""
    file = Path(path)
    if not path:
        raise LazarusError("the direction file's path is empty (give the .npz file saved by "
                           "'lazarus introspect probe --save-direction FILE')")
    if file.is_dir():
        raise LazarusError(f"{path} is a folder, not a direction file (give the .npz file "
                           "saved by 'lazarus introspect probe --save-direction FILE')")
    if not file.is_file():
        raise LazarusError(f"direction file not found: {path} (run 'lazarus introspect probe "
                           "--save-direction FILE' first, or check the path)")
    if not zipfile.is_zipfile(file):
        raise LazarusError(f"{path} is not an .npz file (give a file saved by "
                           "'lazarus introspect probe --save-direction')")
    try:
        arrays, keys = read_arrays(file, _CAPS)
    except NpzError as err:
        raise LazarusError(f"{path}: {err} (give a file saved by 'lazarus introspect probe "
                           "--save-direction')") from None
    if "direction" not in arrays:
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise LazarusError(f"{path} has no 'direction' array (keys: {shown or 'none'}; save "
                           "one under the key 'direction')")

    vector = _real_vector(path, arrays, "direction")
    if not np.any(vector):
        raise LazarusError(f"{path}: 'direction' is all zeros, so {zeros} (re-run the probe "
                           "that made it)")
    importance = None
    if "importance" in arrays:
        importance = _real_vector(path, arrays, "importance")
        if importance.shape != vector.shape:
            raise LazarusError(f"{path}: 'importance' must be as long as 'direction' "
                               "(re-save the file, or drop that key)")

    def text(key: str) -> str | None:
        if key not in arrays:
            return None
        value = arrays[key]
        if value.ndim != 0 or value.dtype.kind not in "US":
            raise LazarusError(f"{path}: '{key}' must be a single text value (re-save it as "
                               f"np.array('...'), or drop that key)")
        return str(value)

    def number(key: str, whole: bool) -> float | None:
        if key not in arrays:
            return None
        value = arrays[key]
        kinds = "iu" if whole else "iuf"
        if value.ndim != 0 or value.dtype.kind not in kinds or not np.isfinite(value):
            kind = "whole number" if whole else "finite number"
            raise LazarusError(f"{path}: '{key}' must be a single {kind} (re-save it, or drop "
                               "that key)")
        return float(value)

    layer = number("layer", whole=True)
    metrics = {key: number(key, whole=False) for key in _NUMBER_KEYS if key in arrays}
    return Direction(
        source=path,
        direction=vector,
        layer=None if layer is None else int(layer),
        label_positive=text("label_positive"),
        label_negative=text("label_negative"),
        model_id=text("model_id"),
        method=text("method"),
        importance=importance,
        ranking=text("ranking"),
        site=text("site"),
        position=text("position"),
        metrics={key: value for key, value in metrics.items() if value is not None},
    )


def _real_vector(path: str, arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    """A 1-D, non-empty, real, finite float32 vector, or a one-line error naming the key."""
    value = arrays[key]
    if value.ndim != 1 or not 0 < value.size <= MAX_ELEMENTS or value.dtype.kind not in "iuf":
        raise LazarusError(f"{path}: '{key}' must be a non-empty 1-D array of real numbers "
                           f"(got shape {value.shape}, dtype {value.dtype})")
    with np.errstate(over="ignore"):
        vector = value.astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise LazarusError(f"{path}: '{key}' holds NaN, infinite or float32-overflowing values "
                           "(re-run the probe that made it)")
    return vector


