"""What an `examples` scan will compute and where its shards are kept, from the arguments
alone, before any weight loads: the arguments checked, the neurons chosen, and the work folder
named by a hash of every option that changes a computed value (`model_key`, `ScanSettings`),
the corpus file and the model's files; the options that change none are in NOT_IN_KEY."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lazarus.analyses.neurons import check_direction_early
from lazarus.analyses.selection import check_direction_made
from lazarus.analyses.shards import SHARD_WINDOWS, ScanSettings, default_root, work_folder
from lazarus.engine.cache import model_identity
from lazarus.engine.checks import neuron_ids
from lazarus.engine.handle import Handle
from lazarus.engine.placement import versions
from lazarus.engine.sites import RESIDUAL_WIDTH, check_neurons_early, check_site
from lazarus.errors import LazarusError
from lazarus.io.corpus import check_corpus, check_window, resolve_corpus
from lazarus.io.directions import Direction, load_direction

# The options of `examples` (the CLI's arguments, the API's keywords) that change no value a
# scan computes, and so are left out of the work folder's key; every other option is in it,
# through `ScanSettings` or `model_key`. tests/test_adversarial_examples.py enumerates the
# options and fails on one that is in neither: a new option must be put in one or the other.
NOT_IN_KEY = {
    "output": "the report's file",
    "color": "how the report is shown",
    "work_dir": "where the work folders are kept (the key names one inside it)",
    "progress": "a callback told of the progress",
    "ray": "who computes the shards: Ray's actors run the same code with this process's "
           "torch thread count, bit for bit",
    "ray_workers": "how many Ray actors (as for ray)",
    "ray_address": "which Ray cluster (as for ray)",
    "token_budget": "how windows are batched, which moves a value by float rounding at most, "
                    "as the thread count does; a rerun with a smaller budget after running out "
                    "of memory must keep its shards",
    "max_batch": "how windows are batched (as for token_budget)",
    "use_cache": "the activation cache, which examples does not use",
    "no_cache": "the CLI's use_cache",
    "whole": "whether a handle loads every block; examples reads the same values either way",
    "notify": "a callback told of the notes",
    "warn": "a callback told of the warnings",
}


@dataclass(frozen=True)
class ExamplesPlan:
    """What a scan will compute and where its shards are kept, known before any weight loads."""

    settings: ScanSettings
    folder: Path  # the work folder
    width: int | None  # neurons read (None: the site's, known once its values are)
    choice: str  # how the neurons were chosen


def model_key(model: Handle) -> dict[str, object]:
    """What of the model changes the values a scan computes: its files (with the Hub revision,
    see `cache.model_identity`), how they load (remote code, device map) and run (device type,
    dtype), and the torch and transformers versions."""
    target = model.target()
    return {"files": model_identity(model.info) or model.model_id, "device": target.device,
            "dtype": target.dtype, "trust_remote_code": model.settings.trust_remote_code,
            "device_map": model.settings.device_map, **versions()}


def plan_examples(model: Handle, corpus: str, layer: int, *, site: str = "resid_post",
                  neurons: Sequence[int] | None = None,
                  direction: Direction | str | None = None, top_k: int | None = None,
                  examples: int = 10, window: int = 64, stride: int | None = None,
                  text_field: str = "text", work_dir: str | Path | None = None,
                  shard_windows: int = SHARD_WINDOWS, ray: bool = False,
                  ray_workers: int | None = None,
                  ray_address: str | None = None) -> ExamplesPlan:
    """Check `analyse_examples`' arguments and name its work folder: a hash of every option
    that changes a computed value (the others are in NOT_IN_KEY), the corpus file and the
    model's files."""
    if not isinstance(corpus, str | os.PathLike):
        raise LazarusError(f"corpus={corpus!r}: give the corpus file's path (e.g. "
                           "corpus='data.txt') or hf:ORG/NAME")
    corpus = os.fspath(corpus)
    neurons = neuron_ids(neurons)
    check_site(site)
    stride = check_window(window, stride)
    for name, value in (("--examples", examples), ("--shard-windows", shard_windows),
                        ("--top-k", top_k), ("ray_workers", ray_workers)):
        if value is not None and value < 1:
            raise LazarusError(f"{name} must be at least 1 (got {value})")
    if neurons is not None and direction is not None:
        raise LazarusError("--neurons and --from-direction were both given (choose one)")
    if top_k is not None and direction is None:
        model.warn("top_k is ignored without a direction (it chooses a direction's top "
                   "neurons)")
    if ray_workers is not None and not ray and ray_address is None:
        model.warn("ray_workers is ignored without ray=True or ray_address (add ray=True)")
    corpus = resolve_corpus(corpus)
    check_corpus(corpus, text_field)
    choice = "every neuron of the site"
    if isinstance(direction, str):
        direction = load_direction(direction)
    if direction is not None:
        name = direction.source or "the direction"
        # Every token is read here, so the position the direction was made at does not apply.
        check_direction_made(direction, name, model.model_id, (layer,), site,
                             direction.position or "last", model.warn)
        check_direction_early(direction, model.info.config, model.hidden_size, name, site)
        neurons = direction.top_neurons(10 if top_k is None else top_k, model.warn)
        choice = f"top {len(neurons)} of {name} by {direction.ranking_name()}"
    elif neurons is not None:
        if not neurons:
            raise LazarusError("neurons is empty (give at least one id, e.g. neurons=[3, 50])")
        # before the weights load: ids no layer of the site has
        check_neurons_early(model.info.config, model.hidden_size, site, layer, neurons)
        choice = "given"
    settings = ScanSettings(corpus=corpus, layer=layer, site=site,
                            neurons=None if neurons is None else tuple(neurons),
                            examples=examples, window=window, stride=stride,
                            text_field=text_field, shard_windows=shard_windows)
    root = default_root() if work_dir is None else Path(work_dir)
    width = len(neurons) if neurons is not None else (
        model.hidden_size if site in RESIDUAL_WIDTH else None)
    return ExamplesPlan(settings, work_folder(root, settings, model_key(model)), width, choice)
