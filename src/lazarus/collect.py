"""From (model, prompts, layers) to activation rows: the path every command takes.

Today: load the model, run the capture engine. This is the one place where caching and partial
loading plug in, so that commands never re-implement any of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lazarus.capture import CaptureRequest, Progress
from lazarus.loading import ModelInfo

Notify = Callable[[str], None]  # a note for the user (the CLI shows it on stderr)


@dataclass(frozen=True)
class ModelSettings:
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    device_map: str | None = None
    use_cache: bool = True


@dataclass(frozen=True)
class Collected:
    rows: dict[int, np.ndarray]  # {layer: float32 [prompts, width]}
    device: str
    dtype: str
    prompts_from_cache: int = 0


def collect(
    info: ModelInfo,
    prompts: Sequence[str],
    request: CaptureRequest,
    settings: ModelSettings = ModelSettings(),
    progress: Progress | None = None,
    notify: Notify | None = None,
) -> Collected:
    from lazarus.capture import capture
    from lazarus.loading import load_model

    loaded = load_model(info, settings.device, settings.dtype, settings.trust_remote_code)
    rows = capture(loaded, prompts, request, progress=progress)
    return Collected(rows=rows, device=loaded.device, dtype=loaded.dtype)
