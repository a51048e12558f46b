"""A tiny config of any causal-LM family the installed transformers offers.

Each family's default config is shrunk by setting every size-like key it has (widths, layer and
head counts, expert counts, low-rank sizes, vocabularies) to a small value, in its sub-configs
too; `EXTRA` holds the few families that need more than that to build, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tiny_models import VOCAB_SIZE
from transformers import CONFIG_MAPPING, PretrainedConfig

LAYERS = 3
WIDTH = 32

SIZES: dict[str, Any] = {
    # widths
    "hidden_size": WIDTH, "n_embd": WIDTH, "d_model": WIDTH, "emb_dim": WIDTH,
    "intermediate_size": 64, "ffn_dim": 64, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
    "d_ff": 64, "n_inner": 64, "ffn_hidden_size": 64, "dff": 64, "intermediate_size_mlp": 64,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
    # layer counts
    "num_hidden_layers": LAYERS, "n_layer": LAYERS, "n_layers": LAYERS, "num_layers": LAYERS,
    "encoder_layers": LAYERS, "decoder_layers": LAYERS, "num_decoder_layers": LAYERS,
    # attention
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4,
    "encoder_attention_heads": 4, "decoder_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 8, "d_kv": 8, "q_lora_rank": 16, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8, "v_head_dim": 8, "qk_head_dim": 16, "index_head_dim": 8,
    "index_n_heads": 2, "linear_key_head_dim": 8, "linear_value_head_dim": 8,
    "linear_num_key_heads": 2, "linear_num_value_heads": 4,
    # experts
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    # state-space layers
    "state_size": 8, "expand": 2, "mamba_d_state": 8, "mamba_n_heads": 4, "mamba_d_head": 16,
    "mamba_expand": 2, "n_groups": 1,
    # per-layer inputs (Gemma 3n, Gemma 4)
    "hidden_size_per_layer_input": 8, "vocab_size_per_layer_input": VOCAB_SIZE,
    # vocabulary and positions, matching tiny_models' character tokenizer
    "vocab_size": VOCAB_SIZE, "max_position_embeddings": 128, "n_positions": 128, "n_ctx": 128,
    "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3,
}

# Families whose config needs more than SIZES to build tinily: {model_type: (overrides, why)}.
# Overrides made from another family's tiny config are a function, called only when that family is
# built: an older transformers may not have the other family.
Overrides = dict[str, Any] | Callable[[], dict[str, Any]]
_MLA = ({"num_key_value_heads": 4}, "multi-head latent attention has one key per query head")
EXTRA: dict[str, tuple[Overrides, str]] = {
    family: _MLA for family in ("axk1", "axk2", "deepseek_v2", "deepseek_v3", "deepseek_v32",
                                "glm4_moe_lite", "glm_moe_dsa", "minicpm3", "sarvam_mla", "youtu",
                                "longcat_flash")
}
EXTRA["gptj"] = ({"rotary_dim": 4}, "rotary dimensions within the tiny head")
EXTRA["codegen"] = ({"rotary_dim": 4}, "rotary dimensions within the tiny head")
EXTRA["mamba2"] = ({"head_dim": 16}, "heads x head size = width x expansion")
EXTRA["zaya"] = ({"num_experts_per_tok": 1}, "it routes each token to one expert")
EXTRA["dots3_note_text"] = ({"num_key_value_heads": 4, "sliding_window": 4,
                             "per_layer_config": {2: {
    "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 16, "kv_lora_rank": 16,
    "head_dim": 16, "qk_nope_head_dim": 8, "v_head_dim": 8, "qk_rope_head_dim": 8}}},
    "as many key heads as query heads; its sliding layer (the last) has a per-layer config of "
    "its own sizes, and a window shorter than the prompts")
EXTRA["falcon_h1"] = ({"mamba_d_ssm": 64, "mamba_n_heads": 4, "mamba_d_head": 16},
                      "Mamba heads x head size = the Mamba width")
EXTRA["reformer"] = ({
    "is_decoder": True, "axial_pos_shape": [8, 16], "axial_pos_embds_dim": [16, 16],
    "attn_layers": ["local"] * LAYERS, "local_attn_chunk_length": 8,
    "lsh_attn_chunk_length": 8}, "a causal LM only as a decoder; axial positions that sum to "
                                 "the width; one attention kind per layer")
EXTRA["gpt_neo"] = ({"attention_types": [[["global", "local", "global"], 1]], "window_size": 4},
                    "one attention kind per layer, in its own [[kinds], repeats] format; a "
                    "window shorter than the prompts")
EXTRA["zamba"] = ({"layers_block_type": ["hybrid", "linear_attention", "hybrid"]},
                  "two hybrid blocks, which share one attention block's weights")
EXTRA["zamba2"] = ({"layers_block_type": ["hybrid", "linear_attention", "hybrid"],
                    "use_shared_attention_adapter": True, "adapter_rank": 4,
                    "num_key_value_heads": 4},
                   "a layer pattern of its own length (hybrid layers read from it at init); two "
                   "hybrid blocks sharing one attention block, each with its own adapters, "
                   "which need as many key heads as query heads")
EXTRA["dbrx"] = ({"attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 0.2},
                  "ffn_config": {"moe_num_experts": 4, "moe_top_k": 2}},
                 "its attention reads rope_theta and clip_qkv from the attention sub-config, "
                 "which only checkpoints' configs fill; two of four experts per token")
EXTRA["lfm2_moe"] = ({"layer_types": ["conv", "full_attention", "conv"], "num_dense_layers": 1},
                     "no default layer kinds (checkpoints list them); one dense block before "
                     "the MoE ones")
EXTRA["kimi_linear"] = ({"num_experts_per_token": 2, "linear_head_dim": 8, "linear_num_heads": 4,
                         "layer_types": ["linear_attention", "full_attention", "linear_attention"],
                         "num_key_value_heads": 4},
                        "expert, linear-attention head and layer-kind keys of its own names; "
                        "a full-attention (MLA: one key per query head) block among the linear "
                        "ones")
# Group-limited routing: the experts split into as many groups as it names (8 by default).
EXTRA["axk1"] = ({**_MLA[0], "n_group": 2, "topk_group": 1},
                 "MLA (one key per query head); two groups of two experts, one group chosen")
EXTRA["bailing_hybrid"] = ({"num_key_value_heads": 4, "num_expert_group": 2, "topk_group": 1,
                            "num_experts_per_token": 2,
                            "layer_types": ["linear_attention", "full_attention",
                                            "linear_attention"]},
                           "two groups of two experts, two chosen (keys of its own names); an "
                           "MLA block (one key per query head) among the linear ones")
_S, _F = "sliding_attention", "full_attention"
EXTRA["kolibri1_1"] = ({"head_dim": 16, "index_num_heads": 2, "index_topk": 4, "index_pool_size": 8,
                        "index_compression": 2, "index_num_local_tokens": 2,
                        "index_num_sink_tokens": 1, "sliding_window": 4,
                        "mlp_only_intermediate_size": 64,
                        "layer_types": [_S, "indexed_attention", _S]},
                       "NVFP4 rounding of keys and values needs a head size that is a multiple "
                       "of 16; its indexer scores with at most the query heads of one key head; "
                       "an indexed-attention block (every 5th by default) whose pool, top-k and "
                       "window are shorter than the prompts")
# Gemma 3n and Gemma 4: the last block reuses the KV cache of an earlier one of its type.
EXTRA["gemma3n_text"] = ({
    "layer_types": [_S, _F, _S], "num_kv_shared_layers": 1, "intermediate_size": [64] * LAYERS,
    "activation_sparsity_pattern": [0.95, 0.0, 0.0], "laurel_rank": 4,
}, "per-layer lists of its own, and a KV-sharing layer whose type an earlier layer has")
EXTRA["gemma4_text"] = ({"layer_types": [_S, _F, _S], "num_kv_shared_layers": 1},
                        "a KV-sharing layer whose type an earlier layer has")


def tiny_config(model_type: str) -> PretrainedConfig:
    """The family's config with every known size key small and LAYERS decoder blocks."""
    config_class = CONFIG_MAPPING[model_type]
    extra = overrides(model_type)
    try:
        known = config_class().to_dict()
    except Exception:  # noqa: BLE001 - a default that does not validate (Gemma 4 assistants)
        known = config_class(**extra).to_dict()
    sizes = {**SIZES, **extra}
    return _shrink(config_class(**{k: v for k, v in sizes.items() if k in known}), sizes)


