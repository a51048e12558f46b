"""Is the checkpoint on disk whole, and did loading it leave any computed weight to chance?

Two failures that transformers does not stop: a safetensors file cut short (an interrupted
download) fails deep inside the loader with a message that names no file; and a config that
claims more blocks than the checkpoint holds, or names other weights than it holds, loads with
the missing ones *randomly initialised*, so every run gives other numbers. Both are checked
here, without torch, and turned into one line that names the file and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from lazarus.errors import LazarusError
from lazarus.text import plural

_HEADER_LIMIT = 100_000_000  # safetensors' own limit on the JSON header's size
# A decoder block's index in a parameter name: model.layers.3.mlp..., transformer.h.3...,
# transformer.blocks.3..., gpt_neox.layers.3...
_BLOCK_INDEX = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")
# Parameters that only the LM head uses: never computed by lazarus, which stops before it.
_HEAD_NAMES = re.compile(r"(?:^|\.)(?:lm_head|embed_out)\.")


def safetensors_header(path: Path) -> tuple[dict, int]:
    """(the header's tensor entries, where the data starts); ValueError if it is not one."""
    with open(path, "rb") as file:
        size = int.from_bytes(file.read(8), "little")
        if not 0 < size < _HEADER_LIMIT:
            raise ValueError("no safetensors header")
        raw = file.read(size)
    if len(raw) != size:
        raise ValueError("the header is cut short")
    try:
        header = json.loads(raw)
    except RecursionError:  # json's reader recurses once per level of nesting
        raise ValueError("its header nests too deeply to describe tensors") from None
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + size


def check_safetensors(paths: Iterable[Path]) -> None:
    """Every file's header is readable and its tensors end exactly where the file does."""
    for path in paths:
        try:
            header, start = safetensors_header(path)
            ends = [entry["data_offsets"][1] for entry in header.values()]
            expected = start + max(ends, default=0)
        except (KeyError, TypeError, IndexError):
            raise LazarusError(f"{path} is not a readable safetensors file (its header does not "
                               "describe tensors; download or save it again)") from None
        except (OSError, ValueError) as err:
            raise LazarusError(f"{path} is not a readable safetensors file ({err}; download "
                               "or save it again)") from None
        actual = path.stat().st_size
        if actual != expected:
            raise LazarusError(f"{path} is truncated or damaged: its header needs {expected} "
                               f"bytes but the file has {actual} (an interrupted download? "
                               "download or save it again)")


def block_index(name: str) -> int | None:
    match = _BLOCK_INDEX.search(name)
    return None if match is None else int(match.group(1))


def refuse_chance(source: str, loading: dict, deepest: int, *,
                  missing_outside_blocks: bool = True) -> None:
    """A one-line error when a load (`output_loading_info`) left weights that decide values at
    blocks 0..deepest to chance.

    A weight missing from the checkpoint, or of another shape than the config makes (loaded
    with `ignore_mismatched_sizes`), is randomly initialised: it matters when it belongs to a
    computed block or sits before the blocks (embeddings), not when it is only the LM head's or
    a later block's. A checkpoint weight that the model did not take (unexpected) matters when
    it belongs to a computed block: the checkpoint describes another architecture.
    `missing_outside_blocks=False` leaves missing non-block weights to the caller.
    """
    def computed(name: str) -> bool:
        index = block_index(name)
        if index is None:
            return missing_outside_blocks and not _HEAD_NAMES.search(name)
        return index <= deepest

    missing = sorted(name for name in loading.get("missing_keys") or () if computed(name))
    if missing:
        raise LazarusError(
            f"{source} has no weights for {plural(len(missing), 'parameter')} that would be "
            f"computed, such as {missing[0]}, and lazarus will not fill them with random values "
            "(check the layer count and sizes in config.json, or download the checkpoint "
            "again)")
    mismatched = sorted((entry for entry in loading.get("mismatched_keys") or ()
                         if computed(entry[0])), key=lambda entry: entry[0])
    if mismatched:
        name, stored, made = mismatched[0]
        raise LazarusError(
            f"{source} holds {plural(len(mismatched), 'weight')} of other shapes than config.json "
            f"describes, such as {name} ({tuple(stored)} in the checkpoint, {tuple(made)} in "
            "the model: fix config.json, or download the model again)")
    unexpected = sorted(name for name in loading.get("unexpected_keys") or ()
                        if (index := block_index(name)) is not None and index <= deepest)
    if unexpected:
        raise LazarusError(
            f"{source} holds {plural(len(unexpected), 'weight')} that this config's "
            f"architecture does not use, such as {unexpected[0]} (config.json does not match "
            "the checkpoint: fix it, or download the model again)")


# Bytes per element of the safetensors dtypes; floating ones load in the model's dtype instead.
_ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
             "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def loaded_bytes(paths: Iterable[Path], itemsize: int, up_to_layer: int | None = None) -> int:
    """About how many bytes the weights in `paths` take once loaded with floating tensors of
    `itemsize` bytes (blocks 0..up_to_layer and what comes before them, no LM head; all with
    None), read from the safetensors headers before anything loads: what a keep-alive server
    makes room for. A file that is not safetensors counts its size on disk."""
    total = 0
    for path in paths:
        try:
            if path.suffix != ".safetensors":
                total += path.stat().st_size
                continue
            header, _ = safetensors_header(path)
        except (OSError, ValueError):
            continue  # loading it says what is wrong
        for name, entry in header.items():
            index = block_index(name)
            if up_to_layer is not None and (index is not None and index > up_to_layer
                                            or index is None and _HEAD_NAMES.search(name)):
                continue
            try:
                count = 1
                for size in entry["shape"]:
                    count *= int(size)
                kind = str(entry["dtype"])
            except (KeyError, TypeError, ValueError):
                continue
            total += count * (itemsize if kind.startswith(("F", "BF")) else _ITEMSIZE.get(kind, 4))
    return total
