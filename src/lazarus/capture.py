"""The one capture engine: run the model's own forward with hooks, keep only what was asked for.

Prompts are tokenized one by one (the tokenizer's default special tokens, no chat template),
sorted by length and batched so that little or no padding is computed (`plan_batches`), within
a budget of tokens per forward chosen from the free memory (`batch_limits`); a batch that runs
out of memory is halved and retried. Each batch is right-padded with an attention mask, so every
real token sees exactly what it would see alone. Hooks read the
asked-for sites, gather the last real token of each row (index = mask.sum(-1) - 1) and move it
to float32 numpy at once. A hook on the deepest asked-for layer ends the forward by raising
`_StopForward`: later blocks, the final norm and the LM head never run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus.errors import LazarusError
from lazarus.loading import LoadedModel, available_ram_bytes
from lazarus.sites import locate

Progress = Callable[[int, int], None]  # (prompts done, prompts total)
RowsSink = Callable[[list[int], dict[int, np.ndarray]], None]  # (prompt indices, rows per layer)

CPU_TOKEN_BUDGET = 2048  # on CPU, larger batches are no faster
MAX_BATCH = 256  # prompts per forward pass on CPU
GPU_MAX_BATCH = 512
# The fixed cost of one forward call, in tokens' worth of compute: {on CPU?: tokens}. On a CPU
# a token costs much and a call little, so padding is avoided; a GPU computes padding ~for free.
BATCH_OVERHEAD_TOKENS = {True: 8, False: 256}


class _StopForward(Exception):
    """Raised by the deepest hook: the forward has produced everything that is needed."""


@dataclass(frozen=True)
class CaptureRequest:
    layers: tuple[int, ...]  # 0-based, already resolved (non-negative)
    site: str = "residual"


def tokenize(loaded: LoadedModel, prompts: Sequence[str]) -> list[list[int]]:
    ids = [list(loaded.tokenizer(prompt)["input_ids"]) for prompt in prompts]
    limit = context_length(loaded.info.config)
    for number, (prompt, row) in enumerate(zip(prompts, ids, strict=True), start=1):
        if not row:
            raise LazarusError(f"prompt {prompt!r} tokenizes to nothing (give it some text)")
        if limit is not None and len(row) > limit:
            raise LazarusError(f"prompt {number} has {len(row)} tokens but this model takes at "
                               f"most {limit} (shorten it)")
    return ids


def context_length(config: dict) -> int | None:
    """The longest input the model was built for; past it, positions are out of its range."""
    text = config.get("text_config") or config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(text.get(key), int) and text[key] > 0:
            return int(text[key])
    return None


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


def pad_id_of(tokenizer: Any) -> int:
    """Any valid id will do: padded positions are masked and come after every real token."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


