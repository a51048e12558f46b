"""The one capture engine: run the model's own forward with hooks, keep only what was asked for.

Prompts are tokenized one by one (the tokenizer's default special tokens, no chat template),
sorted by length and batched so that little padding is computed; each batch is right-padded with
an attention mask, so every real token sees exactly what it would see alone. Hooks read the
asked-for sites, gather the last real token of each row (index = mask.sum(-1) - 1) and move it
to float32 numpy at once. A hook on the deepest asked-for layer ends the forward by raising
`_StopForward`: later blocks, the final norm and the LM head never run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus.errors import LazarusError
from lazarus.loading import LoadedModel
from lazarus.sites import locate

Progress = Callable[[int, int], None]  # (prompts done, prompts total)

DEFAULT_TOKEN_BUDGET = 8192  # padded tokens per forward pass
MAX_BATCH = 64


class _StopForward(Exception):
    """Raised by the deepest hook: the forward has produced everything that is needed."""


@dataclass(frozen=True)
class CaptureRequest:
    layers: tuple[int, ...]  # 0-based, already resolved (non-negative)
    site: str = "residual"


def tokenize(loaded: LoadedModel, prompts: Sequence[str]) -> list[list[int]]:
    ids = [list(loaded.tokenizer(prompt)["input_ids"]) for prompt in prompts]
    for prompt, row in zip(prompts, ids, strict=True):
        if not row:
            raise LazarusError(f"prompt {prompt!r} tokenizes to nothing (give it some text)")
    return ids


def plan_batches(lengths: Sequence[int], token_budget: int, max_batch: int) -> list[list[int]]:
    """Prompt indices grouped by similar length: each batch's padded size stays in budget."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = max(lengths[index], *(lengths[i] for i in current)) if current else lengths[index]
        if current and (len(current) >= max_batch or longest * (len(current) + 1) > token_budget):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


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
            site = locate(loaded.model, loaded.info.layer_count, layer, request.site)
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
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    max_batch: int = MAX_BATCH,
    progress: Progress | None = None,
) -> dict[int, np.ndarray]:
    """Last-token activations per asked-for layer: {layer: float32 array [prompts, width]}."""
    import torch

    if not request.layers:
        raise ValueError("capture needs at least one layer")
    token_ids = tokenize(loaded, prompts)
    lengths = [len(row) for row in token_ids]
    pad_id = pad_id_of(loaded.tokenizer)
    input_device = loaded.model.get_input_embeddings().weight.device
    results: dict[int, np.ndarray] = {}
    sink: dict[int, Any] = {}
    done = 0

    with torch.inference_mode(), _hooks(loaded, request, sink):
        for batch in plan_batches(lengths, token_budget, max_batch):
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
            missing = [layer for layer in request.layers if layer not in sink]
            if missing:
                raise RuntimeError(f"the forward pass never reached layer(s) {missing}")
            rows = torch.arange(len(batch))
            for layer in request.layers:
                hidden = sink[layer]  # [batch, tokens, width]
                gathered = hidden[rows.to(hidden.device), last.to(hidden.device)]
                values = gathered.float().cpu().numpy()  # [batch, width]
                if layer not in results:
                    results[layer] = np.empty((len(prompts), values.shape[1]), np.float32)
                results[layer][batch] = values
            sink.clear()
            done += len(batch)
            if progress is not None:
                progress(done, len(prompts))
    return results
