"""Edits a forward pass applies at a site: what ablation and steering change, as plain data.

An `Edit` names a (layer, site) of `sites.SITES` and what happens there, at every token
position of every row (prompt tokens and generated tokens alike, padding included, where it is
masked out anyway):
- `set`: some columns (neurons) of the site, or all of them (a whole component), are replaced:
  by 0 (`values` None), by one value per column (`values` [k], e.g. a mean), or per prompt by
  another prompt's values (`per_prompt`: [tokens, k] per prompt; token t takes the reference's
  token min(t, its last), so generated tokens take its last token's values).
- `add`: a vector as wide as the site is added (steering).

`trace.Trace` owns the hooks and calls `apply_edits` inside them; this module only computes
the new tensor and puts it back where the module's input or output was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Edit:
    layer: int
    site: str
    kind: str  # "set" or "add"
    columns: tuple[int, ...] | None = None  # set: the neurons replaced; None: every one
    values: np.ndarray | None = None  # set: [k] per column (None: 0); add: [width]
    per_prompt: tuple[np.ndarray, ...] | None = None  # set: [tokens, k] per prompt (resample)

    def __post_init__(self) -> None:
        if self.kind not in ("set", "add"):
            raise ValueError(f"unknown edit kind {self.kind!r}")
        if self.kind == "add" and self.values is None:
            raise ValueError("an add edit needs a vector")


def zero(layer: int, site: str, columns: tuple[int, ...] | None = None) -> Edit:
    return Edit(layer, site, "set", columns)


def add(layer: int, site: str, vector: np.ndarray) -> Edit:
    return Edit(layer, site, "add", values=np.asarray(vector, dtype=np.float32))


def apply_edits(value: Any, edits: tuple[Edit, ...], rows: Any, positions: Any) -> Any:
    """[batch, tokens, width] -> the edited copy. `rows` [batch]: each row's prompt index
    (for `per_prompt`); `positions` [batch, tokens]: each token's index within its prompt."""
    import torch

    out = value.clone()
    for edit in edits:
        if edit.kind == "add":
            out = out + torch.as_tensor(edit.values, dtype=out.dtype, device=out.device)
            continue
        columns = slice(None) if edit.columns is None else list(edit.columns)
        if edit.per_prompt is not None:
            for row in range(out.shape[0]):
                reference = torch.as_tensor(edit.per_prompt[int(rows[row])], dtype=out.dtype,
                                            device=out.device)  # [reference tokens, k]
                index = positions[row].clamp(max=reference.shape[0] - 1).to(out.device)
                out[row][:, columns] = reference[index]
        elif edit.values is None:
            out[..., columns] = 0
        else:
            out[..., columns] = torch.as_tensor(edit.values, dtype=out.dtype, device=out.device)
    return out


def replace_input(args: tuple[Any, ...], kwargs: dict[str, Any],
                  new: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """What a forward pre-hook returns to hand the module `new` as its input."""
    if args:
        return (new, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": new}


def replace_output(output: Any, new: Any) -> Any:
    """What a forward hook returns to make `new` the module's output (first item of a tuple)."""
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    return new
