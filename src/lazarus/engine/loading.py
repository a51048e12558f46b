"""Building a model from its files: `from_pretrained` for model and tokenizer, whole or in part.

`load_model` runs `from_pretrained` like any Hugging Face user would, preferring the local cache
so a cached model loads offline without a network round trip. Asked for layers 0..L only, it
builds the base model with the whole model's config and drops blocks L+1.. as soon as they are
built on the meta device, so that `from_pretrained` reads only the embeddings' and blocks 0..L's
tensors from the safetensors files, never the LM head, and whatever depends on the layer count
is computed as in the whole model. Which model and which files: `lazarus.engine.model_info`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lazarus.engine import collector
from lazarus.engine.checkpoint import check_safetensors, refuse_chance
from lazarus.engine.configs import layer_count, text_config
from lazarus.engine.model_info import ModelInfo, local_files, weight_files
from lazarus.engine.placement import resolve
from lazarus.engine.prefetch import prefetch_blocks
from lazarus.engine.sites import first_blocks_only
from lazarus.engine.timeline import span
from lazarus.errors import (
    LazarusError,
    first_line,
    innermost,
    other_transformers,
    transformers_version,
    upstream,
)

MODEL_FILES = "config.json and weight files"
TOKENIZER_FILES = "tokenizer files (tokenizer.json, tokenizer_config.json)"


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode
    tokenizer: Any
    info: ModelInfo
    device: str  # "cpu", "cuda", ... (device of the input embeddings)
    dtype: str  # "float32", ...
    block_count: int | None = None  # decoder blocks loaded: all (None), or the first few

    @property
    def blocks_loaded(self) -> int:
        return self.info.layer_count if self.block_count is None else self.block_count


def check_device(device: str, asked: str) -> None:
    """Stop with a clear message when torch cannot use the device `placement.resolve` chose."""
    import torch

    usable = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if device in usable and not usable[device]():
        why = ("was asked for" if asked == device else
               "was chosen by --device auto (a GPU driver is visible)")
        raise LazarusError(f"--device {device} {why} but this torch cannot use it "
                           "(use --device cpu, or install a torch build for this GPU)")


def load_model(
    info: ModelInfo,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    *,
    up_to_layer: int | None = None,
    device_map: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> LoadedModel:
    """`from_pretrained` for model and tokenizer; the local cache first, then the Hub.

    `up_to_layer=L` loads only what layers 0..L need: the embeddings and decoder blocks 0..L of
    the base model (no later blocks, no LM head), and reads only those tensors from the
    safetensors files. Where that is not possible the whole model is loaded, with a note.
    `device_map="auto"` lets accelerate spread the model over the GPUs and CPU memory.
    """
    # Let the disk read the blocks' weights while Python imports torch and transformers.
    threading.Thread(target=prefetch_blocks, args=(info, up_to_layer), daemon=True).start()
    with collector.paused():
        first = "transformers" not in sys.modules
        with span("imports"):
            import torch  # noqa: F401 -- here, for the span and the paused collector
            from transformers import AutoModel, AutoModelForCausalLM  # noqa: F401

            import_family(info, trust_remote_code)
        if first:
            collector.freeze_imports()
        return _load(info, device, dtype, trust_remote_code, up_to_layer, device_map, notify)


def _load(info: ModelInfo, device: str, dtype: str, trust_remote_code: bool,
          up_to_layer: int | None, device_map: str | None,
          notify: Callable[[str], None] | None) -> LoadedModel:
    """The rest of `load_model`, after the imports: config, tokenizer, weights."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.utils import logging

    # transformers' own bars and notices would bury lazarus's; errors still surface as such.
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    if device_map is not None and importlib.util.find_spec("accelerate") is None:
        raise LazarusError("--device-map auto needs the accelerate package "
                           "(pip install 'lazarus[big]' or pip install accelerate)")
    target = resolve(info.config, device, dtype, device_map)
    check_device(target.device, device)
    device = target.device
    torch_dtype = getattr(torch, target.dtype)
    placement = {"device_map": device_map} if device_map is not None else {}

    def from_pretrained(loader: Any, **kwargs: Any) -> Any:
        return _from_pretrained(info, loader, trust_remote_code, **kwargs)

    deepest = info.layer_count - 1 if up_to_layer is None else up_to_layer
    check_safetensors(local_files(info, ".safetensors"))
    # torch's weights-only unpickler warns about what it then refuses, in several lines.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._weights_only")
    tokenizer = load_tokenizer(info, trust_remote_code)
    with _loading(info, trust_remote_code), span("weights"):
        model = None
        block_count = None
        if up_to_layer is not None:
            obstacle = partial_load_obstacle(info, trust_remote_code)
            if obstacle is None:
                model, obstacle = _load_blocks(info, up_to_layer, from_pretrained,
                                               AutoModel, dtype=torch_dtype, **placement)
                block_count = None if model is None else up_to_layer + 1
            if obstacle is not None and notify is not None:
                notify(f"loading the whole model ({obstacle})")
        if model is None:
            model, loading = from_pretrained(AutoModelForCausalLM, dtype=torch_dtype,
                                             output_loading_info=True,
                                             ignore_mismatched_sizes=True, **placement)
            refuse_chance(info.source, loading, deepest)
    if device_map is None:
        model.to(device)
    model.eval()
    weight = model.get_input_embeddings().weight
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        info=info,
        device=weight.device.type,
        dtype=str(weight.dtype).removeprefix("torch."),
        block_count=block_count,
    )


