"""How many padded tokens and prompts one forward pass may take: memory budgeting and the
batch plan, apart from the engine that runs them.

A padded token holds, at its peak inside a block, a few hidden-size vectors, the MLP's
intermediate vectors (for each expert a token is routed to) and a row of attention scores per
head; and what the hooks hold of it (`kept_bytes_per_token`: every layer's values for
`--position all`, and the MoE units computed for every token for `all` and `mean`).
`batch_limits` divides the memory to spare by that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from lazarus.engine.configs import (
    HIDDEN_SIZE_KEYS,
    config_int,
    first_config_int,
    first_int,
    text_config,
)
from lazarus.engine.loading import LoadedModel
from lazarus.engine.moe import moe_shape
from lazarus.engine.prefetch import available_ram_bytes
from lazarus.engine.trace import CaptureRequest
from lazarus.engine.widths import mlp_post_bound, mlp_width
from lazarus.errors import LazarusError, is_out_of_memory

CPU_TOKEN_BUDGET = 2048  # on CPU, larger batches are no faster
MAX_BATCH = 256  # prompts per forward pass on CPU
GPU_MAX_BATCH = 512
# The fixed cost of one forward call, in tokens' worth of compute: {on CPU?: tokens}. On a CPU
# a token costs much and a call little, so padding is avoided; a GPU computes padding ~for free.
BATCH_OVERHEAD_TOKENS = {True: 8, False: 256}
# Bytes of one float32: the hooks keep rows as float32, and attention scores are float32.
FLOAT32 = np.dtype(np.float32).itemsize

Item = TypeVar("Item")


def plan_batches(
    lengths: Sequence[int],
    token_budget: int,
    max_batch: int,
    overhead_tokens: int = 8,
) -> list[list[int]]:
    """Prompt indices in batches of similar length, shortest first.

    Among the ways to cut the prompts, sorted by length, into batches of at most `max_batch`
    rows whose padded size (rows x longest) stays within `token_budget`, this picks the one that
    computes the least: padded tokens, plus `overhead_tokens` for each forward call (its fixed
    cost, in tokens' worth of compute). Prompts of equal length thus share batches, and a batch
    mixes lengths only where padding costs less than another call. A prompt longer than the
    budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    ordered = np.array([lengths[i] for i in order], dtype=np.int64)
    count = len(order)
    best = np.zeros(count + 1)  # best[j]: least cost of batching the first j prompts
    start = np.zeros(count + 1, dtype=np.int64)  # where the last batch of that best way starts
    for end in range(1, count + 1):
        longest = int(ordered[end - 1])
        most = max(1, min(max_batch, token_budget // longest, end))
        rows = np.arange(1, most + 1)
        costs = best[end - rows] + overhead_tokens + longest * rows
        pick = int(np.argmin(costs))
        best[end] = costs[pick]
        start[end] = end - rows[pick]
    batches: list[list[int]] = []
    end = count
    while end > 0:
        batches.append(order[start[end]:end])
        end = int(start[end])
    return batches[::-1]


def batch_limits(loaded: LoadedModel, longest: int, kept_bytes_per_token: int = 0,
                 ) -> tuple[int, int]:
    """(padded tokens per forward, prompts per forward) for this model on its device.

    Per token: `activation_bytes_per_token`, doubled for safety, plus what the hooks keep of
    it. The budget is the memory to spare divided by that: half the free memory of the
    fullest GPU the model is on, or a quarter of the available RAM on CPU, where it is also
    capped at `CPU_TOKEN_BUDGET` because larger batches are no faster there.
    """
    value_bytes = loaded.model.get_input_embeddings().weight.element_size()
    per_token = (2 * activation_bytes_per_token(loaded.info.config, value_bytes, longest)
                 + kept_bytes_per_token)
    on_cpu = loaded.device == "cpu"
    spare = free_memory_bytes(loaded)
    budget = max(longest, int(spare // per_token))
    if on_cpu:
        budget = min(budget, CPU_TOKEN_BUDGET)
    return budget, MAX_BATCH if on_cpu else GPU_MAX_BATCH


def kept_bytes_per_token(loaded: LoadedModel, request: CaptureRequest) -> int:
    """What the hooks hold per padded token beyond the forward's own needs: every layer's
    values for `all`, and the MoE units computed for every token for `all` and `mean` (E*I
    floats per token, while one layer's hook runs)."""
    shape = moe_shape(loaded.info.config) if request.site == "mlp_post" else None
    units = FLOAT32 * shape[0] * shape[1] if shape and request.position in ("all", "mean") else 0
    if request.position != "all":
        return units
    width = len(request.columns) if request.columns is not None else site_width_guess(loaded)
    return units + FLOAT32 * width * len(request.layers)


def site_width_guess(loaded: LoadedModel) -> int:
    """The widest a site's row can be: the hidden size, or the mlp_post site's bound (the
    widest layer's MLP, when config.json lists one per layer, or experts x units)."""
    bound = mlp_post_bound(loaded.info.config) or mlp_width(loaded.info.config)
    return max(loaded.info.hidden_size, bound[0] if bound else 0)


def activation_bytes_per_token(config: dict[str, Any], value_bytes: int, longest: int) -> int:
    """What one padded token holds at its peak inside a block (see the module doc), for a
    config.json and values of `value_bytes` bytes (the weights' element size). Widths listed
    per layer count at the widest layer's; an MLP width config.json does not name, as 4 x the
    hidden size."""
    text = text_config(config)
    hidden = first_int(text, *HIDDEN_SIZE_KEYS) or 0
    dense = mlp_width(config)
    intermediate = dense[0] if dense else 4 * hidden
    heads = first_config_int(text, "num_attention_heads", "n_head", "n_heads") or 1
    routed = config_int(text, "num_experts_per_tok") or 1
    return value_bytes * (10 * hidden + 4 * intermediate * routed) + FLOAT32 * heads * longest


def free_memory_bytes(loaded: LoadedModel) -> int:
    import torch

    if loaded.device == "cuda":
        devices = {p.device for p in loaded.model.parameters() if p.device.type == "cuda"}
        return min(torch.cuda.mem_get_info(d)[0] for d in devices) // 2
    return available_ram_bytes() // 4


def limits_for(loaded: LoadedModel, longest: int, request: CaptureRequest,
               token_budget: int | None, max_batch: int | None) -> tuple[int, int]:
    """(tokens per forward, prompts per batch): the ones given, else what free memory allows
    for prompts of up to `longest` tokens and what `request` keeps per token."""
    if token_budget is None or max_batch is None:
        default_budget, default_batch = batch_limits(loaded, longest,
                                                     kept_bytes_per_token(loaded, request))
        token_budget = token_budget or default_budget
        max_batch = max_batch or default_batch
    return token_budget, max_batch


def in_halves(items: Sequence[Item], size: int, run: Callable[[list[Item]], None],
              what: str = "row") -> None:
    """Run `run` on consecutive batches of at most `size` items, in order. A batch that runs
    out of memory (`errors.is_out_of_memory`) is run again in halves, and no later batch is
    larger, so `run` must keep its results only once it returns. One item that does not fit
    alone: a one-line error (`what` names it)."""
    items, start = list(items), 0
    while start < len(items):
        batch = items[start:start + size]
        try:
            run(batch)
        except Exception as err:
            check_retry(err, len(batch), f"out of memory running one {what} (use --dtype "
                                         "bfloat16, --device-map auto to spread the model, "
                                         "shorter prompts, or a machine with more memory)")
        else:
            start += len(batch)
            continue
        release_memory()  # after the except block: the error's traceback held the tensors
        size = max(1, len(batch) // 2)


def check_retry(err: Exception, rows: int, alone: str) -> None:
    """After a batch of `rows` rows raised `err`: raise it again unless it ran out of memory,
    and say `alone` (one line) when even one row does not fit; else return, for the caller to
    free memory and run smaller batches."""
    if not is_out_of_memory(err):
        raise err
    if rows == 1:
        raise LazarusError(alone) from None


def release_memory() -> None:
    """Give what the failed batch held back to the allocator."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if hasattr(torch, "mps") and torch.backends.mps.is_available():
        torch.mps.empty_cache()
