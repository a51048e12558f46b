"""The one capture engine: run the model's own forward in batches, with hooks, and keep only
what was asked for.

Prompts are tokenized one by one (the tokenizer's default special tokens, no chat template),
sorted by length and batched so that little or no padding is computed (`budget.plan_batches`),
within a budget of tokens per forward chosen from the free memory (`budget.limits_for`). Each
batch is right-padded with an attention mask, so every real token sees exactly what it would
see alone. `run_batches` is the one batch loop, for every reader: it hooks the request's sites
(`trace.Trace`), hands each batch's values to a callback as the hook gathers them, and, when a
batch runs out of memory, halves the limits and plans the rest again. `capture` keeps the rows
(to numpy at once, so what is held while the forward goes on is the rows themselves; for
`--position all` every token's, counted in the batch budget); the corpus scan reduces them on
the device instead (`scan`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lazarus.engine.budget import (
    BATCH_OVERHEAD_TOKENS,
    check_retry,
    limits_for,
    plan_batches,
    release_memory,
)
from lazarus.engine.configs import first_config_int, text_config
from lazarus.engine.loading import LoadedModel
from lazarus.engine.positions import check_lengths
from lazarus.engine.timeline import span
from lazarus.engine.trace import CaptureRequest, StopForward, Trace
from lazarus.errors import PromptError, upstream

__all__ = ["CaptureRequest", "capture", "capture_ids", "run_batches", "tokenize"]

Progress = Callable[[int, int], None]  # (prompts done, prompts total)
Rows = Any  # per layer: float32 [prompts, width], or for position "all" a list of [tokens, width]
RowsSink = Callable[[list[int], dict[int, Rows]], None]  # (prompt indices, rows per layer)
Kept = Callable[[list[int], int, Any], None]  # (batch's prompt indices, layer, values)


def tokenize(loaded: LoadedModel, prompts: Sequence[str]) -> list[list[int]]:
    with upstream(loaded.info.model_type, "tokenizing the prompts failed"):
        ids = [list(loaded.tokenizer(prompt)["input_ids"]) for prompt in prompts]
    limit = context_length(loaded.info.config)
    for prompt, row in zip(prompts, ids, strict=True):  # named by text: `prompts` may be a part
        if not row:
            raise PromptError(prompt, "tokenizes to nothing (give it some text)")
        if limit is not None and len(row) > limit:
            raise PromptError(prompt, f"has {len(row)} tokens but this model takes at most "
                              f"{limit} (shorten it)")
    return ids


def context_length(config: dict) -> int | None:
    """The longest input the model was built for; past it, positions are out of its range."""
    text = text_config(config)
    return first_config_int(text, "n_positions", "max_position_embeddings", "n_ctx")


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, left: bool = False) -> tuple[Any, Any]:
    """(input ids, attention mask), both long [rows, longest]: each row's tokens with padding
    after them (before them with `left`, so that every row ends at the same column)."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        place = slice(width - len(row), width) if left else slice(0, len(row))
        ids[index, place] = torch.tensor(list(row), dtype=torch.long)
        mask[index, place] = 1
    return ids, mask


