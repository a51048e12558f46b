"""Token positions: which of a prompt's real tokens a site is read at.

`last` (default), `first`, an index (0-based; negative counts from the end), `all` (every real
token), or `mean` (the mean over the real tokens). Batches are right-padded, so a row's real
tokens are 0..length-1, and padding is never read. Gathering happens inside the hook, so only
the asked-for positions are ever kept.
"""

from __future__ import annotations

from typing import Any

from lazarus.errors import LazarusError
from lazarus.text import plural, whole_number

NAMES = ("last", "first", "all", "mean")
Position = str | int


def parse_position(text: str, allow_all: bool = True) -> Position:
    """`last`, `first`, `all` (unless not allowed), `mean` or a whole number."""
    value = text.strip()
    names = NAMES if allow_all else tuple(n for n in NAMES if n != "all")
    if value == "all" and not allow_all:
        raise LazarusError("--position all gives one vector per token, and this command needs "
                           "one per prompt (use last, first, an index, or mean)")
    if value in names:
        return value
    try:
        return whole_number(value)
    except ValueError:
        raise LazarusError(f"position {text!r} is not one of {', '.join(names)} or a token "
                           "index (e.g. --position 0, or -2 for the second last)") from None


def same_token(position: Position) -> Position:
    """`-1` reads the same token as `last`, and `0` as `first`."""
    return {-1: "last", 0: "first"}.get(position, position) if isinstance(position, int) \
        else position


def check_lengths(position: Position, lengths: list[int], prompts: list[str]) -> None:
    """Every prompt has the token an index asks for."""
    if not isinstance(position, int):
        return
    for prompt, length in zip(prompts, lengths, strict=True):
        if not -length <= position < length:
            raise LazarusError(f"prompt {prompt!r} has {plural(length, 'token')}, so it has no "
                               "token at "
                               f"position {position} (use a position within every prompt, "
                               "or last, first or mean)")


def gather(hidden: Any, lengths: Any, position: Position, skip_missing: bool = False) -> Any:
    """[batch, tokens, width] -> [batch, width] at the position (float32), or, for `all`,
    the float32 [batch, tokens, width] itself (the caller cuts each row at its length).
    `skip_missing`: NaN marks a value that does not exist (MoE units of experts a token was not
    routed to), and `mean` is over the tokens that have one; elsewhere a NaN is the model's."""
    import torch

    if position == "all":
        return hidden.float()
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    lengths = lengths.to(hidden.device)
    if position == "mean":  # over real tokens with a value (MoE units: the routed ones)
        values = hidden.float()
        real = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
        valid = real[..., None].expand(values.shape)  # [batch, tokens, width]
        if skip_missing:
            valid = valid & ~torch.isnan(values)
        summed = torch.where(valid, values, 0.0).sum(dim=1)  # [batch, width]
        return summed / valid.sum(dim=1)  # NaN where no token has a value
    return hidden[rows, _index(lengths, position)].float()


def token_index(lengths: Any, tokens: int, position: Position) -> Any | None:
    """For one-token positions, each row's token as an index into the flattened [batch *
    tokens] (row-major); None for `all` and `mean`, which need every token."""
    import torch

    if position in ("all", "mean"):
        return None
    return torch.arange(lengths.shape[0]) * tokens + _index(lengths, position)  # [batch]


def _index(lengths: Any, position: Position) -> Any:
    """[batch]: the token each row is read at, for one-token positions."""
    import torch

    if position == "last":
        return lengths - 1
    if position == "first":
        return torch.zeros_like(lengths)
    if position >= 0:
        return torch.full_like(lengths, position)
    return lengths + position
