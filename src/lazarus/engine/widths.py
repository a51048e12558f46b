"""How wide the mlp_post site can be, read from config.json without torch: the dense MLP width
and, for MoE, experts x units (the bounds that budgets and early id checks use)."""

from __future__ import annotations

from typing import Any

from lazarus.engine.configs import HIDDEN_SIZE_KEYS, config_int, config_note, first_int, text_config
from lazarus.engine.moe import moe_shape

# config.json keys of a dense MLP's width (the input of its down projection), or a bound on it;
# n_inner and ffn_hidden_size unset mean 4 x the hidden size (GPT-2, Falcon).
MLP_WIDTH_KEYS = ("intermediate_size", "intermediate_size_mlp", "ffn_dim", "decoder_ffn_dim",
                   "ffn_hidden_size", "n_inner", "d_ff")


_FOUR_TIMES_HIDDEN = ("n_inner", "ffn_hidden_size")


def mlp_width(config: dict[str, Any], layer: int | None = None) -> tuple[int, str] | None:
    """(the widest dense MLP width config.json names at `layer`, or at any layer when None;
    what in config.json says so), or None when it names none. A per-layer list gives its value
    at `layer`, or its largest (`configs.config_int`)."""
    text = text_config(config)
    hidden = first_int(text, *HIDDEN_SIZE_KEYS)
    found = []
    for key in MLP_WIDTH_KEYS:
        if key not in text:
            continue
        value = config_int(text, key, layer)
        if value is None and key in _FOUR_TIMES_HIDDEN and hidden:
            found.append((4 * hidden, f"{key} unset: 4 x hidden size {hidden}"))
        elif value:
            found.append((value, config_note(text, key, layer)))
    return max(found) if found else None


def mlp_post_bound(config: dict[str, Any], layer: int | None = None) -> tuple[int, str] | None:
    """(the widest the mlp_post site can be at `layer`, or at any layer when None; what in
    config.json says so), read without torch; None when the config does not say clearly (no
    width key, or experts counted under a key `moe.moe_shape` does not know). A width that is
    not a whole number, or a per-layer list of the wrong length, is refused in one line
    (`configs.config_int`).

    The larger of the dense width (`mlp_width`) and, for MoE, experts x units per expert
    (`moe.moe_shape`): an MoE model's
    dense layers and its expert layers both fit under it. A bound, not always the width: a
    gated MLP may read half of ffn_dim, and an MoE model's dense layers are narrower. Checked on
    every causal-LM family of transformers (tests/tiny_configs.py's tiny configs, with each
    width key a different size), and per layer on Gemma 3n's per-layer widths."""
    text = text_config(config)
    dense = mlp_width(config, layer)
    adjusted = None if dense is None else _lfm2_width(text, dense[0])
    if dense is not None and adjusted is not None:
        dense = adjusted, (f"{dense[1]} adjusted: 2/3 x {text['block_ffn_dim_multiplier']}, "
                           f"rounded up to a multiple of {text['block_multiple_of']}")
    found = [] if dense is None else [dense]
    shape = moe_shape(config)
    if shape is not None:
        experts, units = shape
        found.append((experts * units, f"{experts} experts x {units} units"))
    elif any(("expert" in key or "moe" in key) and value and not isinstance(value, dict)
             for key, value in text.items()):
        return None  # experts counted under a key moe_shape does not read
    if not found:
        return None
    width, why = max(found)
    if text.get("use_double_wide_mlp"):  # Gemma 4: some layers' MLPs are twice as wide
        return 2 * width, f"{why}, x 2 for use_double_wide_mlp"
    return width, why


def _lfm2_width(text: dict[str, Any], width: int) -> int | None:
    """LFM2's MLP width (block_auto_adjust_ff_dim): 2/3 of intermediate_size x the multiplier,
    rounded up to a multiple of block_multiple_of (past intermediate_size when that is small);
    None for other configs."""
    multiplier, multiple = text.get("block_ffn_dim_multiplier"), text.get("block_multiple_of")
    if not text.get("block_auto_adjust_ff_dim") or not isinstance(multiplier, (int, float)) \
            or not isinstance(multiple, int) or multiple < 1:
        return None
    return multiple * -(-int(multiplier * int(2 * width / 3)) // multiple)