def pad_id_of(tokenizer: Any) -> int:
    """Any valid id will do: padded positions are masked and come after every real token."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def run_batches(
    loaded: LoadedModel,
    token_ids: Sequence[Sequence[int]],
    request: CaptureRequest,
    on_kept: Kept,
    token_budget: int | None = None,
    max_batch: int | None = None,
    after_batch: Callable[[list[int]], None] | None = None,
    notify: Callable[[str], None] | None = None,
    unit: str = "prompt",
    too_long: str = "use shorter prompts, --dtype bfloat16, or --device-map auto to spread "
                    "the model",
) -> dict[int, int]:
    """Run every row of `token_ids` to the request's deepest layer, in batches; returns each
    layer's full site width.

    `on_kept(batch, layer, values)` gets, inside the hook, the gathered torch values of one
    layer for the rows `batch` (prompt indices, ascending; the tensor's rows in that order):
    [rows, (tokens,) columns] on the model's device. `after_batch(batch)` follows each batch
    that ran whole. A batch that runs out of memory is dropped before `after_batch`, the
    limits are halved, and it runs again with the rest (`too_long` is the advice when one row,
    a `unit`, alone does not fit), so a callback must only commit in `after_batch`.
    """
    import torch

    deepest = max(request.layers)
    if deepest >= loaded.blocks_loaded:
        raise ValueError(f"layer {deepest} is beyond the {loaded.blocks_loaded} loaded blocks")
    lengths = [len(row) for row in token_ids]
    token_budget, max_batch = limits_for(loaded, max(lengths, default=1), request,
                                         token_budget, max_batch)
    overhead = BATCH_OVERHEAD_TOKENS[loaded.device == "cpu"]
    pad_id = pad_id_of(loaded.tokenizer)
    input_device = loaded.model.get_input_embeddings().weight.device
    queue = deque(plan_batches(lengths, token_budget, max_batch, overhead))
    batch: list[int] = []
    widths: dict[int, int] = {}

    def kept(layer: int, values: Any) -> None:
        on_kept(batch, layer, values)

    with torch.inference_mode(), Trace(loaded, request, on_kept=kept) as trace, span("forward"):
        while queue:
            batch = sorted(queue.popleft())
            width = max(lengths[i] for i in batch)
            input_ids, mask = pad_batch([token_ids[i] for i in batch], pad_id)
            trace.lengths = mask.sum(dim=-1)  # [batch]
            trace.reached.clear()
            fits = True
            try:
                with upstream(loaded.info.model_type, "the forward pass failed",
                              pass_out_of_memory=True):
                    loaded.model(input_ids=input_ids.to(input_device),
                                 attention_mask=mask.to(input_device), use_cache=False)
            except StopForward:
                pass
            except Exception as err:
                check_retry(err, len(batch), f"out of memory running one {unit} of {width} "
                                             f"tokens on {loaded.device} ({too_long})")
                fits = False
            if not fits:  # out of memory: the error (its traceback holds the tensors) is gone
                release_memory()
                max_batch = max(1, len(batch) // 2)
                token_budget = max(1, min(token_budget, width * len(batch)) // 2)
                if notify is not None:
                    notify(f"out of memory with {len(batch)} {unit}s in a batch; "
                           f"continuing with at most {max_batch}")
                remaining = [i for pending in (batch, *queue) for i in pending]
                replanned = plan_batches([lengths[i] for i in remaining], token_budget,
                                         max_batch, overhead)
                queue = deque([[remaining[i] for i in part] for part in replanned])
                continue
            missing = [layer for layer in request.layers if layer not in trace.reached]
            if missing:
                raise RuntimeError(f"the forward pass never reached layer(s) {missing}")
            widths.update(trace.widths)
            if after_batch is not None:
                after_batch(batch)
    return widths


def capture(
    loaded: LoadedModel,
    prompts: Sequence[str],
    request: CaptureRequest,
    token_budget: int | None = None,
    max_batch: int | None = None,
    progress: Progress | None = None,
    on_rows: RowsSink | None = None,
    notify: Callable[[str], None] | None = None,
    widths: dict[int, int] | None = None,
) -> dict[int, Rows]:
    """Values per asked-for layer at the request's site and position.

    {layer: float32 [prompts, width]}, or for position "all" {layer: [float32 [tokens, width]
    per prompt]}. `token_budget` (padded tokens per forward) and `max_batch` default to what
    the device's free memory allows (`run_batches`). `on_rows(indices, rows)` is called after
    every batch with the prompts' indices and their rows per layer. `widths`, if given,
    receives each layer's full site width (useful when only some columns are kept).
    """
    token_ids = tokenize(loaded, prompts) if prompts else []
    check_lengths(request.position, [len(row) for row in token_ids], list(prompts))
    return capture_ids(loaded, token_ids, request, token_budget, max_batch, progress, on_rows,
                       notify, widths)


def capture_ids(
    loaded: LoadedModel,
    token_ids: Sequence[Sequence[int]],
    request: CaptureRequest,
    token_budget: int | None = None,
    max_batch: int | None = None,
    progress: Progress | None = None,
    on_rows: RowsSink | None = None,
    notify: Callable[[str], None] | None = None,
    widths: dict[int, int] | None = None,
) -> dict[int, Rows]:
    """`capture` of rows already tokenized (each a prompt's token ids, checked by the caller:
    not empty, within the context, long enough for the request's position); what `patch` and
    `attribute` read, whose rows carry the answers' shared start after the prompt."""
    if not request.layers:
        raise ValueError("capture needs at least one layer")
    every = request.position == "all"
    if not token_ids:
        return {layer: [] if every else np.empty((0, 0), np.float32) for layer in request.layers}
    count = len(token_ids)
    lengths = [len(row) for row in token_ids]
    results: dict[int, Any] = {layer: [None] * count if every else None
                               for layer in request.layers}
    batch_rows: dict[int, Rows] = {}
    done = [0]

    def store(batch: list[int], layer: int, kept: Any) -> None:
        """Copy a layer's values out of torch as soon as its hook has gathered them."""
        values = kept.cpu().numpy()  # float32 [batch, (tokens,) width]
        if every:
            batch_rows[layer] = [values[row, : lengths[index]].copy()
                                 for row, index in enumerate(batch)]
        else:
            batch_rows[layer] = values

    def commit(batch: list[int]) -> None:
        for layer, rows in batch_rows.items():
            if every:
                for index, value in zip(batch, rows, strict=True):
                    results[layer][index] = value
            else:
                if results[layer] is None:
                    results[layer] = np.empty((count, rows.shape[1]), np.float32)
                results[layer][batch] = rows
        if on_rows is not None:
            on_rows(batch, dict(batch_rows))
        batch_rows.clear()
        done[0] += len(batch)
        if progress is not None:
            progress(done[0], count)

    found = run_batches(loaded, token_ids, request, store, token_budget, max_batch,
                        after_batch=commit, notify=notify)
    if widths is not None:
        widths.update(found)
    return results
