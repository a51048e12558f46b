"""A scan's work folder and its files: each shard's summary, and (for Ray) each shard's windows.

The folder is named by a hash of the scan's settings, the corpus file and the model's files
(`work_folder`), so a rerun with the same arguments finds the shards it can keep.

A shard's summary is one file, `shard-NNNNNN.npz` (the single-process scan: numpy only) or
`shard-NNNNNN.parquet` (Ray's workers: one row per neuron, Ray Data's own format), written
atomically (`files.replace_atomically`), so a shard file is complete or absent; a failure to
write (a full disk, a folder in the way) is one line (`writing`). Either is read back without
pickle and checked array by array (`Summary.from_arrays`), then against the shard's windows
(`shard_checks`); a file that is not a complete summary of this scan is named in a warning and
removed, and the shard is computed again. The summary's sketch is mostly zeros, so both formats
are compressed; Parquet's pages also carry checksums.

For Ray, the driver writes each pending shard's windows (`windows-NNNNNN.npz`: token ids and
where each window comes from) for a worker to read, so that the workers need neither the corpus
nor the tokenizer's pass over it, and the driver's memory does not grow with the corpus.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lazarus.analyses.shard_checks import shard_problem
from lazarus.engine.cache import _file_identity, cache_dir
from lazarus.errors import LazarusError, first_line
from lazarus.io.corpus import Window
from lazarus.io.files import replace_atomically
from lazarus.io.npz import NpzError, read_arrays
from lazarus.stats.sketch import BUCKETS, Summary

FORMAT = 3  # of the work folder's files (2: the sketch's grid from the float's bits; 3: the
# Parquet shards' page checksums, and every option that changes a value in the key)
KEYS = ("count", "mean", "m2", "positive", "sketch", "top", "top_ids", "bottom", "bottom_ids")
FORMATS = (".npz", ".parquet")

SHARD_WINDOWS = 256  # windows per shard: a few seconds of work on a CPU


@dataclass(frozen=True)
class ScanSettings:
    """What a scan computes; the work folder is keyed by these (and the model's files)."""

    corpus: str
    layer: int
    site: str = "resid_post"
    neurons: tuple[int, ...] | None = None  # None: every neuron of the site
    examples: int = 10  # kept each way per neuron
    window: int = 64
    stride: int = 64
    text_field: str = "text"
    shard_windows: int = SHARD_WINDOWS
    # A saved direction's vector, as stored (float32 values; not normalised): the scan then
    # reads one pseudo-unit, activation(layer, site) . direction at every scored token.
    direction: tuple[float, ...] | None = field(default=None, repr=False)
    # An MoE layer's expert units (mlp_post): a token not routed to their expert has no value
    # and is left out, so a shard counts its routed tokens. Not in the key: the model's files,
    # the layer and the site, all in it, decide it.
    routed: bool = False

    def identity(self) -> dict[str, object]:
        """The settings as plain values, the direction as a hash of its float32 vector (left
        out when there is none, so that a neuron scan keeps the work folder it had before)."""
        plain = asdict(self)
        del plain["routed"]
        if self.direction is None:
            del plain["direction"]
        else:
            plain["direction"] = "sha256:" + hashlib.sha256(
                np.asarray(self.direction, np.float32).tobytes()).hexdigest()
        return plain


def shard_path(folder: Path, number: int, suffix: str = ".npz") -> Path:
    return folder / f"shard-{number:06d}{suffix}"


def write_shard(folder: Path, number: int, summary: Summary, settings: ScanSettings,
                parquet: bool = False, stamp: dict[str, str] | None = None) -> Path:
    """Write the shard's summary; `stamp` goes into a Parquet file's metadata."""
    path = shard_path(folder, number, ".parquet" if parquet else ".npz")

    def write_npz(temp: Path) -> None:
        with open(temp, "wb") as file:  # a file object: np.savez would add ".npz" to a path
            np.savez_compressed(file, **summary.to_arrays())

    def write_parquet(temp: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(_table(summary, settings, stamp or {}), temp, compression="zstd",
                       write_page_checksum=True)

    # `run_scan` removes a killed run's temporary files once, not at every shard.
    with writing(path):
        replace_atomically(path, write_parquet if parquet else write_npz, clean_stale=False)
    return path


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError while writing `path`, a file of the work folder, as one line naming the fix
    (a full disk, a folder in the file's place, a folder that cannot be written)."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some space, or give --work-dir a folder on a disk with room"
        elif err.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
            fix = "remove what is in its way, or give another --work-dir"
        else:
            fix = "give --work-dir a folder you can write"
        raise LazarusError(f"cannot write {path}: {reason} ({fix})") from None


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


def read_shard(folder: Path, number: int, settings: ScanSettings, tokens: int,
               width: int | None = None, windows: Sequence[Window] | None = None,
               warn: Callable[[str], None] | None = None) -> Summary | None:
    """The shard's summary, or None when it is absent or damaged: not a complete summary of
    this scan's `width` neurons (None: any) over the shard's `tokens` scored tokens (and, given
    them, its `windows`; `shard_checks`). A damaged file is named to `warn` and removed, so
    that the shard is computed again, never merged."""
    for suffix in FORMATS:
        path = shard_path(folder, number, suffix)
        if not path.is_file():
            continue
        read = _version(path)
        arrays = _read_npz(path) if suffix == ".npz" else _read_parquet(path, settings)
        if arrays is None:  # a Ray run's shards, resumed without pyarrow: computed again
            continue
        problem = arrays if isinstance(arrays, str) else None
        if problem is None:
            try:
                summary = Summary.from_arrays(arrays, settings.examples)
            except ValueError as err:
                problem = f"{err}"
            else:
                problem = shard_problem(summary, tokens, width, windows, settings.routed)
                if problem is None:
                    return summary
        if warn is not None:
            warn(f"{path} is damaged ({problem}); computing shard {number} again")
        if _version(path) == read:  # not a concurrent run's new file, written meanwhile
            with contextlib.suppress(OSError):
                path.unlink()
    return None


def _version(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _read_npz(path: Path) -> dict[str, np.ndarray] | str:
    """The arrays of a .npz shard, or what is wrong with the file."""
    try:
        return read_arrays(path, dict.fromkeys(KEYS, 1 << 34))[0]
    except NpzError as err:
        return str(err)


def _read_parquet(path: Path, settings: ScanSettings) -> dict[str, np.ndarray] | str | None:
    """The arrays of a Parquet shard, what is wrong with the file, or None without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:  # the checksums catch a damaged data page; a damaged header fails to decode
        table = pq.read_table(path, columns=["neuron", *KEYS], page_checksum_verification=True)
        width = table.num_rows
        arrays = {}
        for key in ("neuron", *KEYS):
            column = table.column(key).combine_chunks()
            if pa.types.is_fixed_size_list(column.type):
                column = column.flatten()
            arrays[key] = np.asarray(column.to_numpy(zero_copy_only=False))
    except (pa.ArrowException, OSError, KeyError, ValueError) as err:
        return f"not a readable Parquet file: {first_line(err)}"
    neurons = np.arange(width) if settings.neurons is None else np.asarray(settings.neurons)
    counts = arrays.pop("count")
    if width == 0 or not np.array_equal(arrays.pop("neuron"), neurons) \
            or len(np.unique(counts)) != 1:
        return "its neuron and count columns are not this scan's"
    arrays["count"] = counts[:1]
    try:
        arrays["sketch"] = arrays["sketch"].reshape(width, BUCKETS)
        for key in ("top", "bottom"):
            arrays[key] = arrays[key].reshape(width, -1)
            arrays[f"{key}_ids"] = arrays[f"{key}_ids"].reshape(width, -1, 3)
    except ValueError:
        return "its columns are not of a shard's shapes"
    return arrays


def windows_path(folder: Path, number: int) -> Path:
    return folder / "windows" / f"windows-{number:06d}.npz"


def write_windows(folder: Path, number: int, shard: list[Window]) -> None:
    path = windows_path(folder, number)
    where = np.array([[w.doc, w.index, w.start, w.scored_from, len(w.tokens)] for w in shard],
                     np.int64)  # [windows, 5]
    tokens = np.array([t for w in shard for t in w.tokens], np.int64)  # [tokens]

    def write(temp: Path) -> None:
        with open(temp, "wb") as file:
            np.savez(file, where=where, tokens=tokens)

    with writing(path):
        path.parent.mkdir(exist_ok=True)
        replace_atomically(path, write)


def read_windows(folder: Path, number: int) -> list[Window]:
    """A shard's windows, as the driver wrote them (ValueError if the file is not that)."""
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
    identity = {"format": FORMAT, "settings": settings.identity(), "model": model_key,
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
    return cache_dir() / "examples"