def import_family(info: ModelInfo, trust_remote_code: bool = False) -> None:
    """Import the model family's configuration and modeling modules, and no other family's,
    named from config.json's `model_type` by transformers' own auto mappings. `from_pretrained`
    would import the same modules a moment later; importing them here puts all of start-up's
    imports in one place (the "imports" span of `timeline`). Where the family is not one
    transformers names (the model's own code, an unknown `model_type`), nothing is imported:
    `from_pretrained` then finds its classes as it always does."""
    if trust_remote_code and "auto_map" in info.config:
        return
    from transformers.models.auto.configuration_auto import (
        CONFIG_MAPPING_NAMES,
        model_type_to_module_name,
    )

    if info.model_type not in CONFIG_MAPPING_NAMES:
        return
    module = model_type_to_module_name(info.model_type)
    for kind in ("configuration", "modeling"):
        with contextlib.suppress(ImportError):  # from_pretrained says what is missing
            importlib.import_module(f"transformers.models.{module}.{kind}_{module}")


def _from_pretrained(info: ModelInfo, loader: Any, trust_remote_code: bool, **kwargs: Any) -> Any:
    """`loader.from_pretrained`, from the local cache first, then the Hub."""
    common = {"trust_remote_code": trust_remote_code, **kwargs}
    try:
        return loader.from_pretrained(info.source, local_files_only=True, **common)
    except OSError:
        if Path(info.source).is_dir():
            raise
        return loader.from_pretrained(info.source, **common)


def token_texts(tokenizer: Any, prompts: list[str]) -> tuple[list[list[int]], list[list[str]]]:
    """Each prompt's token ids, as the capture engine tokenizes it, and each token as text."""
    ids = [list(tokenizer(prompt)["input_ids"]) for prompt in prompts]
    return ids, [[tokenizer.decode([token]) for token in row] for row in ids]


def token_counts(info: ModelInfo, prompts: list[str], trust_remote_code: bool = False,
                 ) -> dict[str, int]:
    """How many tokens each prompt has, as the capture engine tokenizes it."""
    tokenizer = load_tokenizer(info, trust_remote_code)
    return {prompt: len(tokenizer(prompt)["input_ids"]) for prompt in prompts}


def load_tokenizer(info: ModelInfo, trust_remote_code: bool = False) -> Any:
    """The tokenizer alone, as `load_model` loads it. The config is read first, on its own, so
    that a failure names the files at fault: config.json's, or the tokenizer's."""
    from transformers import AutoConfig, AutoTokenizer

    with _loading(info, trust_remote_code), span("config"):
        config = _from_pretrained(info, AutoConfig, trust_remote_code)
    with _loading(info, trust_remote_code, TOKENIZER_FILES), span("tokenizer"):
        return _from_pretrained(info, AutoTokenizer, trust_remote_code, config=config)


