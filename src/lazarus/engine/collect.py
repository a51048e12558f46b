"""From (model, prompts, layers) to activation rows: the path every command takes.

1. Rows already in the activation cache (`cache.py`) are read; when every prompt is there,
   nothing else happens: neither torch nor the model is loaded.
2. Otherwise the model is loaded up to the deepest asked-for layer only (`load_model`'s
   `up_to_layer`), and the capture engine runs on the missing prompts alone (each distinct
   prompt once), writing each batch's rows to the cache as it goes, so an interrupted run keeps
   what it computed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus.engine.cache import ActivationCache
from lazarus.engine.capture import capture
from lazarus.engine.loading import LoadedModel, load_model, token_counts
from lazarus.engine.model_info import ModelInfo
from lazarus.engine.placement import Target, resolve
from lazarus.engine.sites import RESIDUAL_WIDTH
from lazarus.engine.trace import CaptureRequest
from lazarus.text import plural

Notify = Callable[[str], None]  # a note for the user (the CLI shows it on stderr)
Progress = Callable[[int, int, str], None]  # (prompts given done, prompts given, what goes on)


@dataclass(frozen=True)
class ModelSettings:
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    device_map: str | None = None
    use_cache: bool = True  # read and write the activation cache


@dataclass(frozen=True)
class Collected:
    rows: dict[int, Any]  # {layer: float32 [prompts, width]}, or for position "all"
    # {layer: [float32 [tokens, width] per prompt]}
    device: str  # device type the rows were computed on
    dtype: str
    widths: dict[int, int]  # the site's full width per layer (rows may hold only some columns)
    prompts_from_cache: int = 0  # how many of the prompts (counting repeats) were all cached
    computed: int = 0  # distinct prompts run through the model


def collect(
    info: ModelInfo,
    prompts: Sequence[str],
    request: CaptureRequest,
    settings: ModelSettings = ModelSettings(),
    progress: Progress | None = None,
    notify: Notify | None = None,
    loader: Callable[[int], LoadedModel] | None = None,
) -> Collected:
    """Rows {layer: [prompts, width]} at the request's site, from the cache where possible.

    `progress(done, total, detail)` counts the prompts given (a cached or repeated prompt is
    done at once) and says what is going on. `loader(deepest_layer)` gives the loaded model
    (a `Model` handle's, kept between calls); by default the model is loaded for this call.
    """
    say = notify or (lambda _message: None)
    tell = progress or (lambda _done, _total, _detail="": None)
    tell(0, len(prompts), "reading the activation cache" if settings.use_cache else "")
    if not request.layers:
        raise ValueError("collect needs at least one layer")
    distinct = list(dict.fromkeys(prompts))
    store: ActivationCache | None = None
    # The cache holds full-width rows only, and a grouped site's units (never its raw columns).
    if settings.use_cache and request.columns is None and not request.raw:
        store = _open_cache(info, request, settings)
        if not store.enabled:
            say(f"no activation cache for {info.model_id}: its files cannot be identified")
            store = None
    target = resolve(info.config, settings.device, settings.dtype, settings.device_map)
    found = _read(store, target, info, request, distinct, settings)
    missing = _missing(distinct, found)
    widths: dict[int, int] = {}

    if missing:
        tell(0, len(prompts), f"loading {info.model_id}: importing torch, reading weights")
        loaded = (loader or _loader(info, settings, say))(max(request.layers))
        actual = Target(device=loaded.device, dtype=loaded.dtype)
        if store is not None:
            # Identify the files as loaded (a Hub model may only now have all its files), and
            # use the rows of the device and dtype the model really runs with (accelerate's
            # device map may have put the embeddings elsewhere).
            loaded_store = _open_cache(info, request, settings)
            if actual != target or loaded_store.folder != store.folder:
                store = loaded_store if loaded_store.enabled else None
                found = _read(store, actual, info, request, distinct, settings)
                missing = _missing(distinct, found)
        target = actual
        times = Counter(prompts)  # a computed prompt stands for each of its repeats
        done = [len(prompts) - sum(times[p] for p in missing)]  # the cached ones
        detail = _skipped_detail(prompts, missing, store is not None)
        write = _writer(store, target, missing, say)
        tell(done[0], len(prompts), detail)

        def batch_done(indices: list[int], rows: dict[int, Any]) -> None:
            if write is not None:
                write(indices, rows)
            done[0] += sum(times[missing[i]] for i in indices)
            tell(done[0], len(prompts), detail)

        computed = capture(loaded, missing, request, on_rows=batch_done, notify=say,
                           widths=widths)
        for layer, values in computed.items():
            found[layer].update(zip(missing, values, strict=True))
    computed_prompts = set(missing)
    cached_prompts = sum(p not in computed_prompts for p in prompts)
    if not missing:
        tell(len(prompts), len(prompts), _skipped_detail(prompts, missing, store is not None))
    if store is not None and cached_prompts:
        say(f"{cached_prompts} of {plural(len(prompts), 'prompt')} from the activation cache "
            f"({store.root})")
    if request.position == "all":
        rows = {layer: [found[layer][p] for p in prompts] for layer in request.layers}
    else:
        rows = {layer: np.stack([found[layer][p] for p in prompts]) for layer in request.layers}
    if request.columns is None:  # full-width rows, cached or computed
        widths = {layer: found[layer][prompts[0]].shape[-1] for layer in request.layers}
    return Collected(rows=rows, device=target.device, dtype=target.dtype, widths=widths,
                     prompts_from_cache=cached_prompts if store is not None else 0,
                     computed=len(missing))


def _loader(info: ModelInfo, settings: ModelSettings,
            say: Notify) -> Callable[[int], LoadedModel]:
    """Load for one call: only the blocks up to the deepest asked-for layer."""
    def load(deepest: int) -> LoadedModel:
        return load_model(info, settings.device, settings.dtype, settings.trust_remote_code,
                          up_to_layer=deepest, device_map=settings.device_map, notify=say)

    return load


def _skipped_detail(prompts: Sequence[str], missing: Sequence[str], cached: bool) -> str:
    """What the progress line says about prompts that need no computing."""
    distinct = len(set(prompts))
    repeats = len(prompts) - distinct
    from_cache = distinct - len(missing) if cached else 0
    parts = ([f"{from_cache} from the cache"] if from_cache else []) + (
        [f"{repeats} repeated"] if repeats else [])
    return ", ".join(parts)


def _open_cache(info: ModelInfo, request: CaptureRequest,
                settings: ModelSettings) -> ActivationCache:
    return ActivationCache(info, request.site, position=request.position,
                           trust_remote_code=settings.trust_remote_code,
                           device_map=settings.device_map)


def _read(store: ActivationCache | None, target: Target, info: ModelInfo,
          request: CaptureRequest, prompts: Sequence[str],
          settings: ModelSettings) -> dict[int, dict[str, np.ndarray]]:
    """{layer: {prompt: cached row}} at `target`, keeping only rows of the right shape: as wide
    as the hidden size on the residual stream, else as most rows of the layer (so one damaged
    row cannot set the width), and for position "all" one row per token of the prompt."""
    found: dict[int, dict[str, np.ndarray]] = {layer: {} for layer in request.layers}
    if store is None:
        return found
    counts = None
    for layer, rows in found.items():
        got = {p: row for p in prompts if (row := store.get(target, layer, p)) is not None}
        if not got:
            continue
        if request.position == "all" and counts is None:
            counts = token_counts(info, list(prompts), settings.trust_remote_code)
        widths = Counter(row.shape[-1] for row in got.values())
        width = info.hidden_size if request.site in RESIDUAL_WIDTH else widths.most_common(1)[0][0]
        rows.update({p: row for p, row in got.items() if row.shape[-1] == width
                     and (counts is None or row.shape[0] == counts[p])})
    return found


def _missing(prompts: Sequence[str], found: dict[int, dict[str, np.ndarray]]) -> list[str]:
    return [p for p in prompts if any(p not in rows for rows in found.values())]


def _writer(store: ActivationCache | None, target: Target, prompts: Sequence[str],
            say: Notify) -> Callable[[list[int], dict[int, np.ndarray]], None] | None:
    """The capture's per-batch callback that stores rows in the cache (best effort: a cache
    that cannot be written is reported once, and the run goes on without it)."""
    if store is None:
        return None
    failed: list[OSError] = []

    def write(indices: list[int], rows: dict[int, np.ndarray]) -> None:
        if failed:
            return
        try:
            for layer, values in rows.items():
                for index, row in zip(indices, values, strict=True):
                    store.put(target, layer, prompts[index], row)
        except OSError as err:
            failed.append(err)
            say(f"cannot write the activation cache in {store.root} ({err.strerror or err}); "
                "going on without it")

    return write
