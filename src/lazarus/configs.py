"""config.json as read without torch: the one accessor for its text part."""

from __future__ import annotations

from typing import Any


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config: `text_config` for multimodal checkpoints
    (Gemma 3, Llava, ...), else the config itself."""
    part = config.get("text_config")
    return part if isinstance(part, dict) and part else config
