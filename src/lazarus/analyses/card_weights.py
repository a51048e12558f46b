"""A unit card's weight view: the tokens a unit's write vector promotes and suppresses, read
from the weights alone (no corpus).

A neuron at `mlp_post` writes its value times one vector into the residual stream: its column
of the MLP's down projection (GPT-2's Conv1D stores it as a row; an MoE expert unit (e, u) is
row u of `down_proj[e]` [E, I, H] when transposed, else column u of [E, H, I]), through the
block's post-MLP norm scale where the block has one (Gemma 2/3, OLMo 2). A saved direction over
the residual stream is such a vector itself. Either is read through the final norm's elementwise
scale and the unembedding: values = (w * scale) @ W_U^T, one per token of the vocabulary (the
"logit lens" of a write vector). Left out, as that approximation does: the norms' centring and
division by the token's own statistics, their biases, and whatever the family does to the
logits after W_U (Gemma 2's soft-capping, which keeps the order). Gemma-style norms, which scale
by (1 + weight), are read so. A head writes a subspace (head_dim wide), not one vector, so it has
no weight view here.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from lazarus.engine import moe
from lazarus.engine.loading import LoadedModel
from lazarus.engine.sites import decoder_blocks, get_path, locate
from lazarus.results.card import TokenValue, WeightView

# Where the final norm (after the last block, before the LM head) is, per family.
FINAL_NORMS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm",
               "model.decoder.final_layer_norm", "model.language_model.norm",
               "transformer.norm_f", "model.final_layernorm", "transformer.norm", "norm")
NEURON_METHOD = "W_out row x final-norm weight x W_U"
LENS_METHOD = "logit lens (final norm x W_U)"
APPROXIMATION = ("the norms' centring and division by each token's own statistics are left out "
                 "(the usual logit lens of a write vector)")
HEAD_NOTE = ("a head writes a subspace (head_dim wide), not one vector: see its corpus and "
             "causal views")


def weight_view(loaded: LoadedModel, layer: int, site: str, column: int | None,
                direction: np.ndarray | None, top_k: int) -> tuple[WeightView | None, str | None]:
    """(the view, None), or (None, why there is none) for a head or an unknown layout: the
    unit's write vector (`column` of mlp_post at `layer`, or a residual `direction`) through
    the final norm's scale and the unembedding."""
    if site == "attn_head":
        return None, HEAD_NOTE
    notes = [APPROXIMATION]
    if direction is not None:
        vector, method = np.asarray(direction, dtype=np.float64), LENS_METHOD
    else:
        vector, why = _write_vector(loaded, layer, column)
        if vector is None:
            return None, why
        method = NEURON_METHOD
        post = get_path(decoder_blocks(loaded.model, loaded.blocks_loaded)[layer],
                        "post_feedforward_layernorm")
        if post is not None:
            vector = vector * _scale(post, vector.shape[0])
            method = "W_out row x post-MLP norm weight x final-norm weight x W_U"
    norm = next((found for path in FINAL_NORMS
                 if (found := get_path(loaded.model, path)) is not None), None)
    if norm is None:
        return None, "no final norm that lazarus knows before the LM head"
    unembed = loaded.model.get_output_embeddings()
    if unembed is None:
        return None, "the model has no LM head"
    matrix = unembed.weight.detach().double().cpu().numpy()  # [vocab, hidden]
    if matrix.ndim != 2 or matrix.shape[1] != vector.shape[0]:
        return None, f"the LM head's weight is {list(matrix.shape)}, not [vocab, hidden]"
    if _one_plus(norm):
        notes.append("the final norm scales by (1 + weight), as Gemma's do")
    if getattr(loaded.model.config, "final_logit_softcapping", None):
        notes.append("the logits' soft-capping (tanh, which keeps the order) is left out")
    values = matrix @ (vector * _scale(norm, vector.shape[0]))  # [vocab]
    tokenizer = loaded.tokenizer
    named = min(len(values), len(tokenizer))  # rows past the tokenizer's are padding
    order = np.argsort(-values[:named], kind="stable")
    k = min(top_k, named)

    def listed(ids: np.ndarray) -> tuple[TokenValue, ...]:
        return tuple(TokenValue(tokenizer.decode([int(i)]), float(values[i])) for i in ids)

    return WeightView(method=method, promoted=listed(order[:k]),
                      suppressed=listed(order[::-1][:k]), note="; ".join(notes),
                      values=values), None


def _write_vector(loaded: LoadedModel, layer: int, column: int) -> tuple[Any, str | None]:
    """float64 [hidden]: what the mlp_post neuron `column` adds per unit of its value."""
    block = decoder_blocks(loaded.model, loaded.blocks_loaded)[layer]
    parts = moe.find_moe(block)
    if parts is not None:
        expert, unit = parts.expert_unit(column)
        weight = parts.experts.down_proj[expert].detach()  # [I, H] if transposed, else [H, I]
        vector = weight[unit, :] if parts.transposed else weight[:, unit]
        return vector.double().cpu().numpy(), None
    projection = locate(loaded.model, loaded.blocks_loaded, layer, "mlp_post").module
    weight = getattr(projection, "weight", None)
    if weight is None or weight.ndim != 2:
        return None, f"the down projection ({type(projection).__name__}) has no plain weight"
    weight = weight.detach()
    conv = type(projection).__name__ == "Conv1D"  # GPT-2's: [in, out], the transpose
    vector = weight[column, :] if conv else weight[:, column]
    return vector.double().cpu().numpy(), None


def _scale(norm: Any, width: int) -> np.ndarray:
    """A norm's elementwise scale [width]: its weight, (1 + weight) for Gemma-style norms,
    ones when it has none."""
    weight = getattr(norm, "weight", None)
    if weight is None:
        return np.ones(width)
    scale = weight.detach().double().cpu().numpy().reshape(-1)
    return scale + 1.0 if _one_plus(norm) else scale


def _one_plus(norm: Any) -> bool:
    """Whether the norm multiplies by (1 + weight) (Gemma's, Qwen3-Next's), read from its
    forward's source."""
    try:
        source = inspect.getsource(type(norm).forward)
    except (OSError, TypeError):
        return False
    return "1.0 + self.weight" in source or "1 + self.weight" in source
