"""The vocabulary of activation sites, and where each lives inside a Hugging Face decoder block.

Site names follow TransformerLens. Each is a vector per token, read by a hook on one module:
- `resid_pre`: the residual stream entering block L (the block's input; HF hidden_states[L]).
- `resid_post`: the residual stream after block L (the block's output; HF hidden_states[L+1]).
- `mlp_post`: the MLP's neurons, i.e. the input of its down projection: act(gate)·up for gated
  MLPs, act(fc) for GPT-2-style ones. At MoE layers, a neuron is (expert, unit) (`moe.py`).
- `attn_out`, `mlp_out`: what the attention and MLP sub-blocks add to the residual stream, so
  that resid_post = resid_pre + attn_out + mlp_out (for sequential and parallel blocks alike).
  For blocks that normalise a sub-block's output before adding it (Gemma 2/3, OLMo 2: a
  `post_feedforward_layernorm`), that norm's output is what is added, so it is what is read.
- `router`: at MoE layers, the weight each expert got for the token (0 when not chosen).
- `attn_head`: each attention head's output, the input of the attention's output projection
  (`heads.py`); a unit is a head, read as head h's write norm |z_h @ W_O[:, h].T|, ablated and
  patched as its head_dim raw columns. Refused where the heads are not side by side there.
Adding a site means adding an entry here; the engine and the commands do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lazarus.engine import heads, moe
from lazarus.engine.configs import text_config
from lazarus.engine.widths import MLP_WIDTH_KEYS, mlp_post_bound
from lazarus.errors import LazarusError
from lazarus.text import plural

SITES = ("resid_post", "resid_pre", "mlp_post", "attn_out", "mlp_out", "router", "attn_head")
RESIDUAL_WIDTH = ("resid_post", "resid_pre", "attn_out", "mlp_out")  # as wide as the hidden size
SITE_HELP = {
    "resid_post": "residual stream after the block (default)",
    "resid_pre": "residual stream entering the block",
    "mlp_post": "MLP neurons: input of the MLP's down projection (MoE: expert x unit)",
    "attn_out": "what the attention sub-block adds to the residual stream",
    "mlp_out": "what the MLP sub-block adds to the residual stream",
    "router": "MoE layers: each expert's routing weight for the token (0 if not chosen)",
    "attn_head": "attention heads (units = heads): input of the attention output projection; "
                 "read as head h's write norm |z_h W_O[:,h]^T|, ablated as its raw columns",
}

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
# Inside a block, per family, most common first; then GPT-J's and CodeGen's, LFM2's,
# RecurrentGemma's and ModernBERT-decoder's.
_MLP_DOWN = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "fc2",
             "feed_forward.down_proj", "mlp.w2", "ffn.down_proj", "mlp.fc_out",
             "feed_forward.w2", "mlp_block.down_proj", "mlp.Wo")
_ATTENTION = ("self_attn", "attn", "attention", "self_attention")
_MLP = ("mlp", "feed_forward", "block_sparse_moe", "ffn")
_POST_NORMS = {"attn_out": "post_attention_layernorm", "mlp_out": "post_feedforward_layernorm"}

Extract = Callable[[tuple[Any, ...], dict[str, Any], Any], Any]


@dataclass(frozen=True)
class Site:
    """How to hook one site: the module, whether its input (pre-hook) or output is read, and
    how to turn the hook's arguments into a [batch, tokens, width] tensor."""

    module: Any
    reads_input: bool
    extract: Extract
    # Values come per flattened token ([batch * tokens, width]), and `extract` takes `tokens=`,
    # an index of the flattened tokens to compute (MoE units cost E*I floats per token).
    flat: bool = False
    # Flat sites are computed, not passed along, so an edit cannot hand the module new values:
    # `edit(args, kwargs, output, change)` returns the module's output as if its values had been
    # `change([batch * tokens, width])` (a forward hook's return value); with `watched`, the
    # output depends on the changed values even where they did not change (for gradients).
    edit: Callable[[tuple, dict, Any, Callable[[Any], Any]], Any] | None = None
    # A unit spans `group` adjacent columns of what `extract` returns (an attention head spans
    # head_dim): edits name units and change all their columns; reading turns the raw
    # [..., units * group] values into one value per unit with `summarise` ([..., units]).
    group: int = 1
    summarise: Callable[[Any], Any] | None = None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (tuple, list)) else value


