"""Finding and loading a model: a Hub ID, a local folder, or the built-in demo, through one path.

`read_model_info` only reads `config.json` (no torch), so that layer and neuron ranges are checked
before anything heavy happens. `load_model` then runs `from_pretrained` like any Hugging Face user
would, preferring the local cache so a cached model loads offline without a network round trip.
Asked for layers 0..L only, it builds the base model with the whole model's config and drops
blocks L+1.. as soon as they are built on the meta device, so that `from_pretrained` reads only
the embeddings' and blocks 0..L's tensors from the safetensors files, never the LM head, and
whatever depends on the layer count is computed as in the whole model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lazarus.checkpoint import check_safetensors, refuse_chance
from lazarus.configs import text_config
from lazarus.errors import LazarusError
from lazarus.placement import resolve
from lazarus.prefetch import prefetch_blocks
from lazarus.sites import first_blocks_only

DEMO_MODEL = "lazarus:demo"


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
    block_count: int | None = None  # decoder blocks loaded: all (None), or the first few

    @property
    def blocks_loaded(self) -> int:
        return self.info.layer_count if self.block_count is None else self.block_count


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
    except (OSError, ValueError) as err:
        raise LazarusError(f"cannot read {path}: {err} (is it a valid config.json?)") from None
    if not isinstance(config, dict):
        raise LazarusError(f"{path} is not a JSON object (is it a valid config.json?)")
    if config.get("is_encoder_decoder") is True:
        raise LazarusError(f"{model_id} is an encoder-decoder model "
                           f"({config.get('model_type', 'unknown')}); lazarus reads decoder-only "
                           "language models, whose blocks see the prompt alone")
    text = text_config(config)
    layer_count = _first_int(text, *_LAYER_COUNT_KEYS)
    hidden_size = _first_int(text, "hidden_size", "n_embd", "d_model", "emb_dim")
    if layer_count is None or hidden_size is None:
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
        layer_count=layer_count,
        hidden_size=hidden_size,
        config=config,
    )


def _first_int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


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
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
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
    try:
        tokenizer = from_pretrained(AutoTokenizer)
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
    except LazarusError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure inside from_pretrained is "cannot load"
        raise LazarusError(_load_failure(info, err, trust_remote_code)) from None
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


def _from_pretrained(info: ModelInfo, loader: Any, trust_remote_code: bool, **kwargs: Any) -> Any:
    """`loader.from_pretrained`, from the local cache first, then the Hub."""
    common = {"trust_remote_code": trust_remote_code, **kwargs}
    try:
        return loader.from_pretrained(info.source, local_files_only=True, **common)
    except OSError:
        if Path(info.source).is_dir():
            raise
        return loader.from_pretrained(info.source, **common)


def token_texts(info: ModelInfo, prompts: list[str], trust_remote_code: bool = False,
                ) -> list[list[str]]:
    """Each prompt's tokens as text, as the capture engine tokenizes it (the tokenizer alone
    is loaded, not the model)."""
    tokenizer = load_tokenizer(info, trust_remote_code)
    return [[tokenizer.decode([token]) for token in tokenizer(prompt)["input_ids"]]
            for prompt in prompts]


def token_counts(info: ModelInfo, prompts: list[str], trust_remote_code: bool = False,
                 ) -> dict[str, int]:
    """How many tokens each prompt has, as the capture engine tokenizes it."""
    tokenizer = load_tokenizer(info, trust_remote_code)
    return {prompt: len(tokenizer(prompt)["input_ids"]) for prompt in prompts}


def load_tokenizer(info: ModelInfo, trust_remote_code: bool = False) -> Any:
    """The tokenizer alone, as `load_model` loads it."""
    from transformers import AutoTokenizer

    try:
        return _from_pretrained(info, AutoTokenizer, trust_remote_code)
    except Exception as err:  # noqa: BLE001 - any failure inside from_pretrained
        raise LazarusError(_load_failure(info, err, trust_remote_code)) from None


# Names of the decoder's layer count in config.json: transformers' own, then GPT-2's, MPT's,
# and the decoder's of BART-like causal LMs (whose configs also name an encoder's).
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "decoder_layers")


def partial_load_obstacle(info: ModelInfo, trust_remote_code: bool = False) -> str | None:
    """Why only the whole model can be loaded, or None when its first blocks can be loaded alone."""
    if text_config(info.config) is not info.config:
        return "partial loading covers text-only checkpoints, this one has sub-models"
    if trust_remote_code and "auto_map" in info.config:
        return "the model's own code decides what its layers are"
    if not any(isinstance(info.config.get(key), int) for key in _LAYER_COUNT_KEYS):
        return "its config names its layer count in a way lazarus does not know"
    weights = weight_files(info)
    if weights and not any(name.endswith(".safetensors") for name in weights):
        return ("its weights are pickle (.bin) files, which are read whole; safetensors files "
                "can be read in part")
    return None


def weight_files(info: ModelInfo) -> list[str]:
    """Names of the weight files found on disk (a local folder, or the Hub cache's snapshot)."""
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
    return [path.name for path in local_files(info, *suffixes)]


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
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else "ValueError"
        return None, f"its first blocks cannot be loaded alone: {first_line}"
    refuse_chance(info.source, loading, up_to_layer, missing_outside_blocks=False)
    missing = loading.get("missing_keys") or ()
    if missing:  # e.g. embeddings stored only under the LM head's name
        first = sorted(missing)[0]
        return None, f"the base model lacks {len(missing)} weight(s), such as {first}"
    return model, None


def _load_failure(info: ModelInfo, err: BaseException, trust_remote_code: bool) -> str:
    """One line for a failed `from_pretrained`: the innermost cause's first line, and a fix."""
    import pickle

    if isinstance(err, pickle.UnpicklingError):
        files = ", ".join(map(str, local_files(info, ".bin"))) or "its .bin file"
        return (f"cannot load {info.model_id}: {files} is a pickle holding more than plain "
                "tensors, which lazarus never unpickles (convert the checkpoint to safetensors "
                "where you trust it)")
    cause = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    first = lines[0] if lines else type(cause).__name__
    if isinstance(cause, KeyError):
        first = f"its config names something this transformers does not know: {first}"
    if len(first) > 200:
        first = first[:197] + "..."
    text = str(err)
    if ("trust_remote_code" in text or "does not recognize" in text) and not trust_remote_code:
        return (f"cannot load {info.model_id}: {first}; if it needs its own code, add "
                "--trust-remote-code")
    return f"cannot load {info.model_id}: {first} (check its config.json and weight files)"


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
