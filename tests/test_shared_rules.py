"""Rules written once and used everywhere: config.json numbers (one or one per layer) as the
memory budget, the MoE shape and the context length read them; values and exception messages
cut short for one-line messages. Configs are built by hand; expected values are worked out in
the test from the rule each function documents."""

from __future__ import annotations

import pytest

from lazarus.engine.budget import activation_bytes_per_token
from lazarus.engine.capture import context_length
from lazarus.engine.configs import first_config_int
from lazarus.engine.moe import moe_shape
from lazarus.engine.widths import mlp_width
from lazarus.errors import LazarusError, first_line
from lazarus.text import shorten, shown

# Gemma 3n keeps one MLP width per decoder layer under text_config.
GEMMA3N = {"model_type": "gemma3n", "text_config": {
    "hidden_size": 8, "intermediate_size": [16, 64, 32], "num_hidden_layers": 3,
    "num_attention_heads": 2}}


def test_budget_counts_a_per_layer_mlp_width_at_its_widest_layer():
    # 2-byte values: 10 hidden-size vectors of 8 and 4 MLP vectors of the widest layer's 64,
    # plus a float32 attention score per head (2) for each of 5 positions.
    assert activation_bytes_per_token(GEMMA3N, 2, 5) == 2 * (10 * 8 + 4 * 64) + 4 * 2 * 5
    widest = {"text_config": {**GEMMA3N["text_config"], "intermediate_size": 64}}
    assert activation_bytes_per_token(widest, 2, 5) == activation_bytes_per_token(GEMMA3N, 2, 5)


def test_budget_refuses_a_per_layer_list_of_the_wrong_length_in_one_line():
    config = {"text_config": {**GEMMA3N["text_config"], "intermediate_size": [16, 64]}}
    with pytest.raises(LazarusError) as caught:
        activation_bytes_per_token(config, 2, 5)
    assert str(caught.value) == ("config.json's intermediate_size lists 2 values but the model "
                                 "has 3 layers (a per-layer list needs one value per layer; "
                                 "fix config.json)")


def test_budget_takes_an_unnamed_mlp_width_as_four_times_the_hidden_size():
    gpt2 = {"n_embd": 8, "n_inner": None, "n_head": 2, "n_layer": 2}  # GPT-2: n_inner unset
    assert activation_bytes_per_token(gpt2, 4, 3) == 4 * (10 * 8 + 4 * 32) + 4 * 2 * 3
    opt = {"hidden_size": 8, "ffn_dim": 40, "num_attention_heads": 2}  # OPT names ffn_dim
    assert activation_bytes_per_token(opt, 4, 3) == 4 * (10 * 8 + 4 * 40) + 4 * 2 * 3


def test_mlp_width_reads_a_layer_or_the_widest():
    assert mlp_width(GEMMA3N, 2) == (32, "intermediate_size at layer 2 = 32")
    assert mlp_width(GEMMA3N) == (64, "the largest intermediate_size, 64 at layer 1")
    assert mlp_width({"hidden_size": 8}) is None


def test_first_config_int_takes_the_first_key_holding_a_number():
    text = {"num_experts": 0, "n_routed_experts": [3, 5], "num_hidden_layers": 2}
    assert first_config_int(text, "num_local_experts", "num_experts", "n_routed_experts") == 5
    assert first_config_int(text, "num_local_experts") is None
    with pytest.raises(LazarusError, match="config.json's n_ctx is '2048', not a whole number"):
        first_config_int({"n_ctx": "2048"}, "n_ctx")


def test_moe_shape_and_context_length_read_through_the_config_accessors():
    mixtral = {"num_local_experts": 4, "intermediate_size": 12}
    assert moe_shape(mixtral) == (4, 12)
    qwen_moe = {"text_config": {"num_experts": 6, "moe_intermediate_size": [0, 10],
                                "intermediate_size": 40, "num_hidden_layers": 2}}
    assert moe_shape(qwen_moe) == (6, 10)  # experts' own width, the widest layer's
    assert moe_shape({"num_experts": 0, "intermediate_size": 40}) is None  # dense
    assert context_length({"max_position_embeddings": 128}) == 128
    assert context_length({"n_positions": 0, "n_ctx": 64}) == 64
    assert context_length({"hidden_size": 8}) is None


def test_shorten_keeps_a_short_text_and_cuts_a_long_one_to_the_limit():
    assert shorten("x" * 40) == "x" * 40
    assert shorten("abcdefgh", 6) == "abc..."
    assert shorten("abcdefgh", 6, mark="…") == "abcde…"


class _BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_shown_is_a_short_repr_even_of_huge_or_broken_values():
    assert shown([1, 2]) == "[1, 2]"
    huge = shown(list(range(10**6)))
    assert huge.startswith("[0, 1, 2")
    assert len(huge) <= 40
    assert shown(_BrokenRepr()).startswith("<_BrokenRepr instance at 0x")


def test_first_line_is_the_first_non_blank_line_cut_short():
    assert first_line(ValueError("\n  bad header  \nsecond line")) == "bad header"
    assert first_line(OSError()) == "OSError"
    long = first_line(ValueError("y" * 300))
    assert long == "y" * 197 + "..."