def _input(args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
    return _first(args[0] if args else kwargs["hidden_states"])


def _output(args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
    return _first(output)


def get_path(root: Any, path: str) -> Any | None:
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
        blocks = get_path(model, path)
        if blocks is not None and len(blocks) == layer_count:
            return path, blocks
    import torch

    lists = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) == layer_count]
    if len(lists) == 1:
        return lists[0]
    raise LazarusError(f"cannot find the {plural(layer_count, 'decoder block')} of this "
                       f"{type(model).__name__} (this architecture is not supported yet)")


def unit_noun(site: str) -> str:
    """What a unit of the site is called: a head at attn_head, a neuron elsewhere."""
    return "head" if site == "attn_head" else "neuron"


def unit_label(site: str, unit: int, units_per_expert: int | None = None) -> str:
    """A unit's name wherever text, JSON or CSV names one: `H2` (a head), `E3 U17` (unit 17 of
    expert 3: column 3 * units_per_expert + 17 of an MoE layer's mlp_post), `N448` (a neuron,
    or a dimension of a residual-width site)."""
    if site == "attn_head":
        return f"H{unit}"
    if units_per_expert:
        expert, rest = divmod(unit, units_per_expert)
        return f"E{expert} U{rest}"
    return f"N{unit}"


def neuron_out_of_range(neuron: int, width: int, site: str, layer: int) -> LazarusError:
    noun = unit_noun(site)
    return LazarusError(f"{noun} {neuron} is out of range: the {site} site has "
                        f"{plural(width, noun)} at layer {layer} (use ids 0 to {width - 1})")


def check_neurons_early(config: dict[str, Any], hidden_size: int, site: str, layer: int,
                        neurons: Iterable[int]) -> None:
    """Refuse, from config.json and before any weight loads, a neuron id that the site does not
    have at `layer`: the residual-width sites are as wide as the hidden size; mlp_post at most
    `mlp_post_bound` at that layer; attn_head has the config's head count. The capture hook
    still checks every id against the width it sees."""
    count = hidden_size if site in RESIDUAL_WIDTH else (
        heads.head_count(config) if site == "attn_head" else None)
    if count is not None:
        for neuron in neurons:
            if neuron >= count:
                raise neuron_out_of_range(neuron, count, site, layer)
        return
    bound = mlp_post_bound(config, layer) if site == "mlp_post" else None
    if bound is None:
        return
    width, why = bound
    text = text_config(config)
    per_layer = any(isinstance(text.get(key), list) for key in MLP_WIDTH_KEYS)
    where = f"at layer {layer}" if per_layer else "at any layer"
    for neuron in neurons:
        if neuron >= width:
            raise LazarusError(f"neuron {neuron} is out of range: the {site} site has at most "
                               f"{plural(width, 'neuron')} {where} of this model "
                               f"(config.json: {why}; use ids 0 to {width - 1})")


def check_site(site: str) -> str:
    if site not in SITES:
        raise LazarusError(f"unknown site {site!r} (choose one of: {', '.join(SITES)})")
    return site


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
        parent = get_path(self, owner) if owner else self
        setattr(parent, name, torch.nn.ModuleList(list(blocks)[:kept]))
        _forget_dropped_ties(self)

    return type(model_class.__name__, (model_class,), {
        "__init__": __init__, "__module__": model_class.__module__,
        "__qualname__": model_class.__qualname__})


