"""The activation cache: captured rows kept on disk, so that a re-run on the same prompts is free.

One `.npy` file (float32, the site's full width, loaded with `allow_pickle=False`) per model,
device type, dtype, site, token position, layer and prompt:

    <folder>/v1/<model>-<identity>/<device>-<dtype>/<site>-<position>/layer-<L>/<xx>/<sha256>.npy

`<folder>` is `$LAZARUS_CACHE_DIR`, else `$XDG_CACHE_HOME/lazarus`, else `~/.cache/lazarus`.
`<identity>` is a hash of what is on disk: for a local folder the names, sizes and modification
times of its config, tokenizer and weight files; for a Hub model the revision (commit) of the
Hub cache's snapshot. It also covers the versions of lazarus's capture format, torch and
transformers. Changed weights thus never hit an old entry. Finding a row imports neither torch
nor transformers.

Rows are written atomically (a temporary file, then a rename), so concurrent or interrupted runs
never leave a half-written entry; an entry that cannot be read is ignored and rewritten.

`device="auto"` and `dtype="auto"` are resolved without torch by `predict_target`: the device is
cuda when a GPU is visible (an NVIDIA or AMD driver, `CUDA_VISIBLE_DEVICES` not empty, and not a
CPU-only torch build), mps on Apple silicon, else cpu; the dtype is float32 on CPU and the
checkpoint's own dtype elsewhere, as `load_model` does. Rows are always written under the device
and dtype the model really ran with, so a wrong guess costs a recomputation, never a wrong row;
and the cache remembers what the guess turned out to be, so it costs that only once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from lazarus.files import replace_atomically
from lazarus.loading import ModelInfo, config_path

FORMAT = "v1"  # bump when captured values would change for the same model and prompt
POSITION = "last"
_WEIGHT_AND_TOKENIZER_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".model",
                                  ".txt", ".tiktoken", ".py", ".msgpack", ".h5", ".gguf")


def cache_dir() -> Path:
    """`$LAZARUS_CACHE_DIR`, else `$XDG_CACHE_HOME/lazarus`, else `~/.cache/lazarus`."""
    if os.environ.get("LAZARUS_CACHE_DIR"):
        return Path(os.environ["LAZARUS_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lazarus"
    return Path.home() / ".cache" / "lazarus"


@dataclass(frozen=True)
class Target:
    """Where and in what precision rows were computed: part of every entry's key."""

    device: str  # a device type: "cpu", "cuda", "mps"
    dtype: str  # "float32", "bfloat16", "float16"


def predict_target(info: ModelInfo, device: str = "auto", dtype: str = "auto",
                   device_map: str | None = None) -> Target:
    """The device type and dtype `load_model` will use, found without torch (see module doc)."""
    if device_map is not None or device == "auto":
        device = _visible_accelerator(allow_mps=device_map is None)
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else checkpoint_dtype(info)
    return Target(device=device, dtype=dtype)


def _visible_accelerator(allow_mps: bool) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles")
    nvidia = Path("/proc/driver/nvidia/gpus")
    has_gpu = (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/kfd").exists()
    if has_gpu and not hidden and not _versions()["torch"].endswith("+cpu"):
        return "cuda"
    if allow_mps and platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def checkpoint_dtype(info: ModelInfo) -> str:
    """The dtype named by config.json (`dtype` or `torch_dtype`), float32 when it names none."""
    for config in (info.config.get("text_config") or {}, info.config):
        for key in ("dtype", "torch_dtype"):
            value = config.get(key)
            if isinstance(value, str) and value in ("float32", "float16", "bfloat16"):
                return value
    return "float32"


def model_identity(info: ModelInfo) -> dict[str, object] | None:
    """What identifies the model's files on disk, or None when it cannot be told (no caching)."""
    folder = Path(info.source)
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".")
                       and p.name.endswith(_WEIGHT_AND_TOKENIZER_SUFFIXES))
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return {"files": stats}
    snapshot = config_path(info.source).parent
    if snapshot.parent.name != "snapshots":
        return None
    return {"hub": info.source, "revision": snapshot.name}


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "none"
    return found


