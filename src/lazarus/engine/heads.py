"""The `attn_head` site: each attention head's output, where the heads are still apart.

That is the input of the attention's output projection (W_O: `o_proj`, GPT-2's `c_proj`,
GPT-NeoX's and Falcon's `dense`, OPT's `out_proj`, ...): [batch, tokens, heads * head_dim], the
heads side by side, head h in columns h*head_dim to (h+1)*head_dim. A unit is a head (`Site.group`
= head_dim): ablating or patching head h changes its head_dim columns. Reading gives one value
per head, head h's write norm: the L2 length of what it adds to the residual stream through
W_O, |z_h @ W_O[:, h].T| (the projection's bias, shared by all heads, left out). It is computed
as sqrt(z_h' G_h z_h) with G_h = W_O[:, h].T @ W_O[:, h] ([head_dim, head_dim], made once per
site), so no [tokens, heads, hidden] tensor is ever built.

Found, per family, in the attention module (`sites`) as o_proj (Llama, Mistral, Qwen, Gemma,
gpt-oss, Mixtral, Qwen3-MoE, Phi-3, MLA's DeepSeek-V2/V3 with its value heads, ...), c_proj
(GPT-2's Conv1D), dense (GPT-NeoX, Falcon, Bloom, Phi), out_proj (OPT, BART-likes), Wo
(ModernBERT), output.dense (BERT-likes), attention.out_proj (GPT-Neo); the head size is the
layer's own where its attention says it (Gemma 4's global layers), and the projection must read
exactly the config's heads x head size. Refused in one line naming the family (found by
building every causal-LM family of transformers 5.25 tinily; tests/test_heads.py checks a sample
of each kind both ways): blocks without attention (Mamba, RWKV's
recurrence, xLSTM, the SSM or linear-attention layers of hybrids: Jamba, Bamba, Zamba (whose
hybrid layers share one attention), LFM2, Qwen3-Next / Qwen3.5's linear layers); a mixture of
attention heads (JetMoE); a grouped low-rank output projection (DeepSeek-V4); two attentions in
one block (LongCat-Flash); a gated output projection (Inkling 2, Moshi's wrapper); a projection
as wide as no heads x head size of the config says (Inkling).
"""

from __future__ import annotations

from typing import Any

from lazarus.engine.configs import HIDDEN_SIZE_KEYS, first_config_int, first_int, text_config
from lazarus.errors import LazarusError
from lazarus.text import plural

# Names of the head count in config.json.
HEAD_COUNT_KEYS = ("num_attention_heads", "n_head", "num_heads", "n_heads",
                   "decoder_attention_heads", "attention_heads")
# Where the attention module is in a block, when not where attn_out reads it (`sites`).
ATTENTION_PATHS = ("norm_attn_norm.attn", "multi_head_attention")
# The output projection, inside the attention module, per family, most common first: Llama
# and most, GPT-2, GPT-NeoX / Falcon / Phi, OPT / BART, ModernBERT, BERT's, GPT-Neo's.
_OUT_PROJECTIONS = ("o_proj", "c_proj", "dense", "out_proj", "wo", "Wo", "output.dense",
                    "attention.out_proj")


def head_count(config: dict[str, Any]) -> int | None:
    """The config's number of attention heads (query heads), or None when it names none."""
    return first_config_int(text_config(config), *HEAD_COUNT_KEYS)


def head_shape(config: dict[str, Any]) -> tuple[int, int] | None:
    """(heads, head_dim) per config.json: head_dim (the value head's size where it is set
    apart, MLA) or hidden size / heads; None when the config names no head count."""
    text = text_config(config)
    heads = head_count(config)
    if not heads:
        return None
    size = first_int(text, "v_head_dim", "head_dim")
    if not size:
        hidden = first_int(text, *HIDDEN_SIZE_KEYS)
        size = hidden // heads if hidden and hidden % heads == 0 else None
    return (heads, size) if size else None


def head_site_parts(attention: Any, config: dict[str, Any], family: str,
                    layer: int) -> tuple[Any, int, int]:
    """(the output projection, heads, head_dim) of this attention module; a one-line error
    when it has no projection fed by its heads side by side."""
    projection = next((part for name in _OUT_PROJECTIONS
                       if _is_projection(part := _get(attention, name))), None)
    kind = type(attention).__name__
    if projection is None:
        raise LazarusError(f"layer {layer} of this {family} model has no attention output "
                           f"projection that lazarus knows ({kind}), so its heads cannot be "
                           "told apart (the attn_head site is not available here; use attn_out)")
    shape = head_shape(config)
    own = getattr(attention, "head_dim", None)  # this layer's, where layers differ (Gemma 4)
    if shape is not None and isinstance(own, int) and own > 0:
        shape = shape[0], own
    width = _in_features(projection)
    if shape is None or width % shape[1] or width // shape[1] != shape[0]:
        said = "names no head count" if shape is None else (
            f"says {plural(shape[0], 'head')} of {shape[1]}")
        raise LazarusError(f"the attention output projection of layer {layer} of this {family} "
                           f"model ({kind}) reads {width} columns but its config {said}: its "
                           "heads are not side by side (the attn_head site is not available "
                           "for this family; use attn_out)")
    return projection, shape[0], shape[1]


def _get(module: Any, path: str) -> Any:
    for name in path.split("."):
        module = getattr(module, name, None)
    return module


def _is_projection(module: Any) -> bool:
    """A Linear (or a subclass: Falcon's) or GPT-2's Conv1D (its weight transposed)."""
    import torch

    return (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D") and (
        getattr(module, "weight", None) is not None)


def _in_features(projection: Any) -> int:
    weight = projection.weight
    return int(weight.shape[0] if type(projection).__name__ == "Conv1D" else weight.shape[1])


def write_norms(projection: Any, heads: int, head_dim: int) -> Any:
    """`summarise` for the site: raw [..., heads * head_dim] -> [..., heads], each head's
    write norm |z_h @ W_O[:, h].T| (float32). The per-head Gram matrices are made at the first
    call (the weights are loaded by then) and kept."""
    grams: list[Any] = []

    def summarise(values: Any) -> Any:
        import torch

        if not grams:
            weight = projection.weight
            if weight.device.type == "meta":
                raise LazarusError("the attention output projection's weights are offloaded "
                                   "(--device-map put them off the device), so head write "
                                   "norms cannot be computed (use a device with room for them)")
            rows = weight.detach().float()  # [in, out] once transposed
            rows = rows if type(projection).__name__ == "Conv1D" else rows.T
            per_head = rows.reshape(heads, head_dim, rows.shape[-1])  # [heads, head_dim, out]
            grams.append(per_head @ per_head.transpose(1, 2))  # [heads, head_dim, head_dim]
        gram = grams[0].to(values.device)
        z = values.float().reshape(*values.shape[:-1], heads, head_dim)
        squared = torch.einsum("...hd,hde,...he->...h", z, gram, z)
        return squared.clamp(min=0).sqrt()

    return summarise
