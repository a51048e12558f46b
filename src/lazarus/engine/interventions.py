"""Edits a forward pass applies at a site: what ablation and steering change, as plain data.

An `Edit` names a (layer, site) of `sites.SITES` and what happens there, at every token
position of every row (prompt tokens and generated tokens alike, padding included, where it is
masked out anyway):
- `set`: some columns (neurons) of the site, or all of them (a whole component), are replaced:
  by 0 (`values` None), by one value per column (`values` [k], e.g. a mean), or per prompt by
  another prompt's values (`per_prompt`: [tokens, k] per prompt; token t takes the reference's
  token min(t, its last), so generated tokens take its last token's values).
- `add`: a vector as wide as the site is added (steering).
- `patch`: each row of the batch (`rows`: its job's index) takes, at some of its tokens and
  some units, the values of a source tensor (`patching`: another run's activations). Jobs are
  `(source index, tokens or None, units or None)`, or None for a row left alone; sources are
  [tokens, width] tensors, token t of a row taking the source's token t (patched runs have the
  same length as their source).
Columns name units: at a site whose units span several columns (`sites.Site.group`, a head's
head_dim), a unit's edit changes all of them; values are given per column of the site.

`trace.Trace` owns the hooks and calls `apply_edits` inside them; this module only computes
the new tensor and puts it back where the module's input or output was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Job = tuple[int, tuple[int, ...] | None, tuple[int, ...] | None]  # (source, tokens, units)


@dataclass(frozen=True, eq=False)
class Edit:
    layer: int
    site: str
    kind: str  # "set" or "add"
    columns: tuple[int, ...] | None = None  # set: the neurons replaced; None: every one
    values: np.ndarray | None = None  # set: [k] per column (None: 0); add: [width]
    per_prompt: tuple[np.ndarray, ...] | None = None  # set: [tokens, k] per prompt (resample)
    sources: tuple[Any, ...] = ()  # patch: [tokens, width] arrays or tensors
    jobs: tuple[Job | None, ...] = ()  # patch: per job (rows), what it takes from a source

    def __post_init__(self) -> None:
        if self.kind not in ("set", "add", "patch"):
            raise ValueError(f"unknown edit kind {self.kind!r}")
        if self.kind == "add" and self.values is None:
            raise ValueError("an add edit needs a vector")


def zero(layer: int, site: str, columns: tuple[int, ...] | None = None) -> Edit:
    return Edit(layer, site, "set", columns)


def add(layer: int, site: str, vector: np.ndarray) -> Edit:
    return Edit(layer, site, "add", values=np.asarray(vector, dtype=np.float32))


def apply_edits(value: Any, edits: tuple[Edit, ...], rows: Any, positions: Any,
                group: int = 1) -> Any:
    """[batch, tokens, width] -> the edited copy. `rows` [batch]: each row's prompt index
    (for `per_prompt`) or job index (for `patch`); `positions` [batch, tokens]: each token's
    index within its prompt; `group`: columns per unit."""
    import torch

    out = value.clone()
    for edit in edits:
        if edit.kind == "add":
            out = out + torch.as_tensor(edit.values, dtype=out.dtype, device=out.device)
            continue
        if edit.kind == "patch":
            _patch(out, edit, rows, group)
            continue
        columns = unit_columns(edit.columns, group)
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


def unit_columns(units: tuple[int, ...] | None, group: int) -> Any:
    """The columns of `units` (all of them: a slice) at a site of `group` columns per unit."""
    if units is None:
        return slice(None)
    return [unit * group + offset for unit in units for offset in range(group)]


def _patch(out: Any, edit: Edit, rows: Any, group: int) -> None:
    import torch

    for row in range(out.shape[0]):
        job = edit.jobs[int(rows[row])]
        if job is None:
            continue
        source_index, tokens, units = job
        source = torch.as_tensor(edit.sources[source_index], dtype=out.dtype,
                                 device=out.device)  # [tokens, width]
        where = torch.arange(source.shape[0], device=out.device) if tokens is None else (
            torch.as_tensor(tokens, device=out.device))
        columns = unit_columns(units, group)
        if isinstance(columns, slice):
            out[row, where] = source[where]
        else:
            index = torch.as_tensor(columns, device=out.device)
            out[row, where[:, None], index] = source[where[:, None], index]


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
