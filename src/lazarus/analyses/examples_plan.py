"""What an `examples` scan will compute and where its shards are kept, from its options alone,
before any weight loads: the options checked against the model and the corpus, the neurons
chosen, and the work folder named by a hash of every option that changes a computed value
(`model_key`, `ScanSettings`), the corpus file and the model's files; the options that change
none are in NOT_IN_KEY."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lazarus.analyses.options import ExamplesOptions
from lazarus.analyses.selection import check_direction, direction_name, top_of
from lazarus.analyses.shards import ScanSettings, default_root, work_folder
from lazarus.engine.cache import model_identity
from lazarus.engine.handle import ModelHandle
from lazarus.engine.moe import moe_shape
from lazarus.engine.placement import versions
from lazarus.engine.sites import RESIDUAL_WIDTH, check_neurons_early
from lazarus.errors import LazarusError
from lazarus.io.corpus import check_corpus, resolve_corpus
from lazarus.io.directions import Direction

# The options of `examples` (the CLI's arguments, the API's keywords) that change no value a
# scan computes, and so are left out of the work folder's key; every other option is in it,
# through `ScanSettings` or `model_key`. tests/test_adversarial_examples.py enumerates the
# options and fails on one that is in neither: a new option must be put in one or the other.
NOT_IN_KEY = {
    "output": "the report's file",
    "color": "how the report is shown",
    "plot": "the picture's file",
    "keep_alive": "where the scan runs (a warm server runs the same code on the same files)",
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


def model_key(model: ModelHandle) -> dict[str, object]:
    """What of the model changes the values a scan computes: its files (with the Hub revision,
    see `cache.model_identity`), how they load (remote code, device map) and run (device type,
    dtype), and the torch and transformers versions."""
    target = model.target()
    return {"files": model_identity(model.info) or model.model_id, "device": target.device,
            "dtype": target.dtype, "trust_remote_code": model.settings.trust_remote_code,
            "device_map": model.settings.device_map, **versions()}


def projection_of(direction: Direction) -> str:
    """What a projection scan's one value is, said in its reports."""
    norm = float(np.linalg.norm(np.asarray(direction.direction, np.float64)))
    return (f"the projection on {direction_name(direction)}: the activation's dot product with "
            f"the direction's vector as stored (norm {norm:.4g}, not rescaled)")


def plan_examples(model: ModelHandle, corpus: str, options: ExamplesOptions) -> ExamplesPlan:
    """Check what `analyse_examples` is asked against the model and the corpus, choose the
    neurons and name the work folder: a hash of every option that changes a computed value
    (the others are in NOT_IN_KEY), the corpus file and the model's files."""
    layers = model.layers(options.layer)
    if len(layers) != 1:
        layer = options.layer
        shown = layer if isinstance(layer, str | int) else ",".join(map(str, layer))
        raise LazarusError(f"examples reads one layer; {shown} names {len(layers)} (give one)")
    layer, site, neurons, direction = layers[0], options.site, options.neurons, options.direction
    if options.top_k is not None and direction is None:
        model.warn("top_k is ignored without a direction (it chooses a direction's top "
                   "neurons)")
    if options.ray_workers is not None and not options.ray and options.ray_address is None:
        model.warn("ray_workers is ignored without ray=True or ray_address (add ray=True)")
    corpus = resolve_corpus(corpus)
    check_corpus(corpus, options.text_field)
    choice = "every neuron of the site"
    vector = None
    if direction is not None and options.projection:
        check_direction(model, direction, (layer,), site, None)
        vector = tuple(float(v) for v in np.asarray(direction.direction, np.float32))
        choice = projection_of(direction)
    elif direction is not None:
        # Every token is read here, so the position the direction was made at does not apply.
        check_direction(model, direction, (layer,), site, None)
        neurons = direction.top_neurons(10 if options.top_k is None else options.top_k,
                                        model.warn)
        choice = top_of(direction, len(neurons))
    elif neurons is not None:
        # before the weights load: ids no layer of the site has
        check_neurons_early(model.info.config, model.hidden_size, site, layer, neurons)
        choice = "given"
    settings = ScanSettings(corpus=corpus, layer=layer, site=site,
                            neurons=None if neurons is None else tuple(neurons),
                            examples=options.examples, window=options.window,
                            stride=options.stride, text_field=options.text_field,
                            shard_windows=options.shard_windows, direction=vector,
                            routed=vector is None and site == "mlp_post"
                            and moe_shape(model.info.config) is not None)
    root = default_root() if options.work_dir is None else Path(options.work_dir)
    width = 1 if vector is not None else len(neurons) if neurons is not None else (
        model.hidden_size if site in RESIDUAL_WIDTH else None)
    return ExamplesPlan(settings, work_folder(root, settings, model_key(model)), width, choice)
