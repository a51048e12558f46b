"""Finding and loading a model: a Hub ID, a local folder, or the built-in demo, through one path.

`read_model_info` only reads `config.json` (no torch), so that layer and neuron ranges are checked
before anything heavy happens. `load_model` then runs `from_pretrained` like any Hugging Face user
would, preferring the local cache so a cached model loads offline without a network round trip.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lazarus.errors import LazarusError

DEMO_MODEL = "lazarus:demo"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelInfo:
    """What the config says, read without importing torch."""

    model_id: str  # as the user gave it
    source: str  # what from_pretrained is given: a folder or a Hub ID
    model_type: str
    layer_count: int
    hidden_size: int
    config: dict[str, Any]


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode
    tokenizer: Any
    info: ModelInfo
    device: str  # "cpu", "cuda", ... (device of the input embeddings)
    dtype: str  # "float32", ...


def demo_model_folder() -> Path:
    return Path(str(resources.files("lazarus") / "demo_model"))


def resolve_source(model_id: str) -> str:
    """A local folder path, or the Hub ID itself; the demo name maps to the packaged folder."""
    if model_id == DEMO_MODEL:
        folder = demo_model_folder()
        if not (folder / "config.json").is_file():
            raise LazarusError(f"the demo model is missing from this install ({folder}); "
                               "reinstall lazarus or rebuild it with scripts/train_demo_model.py")
        return str(folder)
    path = Path(model_id).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise LazarusError(f"model {model_id} is a file, not a folder (give the folder that "
                           "holds config.json, or a Hub ID like org/name)")
    if _looks_like_path(model_id) or not _valid_hub_id(model_id):
        raise LazarusError(f"model not found: no folder {model_id} (check the path, or give a "
                           f"Hub ID like org/name, or '{DEMO_MODEL}')")
    return model_id


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text


def _valid_hub_id(text: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")
    parts = text.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and set(text) <= allowed and ".." not in text


def config_path(source: str) -> Path:
    """config.json of a folder, or of a Hub model (from the local cache when it is there)."""
    local = Path(source) / "config.json"
    if Path(source).is_dir():
        if not local.is_file():
            raise LazarusError(f"{source} has no config.json (give a folder saved with "
                               "save_pretrained, or a Hub ID)")
        return local
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str):
        return Path(cached)
    try:
        return Path(hf_hub_download(source, "config.json"))
    except Exception as err:  # hub errors come in many types; all mean "cannot get it"
        reason = type(err).__name__
        raise LazarusError(f"model not found: cannot get {source} from the Hugging Face Hub "
                           f"({reason}; check the ID, your network, or HF_TOKEN for gated "
                           "models)") from None


def read_model_info(model_id: str) -> ModelInfo:
    source = resolve_source(model_id)
    path = config_path(source)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LazarusError(f"cannot read {path}: {err} (is it a valid config.json?)") from None
    text = config.get("text_config") or config
    layer_count = _first_int(text, "num_hidden_layers", "n_layer", "num_layers")
    hidden_size = _first_int(text, "hidden_size", "n_embd", "d_model")
    if layer_count is None or hidden_size is None:
        raise LazarusError(f"{path} names no layer count or hidden size (is {model_id} a "
                           "transformer language model?)")
    return ModelInfo(
        model_id=model_id,
        source=source,
        model_type=str(config.get("model_type", "unknown")),
        layer_count=layer_count,
        hidden_size=hidden_size,
        config=config,
    )


def _first_int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise LazarusError("--device cuda was asked for but no CUDA GPU is visible "
                           "(use --device cpu or auto)")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise LazarusError("--device mps was asked for but MPS is not available "
                           "(use --device cpu or auto)")
    return requested


def load_model(
    info: ModelInfo,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """`from_pretrained` for model and tokenizer; the local cache first, then the Hub."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    # transformers' own bars and notices would bury lazarus's; errors still surface as such.
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    device = pick_device(device)
    if dtype == "auto":
        torch_dtype: Any = torch.float32 if device == "cpu" else "auto"
    else:
        torch_dtype = getattr(torch, dtype)

    def from_pretrained(loader: Any, **kwargs: Any) -> Any:
        common = {"trust_remote_code": trust_remote_code, **kwargs}
        try:
            return loader.from_pretrained(info.source, local_files_only=True, **common)
        except OSError:
            if Path(info.source).is_dir():
                raise
            return loader.from_pretrained(info.source, **common)

    try:
        tokenizer = from_pretrained(AutoTokenizer)
        model = from_pretrained(AutoModelForCausalLM, dtype=torch_dtype)
    except LazarusError:
        raise
    except (OSError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "" if trust_remote_code else "; if it needs custom code, add --trust-remote-code"
        raise LazarusError(f"cannot load {info.model_id}: {first_line}{hint}") from None
    model.to(device)
    model.eval()
    weight = model.get_input_embeddings().weight
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        info=info,
        device=weight.device.type,
        dtype=str(weight.dtype).removeprefix("torch."),
    )
