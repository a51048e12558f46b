"""The handle every analysis is given: a model read once, its config now, its weights (whole or
up to a block) on first use, its tokenizer, and how it is run (device, dtype, cache, callbacks).

Analyses are typed against `ModelHandle`, the little they use, so that anything holding a
model (a later keep-alive server's, a test's) can be given to them. `Handle` is the one
implementation: `lazarus.Model` is it with the analyses as methods, and a Ray worker builds a
bare `Handle`, so loading is written once, here.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from lazarus.engine.arguments import checked
from lazarus.engine.checkpoint import loaded_bytes
from lazarus.engine.checks import Layers, resolve_layers
from lazarus.engine.collect import ModelSettings
from lazarus.engine.loading import LoadedModel, load_model, load_tokenizer
from lazarus.engine.model_info import ModelInfo, local_files, read_model_info
from lazarus.engine.placement import Target, resolve
from lazarus.errors import LazarusError
from lazarus.text import plural


class LazarusWarning(UserWarning):
    """Something the user should know, which does not stop the analysis."""


class ModelHandle(Protocol):
    """What an analysis may ask of a model."""

    info: ModelInfo  # what its files say (config, identity), read without torch
    settings: ModelSettings  # device, dtype, remote code, device map, cache
    notify: Callable[[str], None]  # notes (the CLI: stderr; the API: the `lazarus` logger)
    warn: Callable[[str], None]  # warnings, likewise

    @property
    def model_id(self) -> str: ...

    @property
    def layer_count(self) -> int: ...

    @property
    def hidden_size(self) -> int: ...

    def layers(self, layers: Layers) -> tuple[int, ...]:
        """Layer ids resolved against the model (negative ones count from the end)."""

    def tokenizer(self) -> Any:
        """The tokenizer, without loading weights."""

    def target(self) -> Target:
        """The device type and dtype the weights are (or would be) loaded with."""

    def weights(self, up_to_layer: int) -> LoadedModel:
        """The loaded model with at least blocks 0..up_to_layer."""

    def whole_weights(self) -> LoadedModel:
        """Every block and the LM head, as interventions need."""


class Handle:
    """A model, read once: its config now, its weights at the first call that computes; what
    every analysis is given (`lazarus.Model` adds the analyses as methods).

    `whole=True` loads every block, so any later layer is free; `whole=False` loads only the
    blocks the call needs (what the CLI does for one run), and a later call that needs deeper
    blocks loads again.
    """

    @checked
    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, device_map: str | None = None,
                 use_cache: bool = True, whole: bool = True,
                 notify: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.info = read_model_info(model)
        self.settings = ModelSettings(device=device, dtype=dtype,
                                      trust_remote_code=trust_remote_code,
                                      device_map=device_map, use_cache=use_cache)
        self.whole = whole
        self.notify = notify or logging.getLogger("lazarus").info
        self.warn = warn or (lambda message: warnings.warn(message, LazarusWarning,
                                                           stacklevel=3))
        self.loads = 0  # how many times the weights were loaded
        # A keep-alive server's hooks: `loading(bytes)` wraps each load (it makes room for the
        # bytes to come, and keeps what loading says); `using(up_to_layer)` is told of each
        # call for the weights (it says again what a run in process would say as it loads).
        self.loading: Callable[[int], AbstractContextManager[None]] | None = None
        self.using: Callable[[int | None], None] | None = None
        self._loaded: LoadedModel | None = None
        self._tokenizer: Any = None

    def __repr__(self) -> str:
        state = "not loaded" if self._loaded is None else (
            f"{plural(self._loaded.blocks_loaded, 'block')} on {self._loaded.device}")
        return (f"lazarus.{type(self).__name__}({self.info.model_id!r}, "
                f"{plural(self.info.layer_count, 'layer')}, hidden size "
                f"{self.info.hidden_size}, {state})")

    @property
    def model_id(self) -> str:
        return self.info.model_id

    @property
    def layer_count(self) -> int:
        return self.info.layer_count

    @property
    def hidden_size(self) -> int:
        return self.info.hidden_size

    def tokenizer(self) -> Any:
        """The model's tokenizer, without loading any weights (the loaded model's, if any)."""
        if self._loaded is not None:
            return self._loaded.tokenizer
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.info, self.settings.trust_remote_code)
        return self._tokenizer

    def target(self) -> Target:
        """The device type and dtype the weights are (or would be) loaded with."""
        s = self.settings
        return resolve(self.info.config, s.device, s.dtype, s.device_map)

    @checked
    def weights(self, up_to_layer: int) -> LoadedModel:
        """The loaded model, with at least blocks 0..up_to_layer; loads only when it must."""
        if not 0 <= up_to_layer < self.layer_count:
            raise LazarusError(f"up_to_layer={up_to_layer} is out of range; this model has "
                               f"layers 0 to {self.layer_count - 1}")
        if self.using is not None:
            self.using(up_to_layer)
        if self._loaded is None or self._loaded.blocks_loaded <= up_to_layer:
            self._load(None if self.whole else up_to_layer)
        return self._loaded

    def whole_weights(self) -> LoadedModel:
        """Every block and the LM head, as interventions need (a partial load has no head):
        loads again only when the model held is not whole."""
        if self.using is not None:
            self.using(None)
        if self._loaded is None or self._loaded.block_count is not None \
                or self._loaded.model.get_output_embeddings() is None:
            self._load(None)
            if self._loaded.model.get_output_embeddings() is None:
                raise LazarusError(f"{self.model_id} has no LM head, so its outputs cannot be "
                                   "measured (give a causal language model)")
        return self._loaded

    def _load(self, up_to_layer: int | None) -> None:
        """Load the weights anew, blocks 0..up_to_layer (all with None), letting the copy held
        go first so that two are never held at once."""
        self._loaded = None
        s = self.settings
        around = nullcontext() if self.loading is None else \
            self.loading(self._expected_weight_bytes(up_to_layer))
        with around:
            self._loaded = load_model(self.info, s.device, s.dtype, s.trust_remote_code,
                                      up_to_layer=up_to_layer, device_map=s.device_map,
                                      notify=self.notify)
        self.loads += 1

    def weight_bytes(self) -> int:
        """The bytes of the parameters held (0 before the first load): what a keep-alive server
        counts against its memory cap."""
        if self._loaded is None:
            return 0
        return sum(p.numel() * p.element_size() for p in self._loaded.model.parameters())

    def _expected_weight_bytes(self, up_to_layer: int | None = None) -> int:
        """About the bytes the parameters of blocks 0..up_to_layer (all with None) will take
        once loaded, read from the weight files before loading; 0 when none is on disk yet."""
        files = local_files(self.info, ".safetensors")
        if not files:  # transformers reads the safetensors files when there are any
            files = local_files(self.info, ".bin", ".pt", ".pth")
        itemsize = 4 if self.target().dtype == "float32" else 2
        return loaded_bytes(files, itemsize, up_to_layer)

    @checked
    def layers(self, layers: Layers) -> tuple[int, ...]:
        """Layer ids resolved against this model (negative ones count from the end)."""
        return resolve_layers(layers, self.layer_count)
