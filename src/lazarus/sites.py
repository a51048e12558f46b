"""Where each activation site lives inside a Hugging Face model, and how to read it off a hook.

A site is a named place in a decoder block whose value is a vector per token:
- `residual`: the block's output, i.e. the residual stream after block L (HF hidden_states[L+1]).
- `mlp`: the input to the MLP's output projection (the MLP's hidden neurons), for dense MLPs.
Adding a site means adding an entry here; the capture engine and the commands do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lazarus.errors import LazarusError

# Attribute paths from the model to its list of decoder blocks, most common first.
_BLOCK_PATHS = (
    "model.layers",  # Llama, Qwen2, Gemma 2/3, Mistral, gpt-oss, Phi-3, ...
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "gpt_neox.layers",  # Pythia, GPT-NeoX
    "model.decoder.layers",  # OPT
    "model.language_model.layers",  # multimodal wrappers (Gemma 3, Llava, ...)
    "transformer.blocks",  # MPT
    "blocks",  # MptModel
    "layers",  # base models without an LM head (LlamaModel, ...): lazarus's partial loads
    "h",  # GPT2Model and kin, likewise
)
# Names of the MLP's output projection inside a block, per family.
_MLP_OUT_PATHS = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "fc2", "mlp.fc2")

SITES = ("residual", "mlp")


@dataclass(frozen=True)
class Site:
    """How to hook one site: the module to hook, and whether to read its input or output."""

    module: Any
    reads_input: bool

    def extract(self, args: tuple[Any, ...], output: Any) -> Any:
        """The [batch, tokens, width] tensor at this site, from a hook's arguments."""
        value = args[0] if self.reads_input else output
        return value[0] if isinstance(value, (tuple, list)) else value


def _get_path(root: Any, path: str) -> Any | None:
    node = root
    for name in path.split("."):
        node = getattr(node, name, None)
        if node is None:
            return None
    return node


def decoder_blocks(model: Any, layer_count: int) -> list[Any]:
    """The model's decoder blocks, in order; checked against the config's layer count."""
    return list(_block_list(model, layer_count)[1])


def _block_list(model: Any, layer_count: int) -> tuple[str, Any]:
    """(attribute path, ModuleList) of the decoder blocks."""
    for path in _BLOCK_PATHS:
        blocks = _get_path(model, path)
        if blocks is not None and len(blocks) == layer_count:
            return path, blocks
    import torch

    lists = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) == layer_count]
    if len(lists) == 1:
        return lists[0]
    raise LazarusError(f"cannot find the {layer_count} decoder blocks of this "
                       f"{type(model).__name__} (this architecture is not supported yet)")


def first_blocks_only(model_class: type, layer_count: int, kept: int) -> type:
    """A subclass of a transformers model class whose instances keep only their first `kept`
    decoder blocks: the later ones are dropped as soon as the model is built (by
    `from_pretrained`, on the meta device), so their weights are never read. The config stays
    whole, so whatever depends on the layer count is computed as in the whole model."""

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        model_class.__init__(self, config, *args, **kwargs)
        import torch

        path, blocks = _block_list(self, layer_count)
        owner, _, name = path.rpartition(".")
        parent = _get_path(self, owner) if owner else self
        setattr(parent, name, torch.nn.ModuleList(list(blocks)[:kept]))

    return type(model_class.__name__, (model_class,), {
        "__init__": __init__, "__module__": model_class.__module__,
        "__qualname__": model_class.__qualname__})


def locate(model: Any, layer_count: int, layer: int, site: str) -> Site:
    block = decoder_blocks(model, layer_count)[layer]
    if site == "residual":
        return Site(module=block, reads_input=False)
    if site == "mlp":
        for path in _MLP_OUT_PATHS:
            projection = _get_path(block, path)
            if projection is not None:
                return Site(module=projection, reads_input=True)
        raise LazarusError(f"{type(block).__name__} has no dense MLP output projection "
                           "(the mlp site is not available for this model; use residual)")
    raise LazarusError(f"unknown site {site!r} (choose one of: {', '.join(SITES)})")
