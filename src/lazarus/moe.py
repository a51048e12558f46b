"""MoE layers' expert units and router (placeholder until the MoE sites land)."""

from __future__ import annotations

from typing import Any


def find_moe(block: Any) -> None:
    """No MoE support yet: every block is treated as dense."""
    return None


def site(parts: Any, name: str) -> Any:
    raise NotImplementedError
