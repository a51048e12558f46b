"""The hooks: a `with` block (`Trace`) that reads and edits activation sites during the model's
own forward, and stops it after the deepest layer needed.

Each reading hook gathers the asked-for token position of every row at once
(`positions.gather`), keeps only the asked-for columns, and hands the values to a callback
before the next block runs, so no layer's tensor outlives its hook. The hook on the deepest
layer ends the forward by raising `StopForward`: later blocks, the final norm and the LM head
never run. Editing hooks (`interventions`) return the edited output for the forward to go on
with. The batch loop that drives the forward is `capture.run_batches`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lazarus.engine.interventions import Edit, apply_edits, replace_input, replace_output
from lazarus.engine.loading import LoadedModel
from lazarus.engine.positions import Position, gather, token_index
from lazarus.engine.sites import RESIDUAL_WIDTH, check_site, locate, neuron_out_of_range
from lazarus.errors import LazarusError


class StopForward(Exception):
    """Raised by the deepest hook: the forward has produced everything that is needed."""


@dataclass(frozen=True)
class CaptureRequest:
    """What to read: layers (0-based, resolved), a site (`sites.SITES`), a token position
    (`positions`), and optionally only some columns of the site (None: its full width)."""

    layers: tuple[int, ...]
    site: str = "resid_post"
    position: Position = "last"
    columns: tuple[int, ...] | None = None
    raw: bool = False  # a grouped site (heads): its raw columns, not one value per unit


Watcher = Callable[[int, str, Any], None]  # (layer, site, live raw values [batch, tokens, width])


class Trace:
    """A `with` block that hooks every (layer, site) of a request, of any `edits`, and of any
    `watch`: a watcher gets the live tensor the forward goes on with (after the edits), to
    keep it or to register a gradient hook on it (`gradients`). Each
    reading hook hands the batch's gathered values to `on_kept(layer, values)` at once, so no
    layer's tensor outlives its hook, and notes the layer in `reached`; the deepest one stops
    the forward. An editing hook returns the edited output (or input, for sites read as a
    module's input) for the forward to go on with (`interventions.apply_edits`); a hook that
    both edits and reads keeps the edited values. With edits, set `rows` and `positions`
    before each forward. Hooks are removed on exit, whatever happened."""

    def __init__(self, loaded: LoadedModel, request: CaptureRequest | None,
                 on_kept: Callable[[int, Any], None] | None = None,
                 edits: Sequence[Edit] = (), watch: Sequence[tuple[int, str]] = (),
                 on_watch: Watcher | None = None) -> None:
        if request is not None:
            check_site(request.site)
        self.loaded = loaded
        self.request = request
        self.on_kept = on_kept
        self.edits = tuple(edits)
        self.watch = tuple(watch)
        self.on_watch = on_watch
        self.lengths: Any = None  # [batch] real tokens per row, set before each forward
        self.rows: Any = None  # [batch] each row's prompt index (edits with per-prompt values)
        self.positions: Any = None  # [batch, tokens] each token's index within its prompt
        self.reached: set[int] = set()  # layers whose hook ran in this forward
        self.widths: dict[int, int] = {}  # the site's full width per layer, once seen
        self._handles: list[Any] = []

    def __enter__(self) -> Trace:
        reads = [] if self.request is None else [(n, self.request.site)
                                                 for n in self.request.layers]
        keys = dict.fromkeys([*reads, *((e.layer, e.site) for e in self.edits), *self.watch])
        try:
            for layer, name in keys:
                site = locate(self.loaded.model, self.loaded.blocks_loaded, layer, name)
                edits = tuple(e for e in self.edits if (e.layer, e.site) == (layer, name))
                watched = (layer, name) in self.watch
                if (edits or watched) and site.flat:  # computed values: the output is corrected
                    if (layer, name) in reads:
                        raise LazarusError(f"the {name} site of layer {layer} cannot be read and "
                                           "edited in one pass (read it in a pass of its own)")
                    hook = self._flat_edit(layer, name, site, edits, watched)
                    handle = site.module.register_forward_hook(hook, with_kwargs=True)
                    self._handles.append(handle)
                    continue
                hook = self._hook(layer, name, site, (layer, name) in reads, edits, watched)
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

    def _flat_edit(self, layer: int, name: str, site: Any, edits: tuple[Edit, ...],
                   watched: bool) -> Callable[..., Any]:
        """A forward hook on a flat (MoE) site: its output as if its values had been edited
        (and, when watched, computed from the values the watcher sees, so that gradients reach
        them)."""

        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            batch, tokens = self.positions.shape

            def change(values: Any) -> Any:  # [batch * tokens, width]
                shaped = values.reshape(batch, tokens, values.shape[-1])
                if edits:
                    shaped = apply_edits(shaped, edits, self.rows, self.positions, site.group)
                if watched:
                    self.on_watch(layer, name, shaped)
                return shaped.reshape(values.shape)

            return site.edit(args, kwargs, output, change, watched)

        return hook

    def _hook(self, layer: int, name: str, site: Any, read: bool, edits: tuple[Edit, ...],
              watched: bool) -> Callable[..., Any]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any = None) -> Any:
            replaced = None
            if edits:
                value = site.extract(args, kwargs, output)  # [batch, tokens, width]
                new = apply_edits(value, edits, self.rows, self.positions, site.group)
                if site.reads_input:
                    replaced = args, kwargs = replace_input(args, kwargs, new)
                else:
                    replaced = output = replace_output(output, new)
            if watched:
                self.on_watch(layer, name, site.extract(args, kwargs, output))
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
        # A grouped site's units (heads), per token before any mean: [..., units * group] ->
        # [..., units]; its raw columns when asked.
        summarise = site.summarise if site.summarise is not None and not request.raw else (
            lambda value: value)
        if flat is not None:  # only the kept tokens are computed: [batch, width]
            kept = summarise(site.extract(args, kwargs, output,
                                          tokens=flat.to(_device(args, kwargs))))
        else:
            value = site.extract(args, kwargs, output)
            if site.flat:  # [batch * tokens, width]: MoE modules see tokens flat
                value = value.reshape(batch, tokens, value.shape[-1])
            self._check_shape(layer, value, (batch, tokens))
            kept = gather(summarise(value), self.lengths, request.position,
                          skip_missing=site.flat)
        self.widths[layer] = int(kept.shape[-1])
        if columns is not None:
            if max(columns) >= kept.shape[-1]:
                raise neuron_out_of_range(max(columns), int(kept.shape[-1]), request.site, layer)
            kept = kept[..., list(columns)]
        self.on_kept(layer, kept)
        self.reached.add(layer)
        if layer == max(request.layers):
            raise StopForward

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