class ActivationCache:
    """The cached rows of one model: `get` and `put` one (layer, prompt) row at a time."""

    def __init__(self, info: ModelInfo, site: str, root: Path | None = None) -> None:
        identity = model_identity(info)
        self.enabled = identity is not None
        self.root = root or cache_dir()
        self.site = site
        self.info = info
        described = {"format": FORMAT, "identity": identity, **_versions()}
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in info.model_id)
        self.folder = self.root / FORMAT / f"{slug[-60:].strip('-.') or 'model'}-{digest[:20]}"
        self._described = {"model_id": info.model_id, "source": info.source, **described}
        self._described_written = False

    def recall_target(self, asked: str, guess: Target) -> Target:
        """What `asked` (the settings, as text) resolved to last time, else `guess`."""
        try:
            known = json.loads((self.folder / "targets.json").read_text(encoding="utf-8"))
            return Target(**known[f"{asked}|{guess.device}|{guess.dtype}"])
        except (OSError, ValueError, KeyError, TypeError):
            return guess

    def remember_target(self, asked: str, guess: Target, actual: Target) -> None:
        """Note that `asked`, guessed as `guess`, ran as `actual` (best effort)."""
        path = self.folder / "targets.json"
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        known[f"{asked}|{guess.device}|{guess.dtype}"] = {"device": actual.device,
                                                          "dtype": actual.dtype}
        text = json.dumps(known, indent=2, sort_keys=True).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, lambda temp: temp.write_bytes(text))
        except OSError:
            pass  # a cache that cannot be written is reported when rows are written

    def path(self, target: Target, layer: int, prompt: str) -> Path:
        digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        return (self.folder / f"{target.device}-{target.dtype}" / f"{self.site}-{POSITION}"
                / f"layer-{layer}" / digest[:2] / f"{digest}.npy")

    def get(self, target: Target, layer: int, prompt: str) -> np.ndarray | None:
        """The cached row, or None when it is missing or unreadable."""
        if not self.enabled:
            return None
        try:
            row = np.load(self.path(target, layer, prompt), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if row.ndim != 1 or row.dtype != np.float32 or row.size == 0:
            return None
        return row

    def put(self, target: Target, layer: int, prompt: str, row: np.ndarray) -> None:
        """Store one row atomically. Raises OSError when the cache folder cannot be written."""
        if not self.enabled:
            return
        path = self.path(target, layer, prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda temp: _save_row(temp, row))
        if not self._described_written:
            text = json.dumps(self._described, indent=2, sort_keys=True).encode()
            replace_atomically(self.folder / "model.json", lambda temp: temp.write_bytes(text))
            self._described_written = True


def _save_row(temp: Path, row: np.ndarray) -> None:
    with open(temp, "wb") as file:  # a file object: np.save would add ".npy" to a path
        np.save(file, np.ascontiguousarray(row, np.float32), allow_pickle=False)


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


def describe(root: Path | None = None) -> CacheSummary:
    """What the cache holds: its folder, and rows and bytes per model."""
    root = root or cache_dir()
    models = []
    versioned = root / FORMAT
    for folder in sorted(versioned.iterdir()) if versioned.is_dir() else ():
        if not folder.is_dir():
            continue
        try:
            about = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            about = {}
        rows, size = _count(folder)
        models.append(CachedModel(model_id=str(about.get("model_id", folder.name)),
                                  source=str(about.get("source", "?")), folder=folder,
                                  rows=rows, bytes=size))
    rows, size = _count(root / FORMAT) if versioned.is_dir() else (0, 0)
    return CacheSummary(folder=root, rows=sum(m.rows for m in models), bytes=size,
                        models=tuple(models))


def clear(root: Path | None = None) -> CacheSummary:
    """Delete every cached row; returns what was there. Only lazarus's own subfolder is removed,
    so a cache folder pointed at a folder holding other files leaves those files alone."""
    root = root or cache_dir()
    before = describe(root)
    shutil.rmtree(root / FORMAT, ignore_errors=True)
    return before


def _count(folder: Path) -> tuple[int, int]:
    rows = size = 0
    for directory, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.stat(os.path.join(directory, name)).st_size
            except OSError:
                continue
            rows += name.endswith(".npy") and not name.startswith(".")
    return rows, size