def overrides(model_type: str) -> dict[str, Any]:
    """The family's entry in EXTRA ({} when it has none), made now if it is a function."""
    extra = EXTRA.get(model_type, ({}, ""))[0]
    return extra() if callable(extra) else extra


def _shrink(config: PretrainedConfig, sizes: dict[str, Any]) -> PretrainedConfig:
    """Set the size keys on the config and its sub-configs; cut per-layer lists to LAYERS."""
    stored = config.to_dict()
    for key, value in sizes.items():
        read_only = getattr(getattr(type(config), key, None), "fset", 0) is None
        if stored.get(key) is not None and not isinstance(stored[key], dict) and not read_only:
            setattr(config, key, value)
    for value in list(vars(config).values()):
        if isinstance(value, PretrainedConfig):
            _shrink(value, sizes)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) != LAYERS:
        config.layer_types = (layer_types * LAYERS)[:LAYERS]
    return config


# Multimodal families whose text config, left default, does not shrink by SIZES: that of their
# text family, built tinily as above.
_ADAPTER = {"hidden_size": WIDTH, "num_attention_heads": 4, "adapter_in_dim": WIDTH,
            "adapter_input_size": WIDTH, "adapter_out_dim": WIDTH}
EXTRA["dots3_note"] = (lambda: {"text_config": tiny_config("dots3_note_text").to_dict(),
                                "vision_config": _ADAPTER, "audio_config": _ADAPTER,
                                **overrides("dots3_note_text")},
                        "the text config of dots3_note_text (its own, at 46 layers, has "
                        "per-layer configs for sliding layers that no tiny key reaches); vision "
                        "and audio adapters as wide as the tiny towers and text")


