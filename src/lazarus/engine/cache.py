"""The activation cache: captured rows kept on disk, so that a re-run on the same prompts is free.

One `.npy` file (float32, the site's full width, read without pickle) per model, settings,
device type, dtype, site, token position, layer and prompt:

    <folder>/v1/<model>-<identity>/<device>-<dtype>/<site>-<position>/layer-<L>/<xx>/<sha256>.npy

`<folder>` is `$LAZARUS_CACHE_DIR`, else `$XDG_CACHE_HOME/lazarus`, else `~/.cache/lazarus`.
`<identity>` is a hash of everything that decides the values (see `model_identity`): the model's
files, the settings that change what is computed (`--trust-remote-code`, `--device-map`), and
the versions of lazarus's capture format, torch and transformers. Finding a row imports neither
torch nor transformers.

Why the files' identity cannot go stale: a file of at most `HASHED_BYTES` (config, tokenizer,
small checkpoints) is identified by a hash of its content. A larger one (weights) is identified by
its size, inode, device, modification time and *change time* (ctime): the kernel sets the ctime
to "now" whenever a file's content or metadata changes, and no system call lets a user set it
back, so replacing or rewriting weights is a new identity even when `cp -p`, `rsync -a` or an
archive restores the old name, size and modification time. (A chmod or a new hard link also
changes it: a needless recomputation, never a wrong row.) Hub snapshots are folders of links to
content-addressed blobs, identified the same way, plus the snapshot's revision.

Rows are written atomically (a temporary file, then a rename), so concurrent or interrupted runs
never leave a half-written entry. Rows read back are checked before use (a regular file, a
little-endian float32 array of the expected rank whose header matches the file's size, every
value finite, or NaN for MoE expert units a token was not routed to); an
entry that fails is ignored and rewritten.

Rows are filed under the device type and dtype the model really ran with (`placement.resolve`
decides "auto" for loading and the cache alike, without torch).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lazarus.engine.model_info import ModelInfo, config_path
from lazarus.engine.moe import moe_shape
from lazarus.engine.placement import Target, versions
from lazarus.io.files import remove_stale_temps, replace_atomically
from lazarus.io.folder_walk import entries

FORMAT = "v1"  # bump when captured values would change for the same model and prompt


def cache_dir() -> Path:
    """`$LAZARUS_CACHE_DIR`, else `$XDG_CACHE_HOME/lazarus`, else `~/.cache/lazarus`."""
    if os.environ.get("LAZARUS_CACHE_DIR"):
        return Path(os.environ["LAZARUS_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lazarus"
    return Path.home() / ".cache" / "lazarus"


HASHED_BYTES = 16 << 20  # files up to this size are identified by their content's hash
_MAX_ROW_BYTES = 64 << 20  # a cache entry larger than this is not one of ours


def model_identity(info: ModelInfo) -> dict[str, object] | None:
    """What identifies the model's files on disk, or None when it cannot be told (no caching).

    Every regular, non-hidden file at the top of the model's folder (or Hub snapshot) counts,
    whatever its name: a file that `from_pretrained` reads can never be left out by mistake.
    """
    folder = Path(info.source)
    identity: dict[str, object] = {}
    if not folder.is_dir():
        folder = config_path(info.source).parent
        if folder.parent.name != "snapshots":
            return None
        identity = {"hub": info.source, "revision": folder.name}
    try:
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        identity["files"] = [_file_identity(p) for p in files if p.is_file()]
    except OSError:
        return None
    return identity


def _file_identity(path: Path) -> list[object]:
    """[name, content hash] for a small file; [name, size, inode, device, mtime, ctime] else."""
    stat = path.stat()  # through a link, as from_pretrained reads it
    if stat.st_size <= HASHED_BYTES:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        return [path.name, digest.hexdigest()]
    return [path.name, stat.st_size, stat.st_ino, stat.st_dev, stat.st_mtime_ns,
            stat.st_ctime_ns]


class ActivationCache:
    """The cached rows of one model: `get` and `put` one (layer, prompt) row at a time."""

    def __init__(self, info: ModelInfo, site: str, root: Path | None = None, *,
                 position: str | int = "last", trust_remote_code: bool = False,
                 device_map: str | None = None) -> None:
        identity = model_identity(info)
        self.enabled = identity is not None
        self.root = root or cache_dir()
        self.site = site
        self.position = str(position)
        self.ndim = 2 if self.position == "all" else 1  # [tokens, width] or [width]
        # NaN means "not routed to this expert" in MoE expert units; anywhere else it is damage.
        self.allows_nan = site == "mlp_post" and moe_shape(info.config) is not None
        self.info = info
        described = {"format": FORMAT, "identity": identity, **versions(),
                     "trust_remote_code": trust_remote_code, "device_map": device_map}
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in info.model_id)
        self.folder = self.root / FORMAT / f"{slug[-60:].strip('-.') or 'model'}-{digest[:20]}"
        self._described = {"model_id": info.model_id, "source": info.source, **described}
        self._described_written = False
        self._cleaned: set[Path] = set()

    def path(self, target: Target, layer: int, prompt: str) -> Path:
        digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        return (self.folder / f"{target.device}-{target.dtype}" / f"{self.site}-{self.position}"
                / f"layer-{layer}" / digest[:2] / f"{digest}.npy")

    def get(self, target: Target, layer: int, prompt: str) -> np.ndarray | None:
        """The cached row, or None when it is missing or is not a sound row (see module doc)."""
        if not self.enabled:
            return None
        return read_row(self.path(target, layer, prompt), self.ndim, self.allows_nan)

    def put(self, target: Target, layer: int, prompt: str, row: np.ndarray) -> None:
        """Store one row atomically. Raises OSError when the cache folder cannot be written."""
        if not self.enabled:
            return
        path = self.path(target, layer, prompt)
        if path.parent not in self._cleaned:  # a killed run's leftovers, once per folder
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(path, any_target=True)
            self._cleaned.add(path.parent)
        replace_atomically(path, lambda temp: _save_row(temp, row), clean_stale=False)
        if not self._described_written:
            text = json.dumps(self._described, indent=2, sort_keys=True).encode()
            replace_atomically(self.folder / "model.json", lambda temp: temp.write_bytes(text))
            self._described_written = True


def _save_row(temp: Path, row: np.ndarray) -> None:
    with open(temp, "wb") as file:  # a file object: np.save would add ".npy" to a path
        np.save(file, np.ascontiguousarray(row, np.float32), allow_pickle=False)


def read_row(path: Path, ndim: int = 1, allows_nan: bool = False) -> np.ndarray | None:
    """A float32 row of `ndim` dimensions written by `_save_row`, or None for anything else.

    The file is opened without blocking (a FIFO put in an entry's place cannot hang the run),
    must be a regular file of a plausible size, and its header must declare exactly the number
    of values the file holds, so a forged header cannot make numpy allocate a huge array.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_ROW_BYTES:
                return None
            version = np.lib.format.read_magic(file)
            if version not in ((1, 0), (2, 0)):
                return None
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = header(file, max_header_size=1024)
            count = int(np.prod(shape)) if shape else 0
            if (len(shape) != ndim or count == 0 or fortran or dtype != np.dtype("<f4")
                    or info.st_size - file.tell() != 4 * count):
                return None
            row = np.frombuffer(file.read(4 * count), dtype="<f4").astype(np.float32)
        except (OSError, ValueError, EOFError, TypeError):
            return None
    finite = np.isfinite(row)
    if row.size != count or not np.all(finite | np.isnan(row) if allows_nan else finite):
        return None
    return row.reshape(shape)


def _read_json_object(path: Path) -> dict:
    """A JSON object from a small file of ours, or {} when it is missing or is anything else."""
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return {}
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class CachedModel:
    """One model's part of the cache."""

    model_id: str  # as the user named it when its rows were written
    source: str  # the folder or Hub ID it was loaded from
    folder: Path
    rows: int  # cached rows (one per layer, prompt, device type and dtype)
    bytes: int


@dataclass(frozen=True)
class CacheSummary:
    folder: Path  # the cache folder (it need not exist)
    rows: int
    bytes: int
    models: tuple[CachedModel, ...] = ()
    skipped: Path | None = None  # lazarus's subfolder when it is a link: not followed


def describe(root: Path | None = None) -> CacheSummary:
    """What the cache holds: its folder, and rows and bytes per model. Never fails on what it
    finds there: unreadable or foreign files are counted as bytes, never as rows; links are
    not followed (see `folder_walk`)."""
    root = root or cache_dir()
    versioned = root / FORMAT
    if versioned.is_symlink():
        return CacheSummary(folder=root, rows=0, bytes=0, skipped=versioned)
    models = []
    for folder in _subfolders(versioned):
        about = _read_json_object(folder / "model.json")
        rows, size = _count(folder)
        models.append(CachedModel(model_id=str(about.get("model_id", folder.name)),
                                  source=str(about.get("source", "?")), folder=folder,
                                  rows=rows, bytes=size))
    _, size = _count(versioned)
    return CacheSummary(folder=root, rows=sum(m.rows for m in models), bytes=size,
                        models=tuple(models))


@dataclass(frozen=True)
class Cleared:
    """What `clear` really removed, and what it could not or would not."""

    folder: Path
    rows: int
    bytes: int
    left: int  # files (or folders that could not be opened) that could not be removed
    links: int = 0  # symbolic links removed (never what they point to)
    skipped: Path | None = None  # lazarus's subfolder when it is a link: left as it is


def clear(root: Path | None = None) -> Cleared:
    """Delete every file under lazarus's own subfolder (files beside it are left alone), and
    count what was really removed. No link is ever followed (`folder_walk`): a link inside is
    removed as a file, and a subfolder that is itself a link is left alone, since what it points
    to is not ours to empty. The cache folder itself is followed when it is a link: it is where
    the user chose to keep the cache."""
    root = root or cache_dir()
    versioned = root / FORMAT
    if versioned.is_symlink():
        return Cleared(folder=root, rows=0, bytes=0, left=0, skipped=versioned)
    rows = size = left = links = 0
    for entry in entries(versioned):
        try:
            if entry.is_folder:
                os.rmdir(entry.name, dir_fd=entry.parent)
            else:
                os.unlink(entry.name, dir_fd=entry.parent)
        except OSError:
            # A folder that was entered is left because a file in it is, already counted.
            left += not (entry.is_folder and entry.entered)
            continue
        links += entry.is_link
        if stat.S_ISREG(entry.info.st_mode):
            size += entry.info.st_size
            rows += _is_row(entry.name)
    with contextlib.suppress(OSError):
        versioned.rmdir()
    return Cleared(folder=root, rows=rows, bytes=size, left=left, links=links)


def usage(folder: Path) -> tuple[int, int]:
    """(subfolders, bytes of the files under them) of `folder`, without following links: what
    `cache info` shows of the corpus scans' work folders."""
    folders = size = 0
    for entry in entries(folder):
        folders += entry.is_folder and entry.depth == 1
        if entry.depth > 1 and stat.S_ISREG(entry.info.st_mode):
            size += entry.info.st_size
    return folders, size


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _is_row(name: str) -> bool:
    return name.endswith(".npy") and not name.startswith(".")


def _count(folder: Path) -> tuple[int, int]:
    """(rows, bytes) of the regular files under `folder`, without following links."""
    rows = size = 0
    for entry in entries(folder):
        if stat.S_ISREG(entry.info.st_mode):
            size += entry.info.st_size
            rows += _is_row(entry.name)
    return rows, size
