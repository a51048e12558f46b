"""Which model a name means, and what its files say, without importing torch.

A Hub ID, a local folder and the built-in demo resolve through one path (`resolve_source`).
`read_model_info` only reads `config.json`, so that layer and neuron ranges are checked before
anything heavy happens; `local_files` finds the model's files on disk (a local folder, or the Hub
cache's snapshot) for the checks and the prefetch that run before the weights are read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lazarus.engine.configs import HIDDEN_SIZE_KEYS, first_int, layer_count, text_config
from lazarus.errors import LazarusError

DEMO_MODEL = "lazarus:demo"
MAX_NESTING = 32  # real configs nest a few levels (text_config, rope_parameters per layer kind)


@dataclass(frozen=True)
class ModelInfo:
    """What the config says, read without importing torch."""

    model_id: str  # as the user gave it
    source: str  # what from_pretrained is given: a folder or a Hub ID
    model_type: str
    layer_count: int
    hidden_size: int
    config: dict[str, Any]


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
    return (text.startswith((".", "/", "~")) or text.count("/") > 1
            or os.sep != "/" and os.sep in text)


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
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # its retry warnings would bury the one-line error

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
        too_deep = _too_deep(config)  # transformers' config code recurses through it
    except (OSError, ValueError) as err:
        raise LazarusError(f"cannot read {path}: {err} (is it a valid config.json?)") from None
    except RecursionError:  # json's reader recurses once per level of nesting
        too_deep = True
    if too_deep:
        raise LazarusError(f"cannot read {path}: it nests objects or lists more than "
                           f"{MAX_NESTING} deep, which no model's config does (is it a valid "
                           "config.json?)")
    if not isinstance(config, dict):
        raise LazarusError(f"{path} is not a JSON object (is it a valid config.json?)")
    if config.get("is_encoder_decoder") is True:
        raise LazarusError(f"{model_id} is an encoder-decoder model "
                           f"({config.get('model_type', 'unknown')}); lazarus reads decoder-only "
                           "language models, whose blocks see the prompt alone")
    text = text_config(config)
    layers = layer_count(text)
    hidden_size = first_int(text, *HIDDEN_SIZE_KEYS)
    if layers is None or hidden_size is None:
        raise LazarusError(f"{path} names no layer count or hidden size (is {model_id} a "
                           "transformer language model?)")
    if isinstance(config.get("backbone_hidden_size"), int):  # Gemma 4's assistants
        raise LazarusError(f"{model_id} is an assistant (draft) model: its forward takes the "
                           "embeddings and key-value states of the model it drafts for, not a "
                           "prompt; lazarus reads language models that run on a prompt alone")
    passes = text.get("loop_num_passes")
    if isinstance(passes, int) and passes > 1:  # Inkling 2 Loop: a block's last pass is not
        # what a hook stopping the forward at its first pass reads
        raise LazarusError(f"{model_id} runs some of its decoder blocks {passes} times per "
                           "forward (a loop over layers), so such a block has no single output; "
                           "this architecture is not supported")
    return ModelInfo(
        model_id=model_id,
        source=source,
        model_type=str(config.get("model_type", "unknown")),
        layer_count=layers,
        hidden_size=hidden_size,
        config=config,
    )


def _too_deep(value: Any) -> bool:
    """Whether JSON objects and lists nest more than MAX_NESTING deep in `value` (walked
    without recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def weight_files(info: ModelInfo) -> list[str]:
    """Names of the weight files found on disk (a local folder, or the Hub cache's snapshot)."""
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
    return [path.name for path in local_files(info, *suffixes)]


def model_folder(info: ModelInfo) -> Path | None:
    """The folder holding the model's files: a local folder, or the Hub cache's snapshot (None
    when the Hub model is not in the cache)."""
    if Path(info.source).is_dir():
        return Path(info.source)
    try:
        return config_path(info.source).parent
    except LazarusError:
        return None


def local_files(info: ModelInfo, *suffixes: str) -> list[Path]:
    """The model's files with these suffixes that are on disk, sorted."""
    folder = model_folder(info)
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(suffixes) and p.is_file())