def _text_of(family: str) -> Callable[[], dict[str, Any]]:
    return lambda: {"text_config": tiny_config(f"{family}_text").to_dict()}


for _family in ("gemma4", "gemma4_unified"):
    EXTRA[_family] = (_text_of(_family),
                      f"the text config of {_family}_text (its own has per-layer configs for "
                      "30 layers)")
_INKLING = {"unpadded_vocab_size": VOCAB_SIZE, "swa_num_attention_heads": 4,
            "swa_num_key_value_heads": 2, "swa_head_dim": 8, "sliding_window_size": 4,
            "rel_extent": 8, "n_layers_per_attn_res_block": 2}
EXTRA["inkling2_text"] = (_INKLING, "an LM head as wide as the unpadded vocabulary; sliding "
                          "heads of their own keys; a window shorter than the prompts; two "
                          "layers per attention-residual block")
EXTRA["inkling2_loop_text"] = ({**_INKLING, "n_layers_per_attn_res_block": 1,
                                "loop_layer_index_start": 1, "loop_layer_index_end": 2,
                                "loop_gate_rank": 4},
                               EXTRA["inkling2_text"][1] + "; a loop over layer 1 (one layer per "
                               "attention-residual block, of which a loop's ends are multiples)")
_ROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
EXTRA["cohere_compass_text"] = ({"layer_types": [_S, _F, _S], "sliding_window": 4,
                                 "rope_parameters": {_S: _ROPE, _F: _ROPE}},
                                "RoPE parameters per layer kind, which only checkpoints' configs "
                                "fill, with rotary sections within the tiny head; a window "
                                "shorter than the prompts")
EXTRA["blt"] = ({"encoder_hash_byte_group_vocab": 64, "hidden_size_global": WIDTH},
                "hash-embedding vocabularies of 500,002 rows; its local models' view of the "
                "global width")
# Gemma 4's assistants: a text config without per-layer inputs, MoE or wide MLPs, all of whose
# layers read the key-value states of the model they draft for.


def _assistant_of(family: str) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        text = {**overrides(family)["text_config"], "hidden_size_per_layer_input": 0,
                "vocab_size_per_layer_input": 0, "enable_moe_block": False,
                "use_double_wide_mlp": False, "num_kv_shared_layers": LAYERS}
        return {"text_config": text, "backbone_hidden_size": WIDTH, "num_centroids": 8,
                "centroid_intermediate_top_k": 2, "hidden_size_per_layer_input": 0,
                "vocab_size_per_layer_input": 0}

    return make


for _family in ("gemma4", "gemma4_unified"):
    EXTRA[f"{_family}_assistant"] = (_assistant_of(_family), "a text config that validates for "
                                     "an assistant (its default one does not)")
