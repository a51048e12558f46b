"""Where a model runs and in what precision: the one rule for `device="auto"` and `dtype="auto"`.

Decided without torch, so the activation cache can find rows before anything heavy is imported,
and obeyed by `load_model`, so the two can never disagree:

* device "auto": cuda when a GPU is visible (an NVIDIA or AMD driver, `CUDA_VISIBLE_DEVICES` not
  empty, and not a CPU-only torch build), else mps on Apple silicon, else cpu. With
  `device_map="auto"` accelerate places the model: cuda when a GPU is visible, else cpu.
* dtype "auto": float32 on CPU (half precision is slow there and rounds more); elsewhere the
  dtype config.json names (`dtype` or `torch_dtype`), float32 when it names none.

When the rule says cuda or mps but torch cannot use it (a driver newer than the build, say),
loading stops with a message naming `--device cpu`, rather than quietly running elsewhere.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lazarus.engine.configs import text_config

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")  # the dtypes lazarus runs and caches in
DEVICE_MAPS = ("auto",)  # accelerate's placement, the one the CLI offers and the tests cover


@dataclass(frozen=True)
class Target:
    """Where and in what precision rows are computed: part of every cache entry's key."""

    device: str  # a device type: "cpu", "cuda", "mps"
    dtype: str  # "float32", "bfloat16", "float16"


def resolve(config: dict[str, Any], device: str = "auto", dtype: str = "auto",
            device_map: str | None = None) -> Target:
    """The device type and dtype a model with this config.json runs with (see module doc)."""
    if device_map is not None or device == "auto":
        device = _visible_accelerator(allow_mps=device_map is None)
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else checkpoint_dtype(config)
    return Target(device=device, dtype=dtype)


def _visible_accelerator(allow_mps: bool) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles")
    nvidia = Path("/proc/driver/nvidia/gpus")
    has_gpu = (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/kfd").exists()
    if has_gpu and not hidden and not versions()["torch"].endswith("+cpu"):
        return "cuda"
    if allow_mps and platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def checkpoint_dtype(config: dict[str, Any]) -> str:
    """The dtype named by config.json (`dtype` or `torch_dtype`), float32 when it names none."""
    for part in (text_config(config), config):
        for key in ("dtype", "torch_dtype"):
            value = part.get(key)
            if isinstance(value, str) and value in DTYPES[1:]:
                return value
    return "float32"


def versions() -> dict[str, str]:
    """The installed torch and transformers versions ("none" when missing), without importing
    either."""
    from importlib import metadata  # ~20 ms: not at `lazarus --help`'s start

    found = {}
    for package in ("torch", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "none"
    return found
