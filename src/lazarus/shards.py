"""A scan's work folder and its files: each shard's summary, and (for Ray) each shard's windows.

The folder is named by a hash of the scan's settings, the corpus file and the model's files
(`work_folder`), so a rerun with the same arguments finds the shards it can keep.

A shard's summary is one file, `shard-NNNNNN.npz` (the single-process scan: numpy only) or
`shard-NNNNNN.parquet` (Ray's workers: one row per neuron, Ray Data's own format), written
atomically (`files.replace_atomically`), so a shard file is complete or absent. Either is read
back without pickle and checked array by array (`Summary.from_arrays`); a file that is not a
complete summary of this scan reads as absent, and the shard is computed again. The summary's
sketch is mostly zeros, so both formats are compressed.

For Ray, the driver writes each pending shard's windows (`windows-NNNNNN.npz`: token ids and
where each window comes from) for a worker to read, so that the workers need neither the corpus
nor the tokenizer's pass over it, and the driver's memory does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lazarus.corpus import Window
from lazarus.errors import LazarusError
from lazarus.examples import BUCKETS, Summary

if TYPE_CHECKING:
    from lazarus.scan import ScanSettings

FORMAT = 2  # of the work folder's files (2: the sketch's grid from the float's bits)
KEYS = ("count", "mean", "m2", "positive", "sketch", "top", "top_ids", "bottom", "bottom_ids")
FORMATS = (".npz", ".parquet")


def shard_path(folder: Path, number: int, suffix: str = ".npz") -> Path:
    return folder / f"shard-{number:06d}{suffix}"


def write_shard(folder: Path, number: int, summary: Summary, settings: ScanSettings,
                parquet: bool = False, stamp: dict[str, str] | None = None) -> Path:
    """Write the shard's summary; `stamp` goes into a Parquet file's metadata."""
    from lazarus.files import replace_atomically

    path = shard_path(folder, number, ".parquet" if parquet else ".npz")

    def write_npz(temp: Path) -> None:
        with open(temp, "wb") as file:  # a file object: np.savez would add ".npz" to a path
            np.savez_compressed(file, **summary.to_arrays())

    def write_parquet(temp: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(_table(summary, settings, stamp or {}), temp, compression="zstd")

    # `run_scan` removes a killed run's temporary files once, not at every shard.
    replace_atomically(path, write_parquet if parquet else write_npz, clean_stale=False)
    return path


def _table(summary: Summary, settings: ScanSettings, stamp: dict[str, str]) -> object:
    """One row per neuron; the lists are fixed-size, so the shapes are in the schema."""
    import pyarrow as pa

    width = summary.width
    neurons = np.arange(width) if settings.neurons is None else np.asarray(settings.neurons)

    def rows(array: np.ndarray) -> object:  # [width, ...] -> a fixed-size list per neuron
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)),
                                                 int(array.size // width))

    columns = {"neuron": pa.array(neurons.astype(np.int64)),
               "count": pa.array(np.full(width, summary.count, np.int64)),
               "mean": pa.array(summary.mean), "m2": pa.array(summary.m2),
               "positive": pa.array(summary.positive), "sketch": rows(summary.sketch),
               "top": rows(summary.top), "top_ids": rows(summary.top_ids),
               "bottom": rows(summary.bottom), "bottom_ids": rows(summary.bottom_ids)}
    return pa.table(columns, metadata={f"lazarus.{k}": v for k, v in stamp.items()})


def read_shard(folder: Path, number: int, settings: ScanSettings) -> Summary | None:
    """A shard's summary, or None when it is absent or not a complete one of this scan's."""
    for suffix in FORMATS:
        path = shard_path(folder, number, suffix)
        if not path.is_file():
            continue
        arrays = _read_npz(path) if suffix == ".npz" else _read_parquet(path)
        try:
            summary = None if arrays is None else Summary.from_arrays(arrays, settings.examples)
        except ValueError:
            summary = None
        if summary is not None and (settings.neurons is None
                                    or summary.width == len(settings.neurons)):
            return summary
    return None


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    from lazarus.npz import NpzError, read_arrays

    try:
        return read_arrays(path, dict.fromkeys(KEYS, 1 << 34))[0]
    except NpzError:
        return None


def _read_parquet(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a Parquet shard, or None when pyarrow is missing or the file is broken."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # a Ray run's shards, resumed without Ray: computed again
        return None
    try:
        table = pq.read_table(path, columns=list(KEYS))
        width = table.num_rows
        arrays = {}
        for key in KEYS:
            column = table.column(key).combine_chunks()
            if pa.types.is_fixed_size_list(column.type):
                column = column.flatten()
            arrays[key] = np.asarray(column.to_numpy(zero_copy_only=False))
        counts = arrays["count"]
        if width == 0 or len(np.unique(counts)) != 1:
            return None
        arrays["count"] = counts[:1]
        arrays["sketch"] = arrays["sketch"].reshape(width, BUCKETS)
        for key in ("top", "bottom"):
            arrays[key] = arrays[key].reshape(width, -1)
            arrays[f"{key}_ids"] = arrays[f"{key}_ids"].reshape(width, -1, 3)
        return arrays
    except (pa.ArrowException, OSError, KeyError, ValueError):
        return None


def windows_path(folder: Path, number: int) -> Path:
    return folder / "windows" / f"windows-{number:06d}.npz"


def write_windows(folder: Path, number: int, shard: list[Window]) -> None:
    from lazarus.files import replace_atomically

    path = windows_path(folder, number)
    path.parent.mkdir(exist_ok=True)
    where = np.array([[w.doc, w.index, w.start, w.scored_from, len(w.tokens)] for w in shard],
                     np.int64)  # [windows, 5]
    tokens = np.array([t for w in shard for t in w.tokens], np.int64)  # [tokens]

    def write(temp: Path) -> None:
        with open(temp, "wb") as file:
            np.savez(file, where=where, tokens=tokens)

    replace_atomically(path, write)


def read_windows(folder: Path, number: int) -> list[Window]:
    """A shard's windows, as the driver wrote them (ValueError if the file is not that)."""
    from lazarus.npz import NpzError, read_arrays

    try:
        arrays, _ = read_arrays(windows_path(folder, number),
                                {"where": 1 << 30, "tokens": 1 << 34})
    except NpzError as err:
        raise ValueError(f"windows of shard {number}: {err}") from None
    where, tokens = arrays.get("where"), arrays.get("tokens")
    if where is None or tokens is None or where.ndim != 2 or where.shape[1] != 5 \
            or int(where[:, 4].sum()) != len(tokens):
        raise ValueError(f"windows of shard {number}: not a shard's windows")
    ends = np.cumsum(where[:, 4])
    return [Window(int(doc), int(index), int(start),
                   tuple(int(t) for t in tokens[end - size:end]), int(scored))
            for (doc, index, start, scored, size), end in zip(where, ends, strict=True)]


def work_folder(root: Path, settings: ScanSettings, model_key: object) -> Path:
    """`root`/<hash of the settings, the corpus file and the model's files>."""
    from lazarus.cache import _file_identity

    identity = {"format": FORMAT, "settings": asdict(settings), "model": model_key,
                "corpus": _file_identity(Path(settings.corpus))}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return root / digest.hexdigest()[:24]


def check_work_dir(folder: Path) -> None:
    """Make `folder` (and its parents), or say in one line why it cannot be the work folder."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LazarusError(f"cannot use {folder} as the work folder ({err.strerror or err}; give "
                           "--work-dir a folder you can write)") from None


def default_root() -> Path:
    from lazarus.cache import cache_dir

    return cache_dir() / "examples"


def work_folders(root: Path | None = None) -> tuple[Path, int, int]:
    """(the examples' root, how many work folders it holds, their bytes)."""
    root = default_root() if root is None else root
    folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    size = sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
    return root, len(folders), size
