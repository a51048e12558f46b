"""config.json as read without torch: the accessors for its text part and its numbers.

A number may be stored per layer: transformers 5 keeps Gemma 3n's `intermediate_size` as a list
with one width per decoder layer, as real gemma-3n checkpoints do. `config_int` reads any such
field, one number or one per layer, and refuses anything else in one line; `config_note` says
which layer's value was used, for the messages that report it.
"""

from __future__ import annotations

from typing import Any

from lazarus.errors import LazarusError
from lazarus.text import shorten

# Names of the decoder's layer count in config.json: transformers' own, then GPT-2's, MPT's,
# and the decoder's of BART-like causal LMs (whose configs also name an encoder's).
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "decoder_layers")
# Names of the residual stream's width: transformers' own, GPT-2's, T5's and BART's, OLMo's.
HIDDEN_SIZE_KEYS = ("hidden_size", "n_embd", "d_model", "emb_dim")


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config: `text_config` for multimodal checkpoints
    (Gemma 3, Llava, ...), else the config itself."""
    part = config.get("text_config")
    return part if isinstance(part, dict) and part else config


def first_int(text: dict[str, Any], *keys: str) -> int | None:
    """The first of `keys` that holds one integer (not a bool), or None. For the numbers that
    are never per layer and that some families keep under another key with another meaning
    (the layer count, the residual width): a key of another kind is passed over."""
    for key in keys:
        value = text.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def layer_count(text: dict[str, Any]) -> int | None:
    """The decoder's layer count: the length every per-layer list must have."""
    return first_int(text, *LAYER_COUNT_KEYS)


def config_int(text: dict[str, Any], key: str, layer: int | None = None) -> int | None:
    """The whole number config.json's text part holds under `key`, or None when the key is
    missing or null.

    A list is read as one value per decoder layer: with `layer`, that layer's value; without,
    the largest (what a memory budget or a bound over every layer needs). A list whose length
    is not the layer count, or a value that is not a whole number of zero or more (a string, a
    float, a bool, a list holding one), is refused in one line: a guess would give a wrong
    width or count.
    """
    value = text.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        return _whole(key, value)
    values = [_whole(key, item) for item in value]
    count = layer_count(text)
    if not values:
        raise LazarusError(f"config.json's {key} is an empty list (give one value, or one per "
                           "layer; fix config.json)")
    if count is not None and len(values) != count:
        raise LazarusError(f"config.json's {key} lists {len(values)} values but the model has "
                           f"{count} layers (a per-layer list needs one value per layer; fix "
                           "config.json)")
    if layer is None:
        return max(values)
    if not 0 <= layer < len(values):
        raise LazarusError(f"config.json's {key} lists {len(values)} values, none for layer "
                           f"{layer} (a per-layer list needs one value per layer; fix "
                           "config.json)")
    return values[layer]


def first_config_int(text: dict[str, Any], *keys: str) -> int | None:
    """`config_int` of the first of `keys` that holds a number other than 0, or None: for a
    quantity that families store under different names (the head count, the context length,
    the expert count), one value or one per layer (the largest)."""
    for key in keys:
        if value := config_int(text, key):
            return value
    return None


def config_note(text: dict[str, Any], key: str, layer: int | None = None) -> str:
    """What `config_int` read, for a message: `key = value`, and for a per-layer list which
    layer's value it is (the asked-for layer's, or the widest layer's)."""
    value = config_int(text, key, layer)
    stored = text.get(key)
    if not isinstance(stored, list):
        return f"{key} = {value}"
    if layer is None:
        return f"the largest {key}, {value} at layer {stored.index(value)}"
    return f"{key} at layer {layer} = {value}"


def _whole(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise LazarusError(f"config.json's {key} is {shorten(repr(value))}, not a whole number or "
                       "one per layer (fix config.json)")