@contextmanager
def _hooks(loaded: LoadedModel, request: CaptureRequest, sink: dict[int, Any]):
    """Register one hook per asked-for layer; they store the batch's site tensor in `sink`."""
    deepest = max(request.layers)
    handles = []

    def make_hook(layer: int, site: Any) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], output: Any = None) -> None:
            sink[layer] = site.extract(args, output)
            if layer == deepest:
                raise _StopForward

        return hook

    try:
        for layer in request.layers:
            site = locate(loaded.model, loaded.blocks_loaded, layer, request.site)
            hook = make_hook(layer, site)
            if site.reads_input:
                handles.append(site.module.register_forward_pre_hook(hook))
            else:
                handles.append(site.module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture(
    loaded: LoadedModel,
    prompts: Sequence[str],
    request: CaptureRequest,
    token_budget: int | None = None,
    max_batch: int | None = None,
    progress: Progress | None = None,
    on_rows: RowsSink | None = None,
    notify: Callable[[str], None] | None = None,
) -> dict[int, np.ndarray]:
    """Last-token activations per asked-for layer: {layer: float32 array [prompts, width]}.

    `token_budget` (padded tokens per forward) and `max_batch` default to what the device's free
    memory allows (see `batch_limits`). A batch that runs out of memory is split in half and
    retried, and the limits are halved for the batches after it. `on_rows(indices, rows)` is
    called after every batch with the prompts' indices and their rows {layer: [len, width]}.
    """
    import torch

    if not request.layers:
        raise ValueError("capture needs at least one layer")
    deepest = max(request.layers)
    if deepest >= loaded.blocks_loaded:
        raise ValueError(f"layer {deepest} is beyond the {loaded.blocks_loaded} loaded blocks")
    token_ids = tokenize(loaded, prompts)
    lengths = [len(row) for row in token_ids]
    if token_budget is None or max_batch is None:
        default_budget, default_batch = batch_limits(loaded, max(lengths, default=1))
        token_budget = token_budget or default_budget
        max_batch = max_batch or default_batch
    overhead = BATCH_OVERHEAD_TOKENS[loaded.device == "cpu"]
    pad_id = pad_id_of(loaded.tokenizer)
    input_device = loaded.model.get_input_embeddings().weight.device
    results: dict[int, np.ndarray] = {}
    sink: dict[int, Any] = {}
    done = 0
    queue = deque(plan_batches(lengths, token_budget, max_batch, overhead))

    with torch.inference_mode(), _hooks(loaded, request, sink):
        while queue:
            batch = queue.popleft()
            width = max(lengths[i] for i in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                input_ids[row, : lengths[index]] = torch.tensor(token_ids[index])
                mask[row, : lengths[index]] = 1
            last = mask.sum(dim=-1) - 1  # [batch]: the last real token of each row
            sink.clear()
            try:
                loaded.model(
                    input_ids=input_ids.to(input_device),
                    attention_mask=mask.to(input_device),
                    use_cache=False,
                )
            except _StopForward:
                pass
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                sink.clear()
                del err  # its traceback holds the batch's tensors
                _release_memory()
                if len(batch) == 1:
                    raise LazarusError(
                        f"out of memory running one prompt of {width} tokens on "
                        f"{loaded.device} (use shorter prompts, --dtype bfloat16, or "
                        "--device-map auto to spread the model)") from None
                max_batch = max(1, len(batch) // 2)
                token_budget = max(1, min(token_budget, width * len(batch)) // 2)
                if notify is not None:
                    notify(f"out of memory with {len(batch)} prompts in a batch; "
                           f"continuing with at most {max_batch}")
                remaining = [i for pending in (batch, *queue) for i in pending]
                replanned = plan_batches([lengths[i] for i in remaining], token_budget,
                                         max_batch, overhead)
                queue = deque([[remaining[i] for i in part] for part in replanned])
                continue
            missing = [layer for layer in request.layers if layer not in sink]
            if missing:
                raise RuntimeError(f"the forward pass never reached layer(s) {missing}")
            rows = torch.arange(len(batch))
            batch_rows: dict[int, np.ndarray] = {}
            for layer in request.layers:
                hidden = sink[layer]  # [batch, tokens, width]
                _check_site_shape(loaded, request, layer, hidden, tuple(input_ids.shape))
                gathered = hidden[rows.to(hidden.device), last.to(hidden.device)]
                values = gathered.float().cpu().numpy()  # [batch, width]
                if layer not in results:
                    results[layer] = np.empty((len(prompts), values.shape[1]), np.float32)
                results[layer][batch] = values
                batch_rows[layer] = values
            sink.clear()
            if on_rows is not None:
                on_rows(batch, batch_rows)
            done += len(batch)
            if progress is not None:
                progress(done, len(prompts))
    return results


def _check_site_shape(loaded: LoadedModel, request: CaptureRequest, layer: int, hidden: Any,
                      batch_shape: tuple[int, int]) -> None:
    """Refuse a site that is not one vector per token (Gemma 3n's blocks, for one, output four
    parallel streams): there is no single row to read, and guessing would be silently wrong."""
    shape = tuple(getattr(hidden, "shape", ()))
    if len(shape) != 3 or shape[:2] != batch_shape:
        raise LazarusError(
            f"the {request.site} site of layer {layer} of this {loaded.info.model_type} model is "
            f"a tensor of shape {list(shape)}, not one vector per token of the "
            f"{list(batch_shape)} batch (this architecture is not supported)")
    if request.site == "residual" and shape[2] != loaded.info.hidden_size:
        raise LazarusError(
            f"the residual stream of this {loaded.info.model_type} model is {shape[2]} wide but "
            f"its config says {loaded.info.hidden_size} (several parallel streams?); this "
            "architecture is not supported")


def is_out_of_memory(err: BaseException) -> bool:
    """True for the allocation failures of CUDA, MPS and the CPU allocator."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(err, (oom, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text
                                              or "not enough memory" in text)


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if hasattr(torch, "mps") and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def batch_limits(loaded: LoadedModel, longest: int) -> tuple[int, int]:
    """(padded tokens per forward, prompts per forward) for this model on its device.

    A padded token holds, at its peak inside a block, a few hidden-size vectors, the MLP's
    intermediate vectors (for each expert a token is routed to) and a row of attention scores
    per head: `activation_bytes_per_token` counts them, doubled for safety. The budget is the
    memory to spare divided by that: half the free memory of the fullest GPU the model is on,
    or a quarter of the available RAM on CPU, where it is also capped at `CPU_TOKEN_BUDGET`
    because larger batches are no faster there.
    """
    per_token = 2 * activation_bytes_per_token(loaded.model.config, loaded.dtype, longest)
    on_cpu = loaded.device == "cpu"
    spare = free_memory_bytes(loaded)
    budget = max(longest, int(spare // per_token))
    if on_cpu:
        budget = min(budget, CPU_TOKEN_BUDGET)
    return budget, MAX_BATCH if on_cpu else GPU_MAX_BATCH


def activation_bytes_per_token(config: Any, dtype: str, longest: int) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    intermediate = int(getattr(text, "intermediate_size", 0) or 0) or 4 * hidden
    heads = int(getattr(text, "num_attention_heads", 0) or 0) or 1
    routed = int(getattr(text, "num_experts_per_tok", 0) or 0) or 1
    width = {"float32": 4, "float64": 8}.get(dtype, 2)
    return width * (10 * hidden + 4 * intermediate * routed) + 4 * heads * longest


def free_memory_bytes(loaded: LoadedModel) -> int:
    import torch

    if loaded.device == "cuda":
        devices = {p.device for p in loaded.model.parameters() if p.device.type == "cuda"}
        return min(torch.cuda.mem_get_info(d)[0] for d in devices) // 2
    return available_ram_bytes() // 4