def partial_load_obstacle(info: ModelInfo, trust_remote_code: bool = False) -> str | None:
    """Why only the whole model can be loaded, or None when its first blocks can be loaded alone."""
    if text_config(info.config) is not info.config:
        return "partial loading covers text-only checkpoints, this one has sub-models"
    if trust_remote_code and "auto_map" in info.config:
        return "the model's own code decides what its layers are"
    if layer_count(info.config) is None:
        return "its config names its layer count in a way lazarus does not know"
    weights = weight_files(info)
    if weights and not any(name.endswith(".safetensors") for name in weights):
        return ("its weights are pickle (.bin) files, which are read whole; safetensors files "
                "can be read in part")
    return None


def _load_blocks(
    info: ModelInfo, up_to_layer: int, from_pretrained: Callable[..., Any], auto_model: Any,
    **kwargs: Any,
) -> tuple[Any, str | None]:
    """The base model with decoder blocks 0..up_to_layer only, or (None, why not).

    The config is the whole model's: values that depend on the layer count (MiniCPM's residual
    scaled by depth, Gemma 3n's and Gemma 4's KV cache shared with earlier layers, their
    per-layer inputs) are those of the whole model, so blocks 0..up_to_layer compute the same.
    """
    from transformers import AutoConfig
    from transformers.models.auto.auto_factory import _get_model_class

    if not 0 <= up_to_layer < info.layer_count:
        raise ValueError(f"layer {up_to_layer} is outside 0..{info.layer_count - 1}")
    config = from_pretrained(AutoConfig)
    if type(config) not in auto_model._model_mapping:
        return None, "no base-model class is registered for its config"
    model_class = _get_model_class(config, auto_model._model_mapping)
    cut = first_blocks_only(model_class, info.layer_count, up_to_layer + 1)
    try:
        model, loading = from_pretrained(cut, config=config, output_loading_info=True,
                                         ignore_mismatched_sizes=True, **kwargs)
    except LazarusError:  # e.g. BartModel for a BartForCausalLM checkpoint: encoder and decoder
        return None, (f"its base model, {model_class.__name__}, has no single list of "
                      f"{info.layer_count} blocks")
    except ValueError as err:  # e.g. the checkpoint does not fit this base-model class
        return None, f"its first blocks cannot be loaded alone: {first_line(err)}"
    refuse_chance(info.source, loading, up_to_layer, missing_outside_blocks=False)
    missing = loading.get("missing_keys") or ()
    if missing:  # e.g. embeddings stored only under the LM head's name
        first = sorted(missing)[0]
        return None, f"the base model lacks {len(missing)} weight(s), such as {first}"
    return model, None


def _loading(info: ModelInfo, trust_remote_code: bool, files: str = MODEL_FILES) -> Any:
    """`errors.upstream` for `from_pretrained`: whatever fails inside it is one line, whose
    advice names the `files` being read."""
    return upstream(info.model_type, f"cannot load {info.model_id}",
                    advice=f"check its {files}; if they are intact, ",
                    explain=lambda err: _load_failure(info, err, trust_remote_code))


def _load_failure(info: ModelInfo, err: BaseException, trust_remote_code: bool) -> str | None:
    """The one line for the failures of `from_pretrained` that say what to fix (a pickle, an
    unknown name in config.json, a model that needs its own code); None for the others."""
    import pickle

    if isinstance(err, pickle.UnpicklingError):
        files = ", ".join(map(str, local_files(info, ".bin"))) or "its .bin file"
        return (f"cannot load {info.model_id}: {files} is a pickle holding more than plain "
                "tensors, which lazarus never unpickles (convert the checkpoint to safetensors "
                "where you trust it)")
    cause = innermost(err)
    first = first_line(cause)
    text = str(err)
    if ("trust_remote_code" in text or "does not recognize" in text) and not trust_remote_code:
        return (f"cannot load {info.model_id}: {first}; if it needs its own code, add "
                "--trust-remote-code")
    if isinstance(cause, KeyError):
        return (f"cannot load {info.model_id}: its config names something transformers "
                f"{transformers_version()} does not know: {first} (check its config.json, or "
                f"{other_transformers()})")
    return None