def _forget_dropped_ties(model: Any) -> None:
    """Drop the weight ties (computed by `post_init`, before the blocks were dropped) that name
    a dropped block's weight: Zamba ties every hybrid block's shared attention to the first's.
    A kept weight tied to a dropped one is then missing from the load, and lazarus loads the
    whole model instead."""
    ties = getattr(model, "all_tied_weights_keys", None)
    if not ties:
        return
    names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    names |= {name for name, _ in model.named_buffers(remove_duplicate=False)}
    model.all_tied_weights_keys = {target: source for target, source in ties.items()
                                   if target in names and source in names}


def locate(model: Any, layer_count: int, layer: int, site: str) -> Site:
    """Where `site` of block `layer` is read; a one-line error when this block has no such
    site (a dense block has no router, an unknown layout no attn_out)."""
    check_site(site)
    block = decoder_blocks(model, layer_count)[layer]
    name = type(block).__name__
    if site == "resid_post":
        return Site(module=block, reads_input=False, extract=_output)
    if site == "resid_pre":
        return Site(module=block, reads_input=True, extract=_input)
    if site == "attn_head":
        return _head_site(model, block, layer)
    if site in ("mlp_post", "router"):
        parts = moe.find_moe(block)
        if parts is not None:
            return _moe_site(parts, site)
        if site == "router":
            raise LazarusError(f"layer {layer} ({name}) has no MoE router (the router site "
                               "exists only at MoE layers)")
        for path in _MLP_DOWN:
            projection = get_path(block, path)
            if projection is not None:
                return Site(module=projection, reads_input=True, extract=_input)
        raise LazarusError(f"{name} has no MLP down projection that lazarus knows (the "
                           "mlp_post site is not available for this model; use resid_post)")
    post_norm = get_path(block, _POST_NORMS[site])
    if get_path(block, "post_feedforward_layernorm") is not None and post_norm is not None:
        return Site(module=post_norm, reads_input=False, extract=_output)
    for path in _ATTENTION if site == "attn_out" else _MLP:
        module = get_path(block, path)
        if module is not None:
            return Site(module=module, reads_input=False, extract=_output)
    raise LazarusError(f"{name} has no {'attention' if site == 'attn_out' else 'MLP'} module "
                       f"that lazarus knows (the {site} site is not available for this model)")


def _head_site(model: Any, block: Any, layer: int) -> Site:
    family = getattr(model.config, "model_type", type(model).__name__)
    attention = next((module for path in (*_ATTENTION, *heads.ATTENTION_PATHS)
                      if (module := get_path(block, path)) is not None), None)
    if attention is None:
        raise LazarusError(f"layer {layer} of this {family} model ({type(block).__name__}) has "
                           "no attention module that lazarus knows, so no heads (the attn_head "
                           "site exists only at attention layers)")
    projection, count, size = heads.head_site_parts(attention, model.config.to_dict(), family,
                                                    layer)
    return Site(module=projection, reads_input=True, extract=_input, group=size,
                summarise=heads.write_norms(projection, count, size))


def _moe_site(parts: moe.MoeParts, name: str) -> Any:
    """The `Site` for `mlp_post` (expert units) or `router` at this MoE block:
    a pre-hook on the experts, whose values come per flattened token."""
    read = moe.units_from_hook if name == "mlp_post" else moe.router_from_hook

    def extract(args: tuple[Any, ...], kwargs: dict[str, Any], output: Any,
                tokens: Any | None = None) -> Any:
        if name == "mlp_post" and parts.experts.down_proj.device.type == "meta":
            raise LazarusError("the experts' weights are offloaded (--device-map put them off "
                               "the device), so their units cannot be read before the model "
                               "loads them (use a device with room for the experts, or "
                               "--site router or resid_post)")
        return read(parts, args, kwargs, tokens)

    def edit(args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, change: Any,
             watched: bool = False) -> Any:
        return moe.edited_output(parts, name, args, kwargs, output, change, watched)

    return Site(module=parts.experts, reads_input=True, extract=extract, flat=True, edit=edit)
