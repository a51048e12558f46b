"""The one capture engine: run the model's own forward with hooks, keep only what was asked for.

Prompts are tokenized one by one (the tokenizer's default special tokens, no chat template),
sorted by length and batched so that little or no padding is computed (`budget.plan_batches`),
within a budget of tokens per forward chosen from the free memory (`budget.batch_limits`); a
batch that runs out of memory is halved and retried. Each batch is right-padded with an
attention mask, so every real token sees exactly what it would see alone.

`Trace` owns the hooks: one per asked-for (layer, site). Each hook gathers the asked-for token
position of every row at once (`positions.gather`), keeps only the asked-for columns, and hands
the values to numpy before the next block runs, so what is held while the forward goes on is
the rows themselves (for `--position all`, every token's; counted in the batch budget, as are
the MoE units computed for `all` and `mean`). The hook on the deepest layer ends the forward by
raising `_StopForward`: later blocks, the final norm and the LM head never run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus.budget import BATCH_OVERHEAD_TOKENS, limits_for, plan_batches
from lazarus.configs import text_config
from lazarus.errors import LazarusError
from lazarus.interventions import Edit, apply_edits, replace_input, replace_output
from lazarus.loading import LoadedModel
from lazarus.positions import Position, check_lengths, gather, token_index
from lazarus.sites import RESIDUAL_WIDTH, check_site, locate, neuron_out_of_range

Progress = Callable[[int, int], None]  # (prompts done, prompts total)
Rows = Any  # per layer: float32 [prompts, width], or for position "all" a list of [tokens, width]
RowsSink = Callable[[list[int], dict[int, Rows]], None]  # (prompt indices, rows per layer)


class _StopForward(Exception):
    """Raised by the deepest hook: the forward has produced everything that is needed."""


@dataclass(frozen=True)
class CaptureRequest:
    """What to read: layers (0-based, resolved), a site (`sites.SITES`), a token position
    (`positions`), and optionally only some columns of the site (None: its full width)."""

    layers: tuple[int, ...]
    site: str = "resid_post"
    position: Position = "last"
    columns: tuple[int, ...] | None = None


class Trace:
    """A `with` block that hooks every (layer, site) of a request, and of any `edits`. Each
    reading hook hands the batch's gathered values to `on_kept(layer, values)` at once, so no
    layer's tensor outlives its hook, and notes the layer in `reached`; the deepest one stops
    the forward. An editing hook returns the edited output (or input, for sites read as a
    module's input) for the forward to go on with (`interventions.apply_edits`); a hook that
    both edits and reads keeps the edited values. With edits, set `rows` and `positions`
    before each forward. Hooks are removed on exit, whatever happened."""

    def __init__(self, loaded: LoadedModel, request: CaptureRequest | None,
                 on_kept: Callable[[int, Any], None] | None = None,
                 edits: Sequence[Edit] = ()) -> None:
        if request is not None:
            check_site(request.site)
        self.loaded = loaded
        self.request = request
        self.on_kept = on_kept
        self.edits = tuple(edits)
        self.lengths: Any = None  # [batch] real tokens per row, set before each forward
        self.rows: Any = None  # [batch] each row's prompt index (edits with per-prompt values)
        self.positions: Any = None  # [batch, tokens] each token's index within its prompt
        self.reached: set[int] = set()  # layers whose hook ran in this forward
        self.widths: dict[int, int] = {}  # the site's full width per layer, once seen
        self._handles: list[Any] = []

    def __enter__(self) -> Trace:
        reads = [] if self.request is None else [(n, self.request.site)
                                                 for n in self.request.layers]
        keys = dict.fromkeys([*reads, *((e.layer, e.site) for e in self.edits)])
        try:
            for layer, name in keys:
                site = locate(self.loaded.model, self.loaded.blocks_loaded, layer, name)
                edits = tuple(e for e in self.edits if (e.layer, e.site) == (layer, name))
                if edits and site.flat:  # computed values: the output is corrected instead
                    if (layer, name) in reads:
                        raise LazarusError(f"the {name} site of layer {layer} cannot be read and "
                                           "edited in one pass (read it in a pass of its own)")
                    handle = site.module.register_forward_hook(self._flat_edit(site, edits),
                                                               with_kwargs=True)
                    self._handles.append(handle)
                    continue
                hook = self._hook(layer, site, (layer, name) in reads, edits)
                if site.reads_input:
                    handle = site.module.register_forward_pre_hook(hook, with_kwargs=True)
                else:
                    handle = site.module.register_forward_hook(hook, with_kwargs=True)
                self._handles.append(handle)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.reached.clear()

    def _flat_edit(self, site: Any, edits: tuple[Edit, ...]) -> Callable[..., Any]:
        """A forward hook on a flat (MoE) site: its output as if its values had been edited."""

        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            batch, tokens = self.positions.shape

            def change(values: Any) -> Any:  # [batch * tokens, width]
                shaped = values.reshape(batch, tokens, values.shape[-1])
                edited = apply_edits(shaped, edits, self.rows, self.positions)
                return edited.reshape(values.shape)

            return site.edit(args, kwargs, output, change)

        return hook

    def _hook(self, layer: int, site: Any, read: bool,
              edits: tuple[Edit, ...]) -> Callable[..., Any]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any = None) -> Any:
            replaced = None
            if edits:
                value = site.extract(args, kwargs, output)  # [batch, tokens, width]
                new = apply_edits(value, edits, self.rows, self.positions)
                if site.reads_input:
                    replaced = args, kwargs = replace_input(args, kwargs, new)
                else:
                    replaced = output = replace_output(output, new)
            if read:
                self._read(layer, site, args, kwargs, output)
            return replaced

        return hook

    def _read(self, layer: int, site: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
              output: Any) -> None:
        request = self.request
        assert request is not None and self.on_kept is not None
        columns = request.columns
        batch, tokens = self.lengths.shape[0], int(self.lengths.max())
        flat = token_index(self.lengths, tokens, request.position) if site.flat else None
        if flat is not None:  # only the kept tokens are computed: [batch, width]
            kept = site.extract(args, kwargs, output, tokens=flat.to(_device(args, kwargs)))
        else:
            value = site.extract(args, kwargs, output)
            if site.flat:  # [batch * tokens, width]: MoE modules see tokens flat
                value = value.reshape(batch, tokens, value.shape[-1])
            self._check_shape(layer, value, (batch, tokens))
            kept = gather(value, self.lengths, request.position, skip_missing=site.flat)
        self.widths[layer] = int(kept.shape[-1])
        if columns is not None:
            if max(columns) >= kept.shape[-1]:
                raise neuron_out_of_range(max(columns), int(kept.shape[-1]), request.site, layer)
            kept = kept[..., list(columns)]
        self.on_kept(layer, kept)
        self.reached.add(layer)
        if layer == max(request.layers):
            raise _StopForward

    def _check_shape(self, layer: int, value: Any, batch_shape: tuple[int, int]) -> None:
        """Refuse a site that is not one vector per token (Gemma 3n's blocks, for one, output
        four parallel streams): there is no single row to read, and a guess would be silently
        wrong. A residual-stream site must also be as wide as the config's hidden size."""
        info = self.loaded.info
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != 3 or shape[:2] != batch_shape:
            raise LazarusError(
                f"the {self.request.site} site of layer {layer} of this {info.model_type} model "
                f"is a tensor of shape {list(shape)}, not one vector per token of the "
                f"{list(batch_shape)} batch (this architecture is not supported)")
        if self.request.site in RESIDUAL_WIDTH and shape[2] != info.hidden_size:
            raise LazarusError(
                f"the residual stream of this {info.model_type} model is {shape[2]} wide but its "
                f"config says {info.hidden_size} (several parallel streams?); this architecture "
                "is not supported")


def _device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    first = args[0] if args else next(iter(kwargs.values()))
    return first.device


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
    text = text_config(config)
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(text.get(key), int) and text[key] > 0:
            return int(text[key])
    return None


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
    the device's free memory allows. A batch that runs out of memory is split in half and
    retried, and the limits are halved for the batches after it. `on_rows(indices, rows)` is
    called after every batch with the prompts' indices and their rows per layer. `widths`, if
    given, receives each layer's full site width (useful when only some columns are kept).
    """
    import torch

    if not request.layers:
        raise ValueError("capture needs at least one layer")
    deepest = max(request.layers)
    if deepest >= loaded.blocks_loaded:
        raise ValueError(f"layer {deepest} is beyond the {loaded.blocks_loaded} loaded blocks")
    every = request.position == "all"
    if not prompts:
        return {layer: [] if every else np.empty((0, 0), np.float32) for layer in request.layers}
    token_ids = tokenize(loaded, prompts)
    lengths = [len(row) for row in token_ids]
    check_lengths(request.position, lengths, list(prompts))
    token_budget, max_batch = limits_for(loaded, max(lengths, default=1), request,
                                         token_budget, max_batch)
    overhead = BATCH_OVERHEAD_TOKENS[loaded.device == "cpu"]
    pad_id = pad_id_of(loaded.tokenizer)
    input_device = loaded.model.get_input_embeddings().weight.device
    results: dict[int, Any] = {layer: [None] * len(prompts) if every else None
                               for layer in request.layers}
    done = 0
    queue = deque(plan_batches(lengths, token_budget, max_batch, overhead))

    batch: list[int] = []
    batch_rows: dict[int, Rows] = {}

    def store(layer: int, kept: Any) -> None:
        """Copy a layer's values out of torch as soon as its hook has gathered them."""
        values = kept.cpu().numpy()  # float32 [batch, (tokens,) width]
        if every:
            rows = [values[row, : lengths[index]].copy() for row, index in enumerate(batch)]
            for index, value in zip(batch, rows, strict=True):
                results[layer][index] = value
        else:
            if results[layer] is None:
                results[layer] = np.empty((len(prompts), values.shape[1]), np.float32)
            results[layer][batch] = values
            rows = results[layer][batch]
        batch_rows[layer] = rows

    with torch.inference_mode(), Trace(loaded, request, on_kept=store) as trace:
        while queue:
            batch = queue.popleft()
            batch_rows.clear()
            width = max(lengths[i] for i in batch)
            input_ids, mask = pad_batch([token_ids[i] for i in batch], pad_id)
            trace.lengths = mask.sum(dim=-1)  # [batch]
            trace.reached.clear()
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
            missing = [layer for layer in request.layers if layer not in trace.reached]
            if missing:
                raise RuntimeError(f"the forward pass never reached layer(s) {missing}")
            if widths is not None:
                widths.update(trace.widths)
            if on_rows is not None:
                on_rows(batch, batch_rows)
            done += len(batch)
            if progress is not None:
                progress(done, len(prompts))
    return results


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
