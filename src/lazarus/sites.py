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
        return value[0] if isinstance(value, tuple) else value


def _get_path(root: Any, path: str) -> Any | None:
    node = root
    for name in path.split("."):
        node = getattr(node, name, None)
        if node is None:
            return None
    return node


def decoder_blocks(model: Any, layer_count: int) -> list[Any]:
    """The model's decoder blocks, in order; checked against the config's layer count."""
    for path in _BLOCK_PATHS:
        blocks = _get_path(model, path)
        if blocks is not None and len(blocks) == layer_count:
            return list(blocks)
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    matching = [m for m in lists if len(m) == layer_count]
    if len(matching) == 1:
        return list(matching[0])
    raise LazarusError(f"cannot find the {layer_count} decoder blocks of this "
                       f"{type(model).__name__} (this architecture is not supported yet)")


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
