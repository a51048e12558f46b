"""Mixture-of-experts sites: per-expert MLP units and the router's choices, from fused experts.

In transformers 5 the experts of a layer are one module holding 3-D parameters (`gate_up_proj`
[E, 2I, H], or [E, H, 2I] when transposed, gpt-oss's with gate and up interleaved; `down_proj`),
so hooks on Linear layers never see an expert's units. Here a neuron of an MoE layer is
(expert e, unit u), stored in column e*I + u: the input of expert e's down projection, computed
from the module's own weights and its own gate function (`_apply_gate`), so it is exactly what
the model feeds the down projection. It exists only for the tokens routed to e; elsewhere it is
NaN, so that a statistic over a column counts only the routed tokens (their number is the count
of non-NaN entries).

Everything is read from what a forward pre-hook on the experts module receives: the flattened
hidden states [tokens, H], the chosen experts `top_k_index` [tokens, k] and the weights the
experts' outputs are multiplied by, `top_k_weights` [tokens, k]. Register it with
`register_forward_pre_hook(hook, with_kwargs=True)` and pass its (args, kwargs) to
`units_from_hook` / `router_from_hook`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from lazarus.engine.configs import first_config_int, text_config
from lazarus.errors import LazarusError

# Names of the router module next to the experts, per family: gpt-oss, Mixtral / Qwen3-MoE / most.
_ROUTER_NAMES = ("router", "gate")
# The flags `transformers.integrations.moe.use_experts_implementation` sets on an experts module;
# together with `_apply_gate` they say how its 3-D weights are laid out and used.
_LAYOUT_FLAGS = ("is_transposed", "has_bias", "has_gate")


@dataclass(frozen=True)
class MoeParts:
    """The fused experts of one decoder block, their router, and the layout of their weights."""

    experts: Any  # the experts module (3-D parameters); hook it with a forward pre-hook
    router: Any | None  # the module that picks the experts (None if it has an unknown name)
    num_experts: int  # E
    units: int  # I: units per expert (width of each expert's down projection input)
    top_k: int  # experts per token (0 when the model does not say)
    transposed: bool  # weights stored [E, in, out] (x @ W) instead of [E, out, in] (x @ W.T)
    has_bias: bool  # *_proj_bias parameters [E, out]
    has_gate: bool  # gate_up_proj through `_apply_gate`; else up_proj through `act_fn`

    @property
    def width(self) -> int:
        """Columns of the unit matrix: E * I."""
        return self.num_experts * self.units

    def column(self, expert: int, unit: int) -> int:
        return expert * self.units + unit

    def expert_unit(self, column: int) -> tuple[int, int]:
        return divmod(column, self.units)


def find_moe(block: Any) -> MoeParts | None:
    """The fused experts of a decoder block and their router; None for a dense block.

    Detected by what the experts module holds (3-D `down_proj`, and `gate_up_proj` or `up_proj`)
    and the layout flags transformers' `use_experts_implementation` puts on it, not by class
    name, so any model built on that decorator works. Experts in another layout are refused.
    """
    for name, module in block.named_modules():
        if _is_fused(module):
            return _parts(block, name, module)
    for name, module in block.named_modules():
        if name.rsplit(".", 1)[-1] == "experts":
            raise LazarusError(f"{type(module).__name__} in {type(block).__name__} holds experts "
                               "in a layout lazarus does not know (only transformers' fused "
                               "experts are supported; use the residual site)")
    return None


def _is_fused(module: Any) -> bool:
    down = getattr(module, "down_proj", None)
    up = getattr(module, "gate_up_proj", getattr(module, "up_proj", None))
    return _is_3d(down) and _is_3d(up)


def _is_3d(value: Any) -> bool:
    return getattr(value, "ndim", None) == 3 and not callable(value)


def _parts(block: Any, name: str, experts: Any) -> MoeParts:
    missing = [flag for flag in _LAYOUT_FLAGS if not hasattr(experts, flag)]
    if missing:
        raise LazarusError(f"{type(experts).__name__} stores fused experts without transformers' "
                           f"layout flags ({', '.join(missing)}), so lazarus cannot tell how its "
                           "weights are used (use the residual site)")
    parent = block.get_submodule(name.rsplit(".", 1)[0]) if "." in name else block
    router = next((getattr(parent, n) for n in _ROUTER_NAMES if hasattr(parent, n)), None)
    down = experts.down_proj  # [E, I, H] if transposed, else [E, H, I]
    transposed = bool(experts.is_transposed)
    units = down.shape[1] if transposed else down.shape[2]
    return MoeParts(
        experts=experts,
        router=router,
        num_experts=int(down.shape[0]),
        units=int(units),
        top_k=_top_k(experts, parent, router),
        transposed=transposed,
        has_bias=bool(experts.has_bias),
        has_gate=bool(experts.has_gate),
    )


def _top_k(experts: Any, parent: Any, router: Any) -> int:
    for owner in (router, parent, experts):
        value = getattr(owner, "top_k", None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(getattr(experts, "config", None), "num_experts_per_tok", None)
    if isinstance(value, int) and value > 0:
        return value
    return 0  # unknown; nothing lazarus reads depends on it


def hook_inputs(parts: MoeParts, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """(hidden_states, top_k_index, top_k_weights) from a pre-hook's (args, kwargs).

    Families name the last two differently (gpt-oss: router_indices, routing_weights) and may
    pass them by keyword, so they are taken by position in the forward's own signature.
    """
    named = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    try:
        bound = inspect.signature(parts.experts.forward).bind(*args, **kwargs)
        values = [bound.arguments[p.name] for p in bound.signature.parameters.values()
                  if p.kind in named and p.name in bound.arguments]
    except (TypeError, ValueError):  # a signature that cannot be read or bound
        values = []
    values = values if len(values) >= 3 else list(args)
    if len(values) < 3:
        raise LazarusError(f"{type(parts.experts).__name__} was called without the routing "
                           "(expected hidden states, expert indices and weights)")
    return values[0], values[1], values[2]


def expert_units(
    parts: MoeParts,
    hidden_states: Any,
    top_k_index: Any,
    tokens: Any | None = None,
) -> Any:
    """Unit values [tokens, E*I] float32: column e*I + u is unit u of expert e; NaN unless routed.

    Computed per expert over the tokens routed to it (as the model's own loop does), in the
    weights' dtype, then cast to float32 on the hidden states' device. `tokens` (an index into
    the flattened tokens, row-major: row * sequence length + position, e.g. each row's last real
    token) keeps only those rows, so only they cost E*I floats.
    """
    import torch

    x = hidden_states.reshape(-1, hidden_states.shape[-1])  # [tokens, H]
    index = top_k_index.reshape(x.shape[0], -1)  # [tokens, k]
    if tokens is not None:
        x, index = x[tokens], index[tokens]
    out = torch.full((x.shape[0], parts.num_experts, parts.units), float("nan"),
                     dtype=torch.float32, device=x.device)
    with torch.no_grad():
        for expert in torch.unique(index).tolist():
            if not 0 <= expert < parts.num_experts:  # sentinels of masked or remote experts
                continue
            rows = (index == expert).any(dim=-1).nonzero().squeeze(-1)
            out[rows, expert] = _units_of(parts, expert, x[rows]).to(out.device, torch.float32)
    return out.reshape(x.shape[0], parts.width)  # [tokens, E*I]


def _units_of(parts: MoeParts, expert: int, x: Any) -> Any:
    """The input of one expert's down projection for the rows x [n, H]: its [n, I] units."""
    experts = parts.experts
    name = "gate_up_proj" if parts.has_gate else "up_proj"
    weight = getattr(experts, name)[expert]  # [in, out] if transposed, else [out, in]
    x = x.to(weight.device, weight.dtype)
    projected = x @ weight if parts.transposed else x @ weight.T  # [n, 2I] or [n, I]
    if parts.has_bias:
        projected = projected + getattr(experts, f"{name}_bias")[expert]
    return experts._apply_gate(projected) if parts.has_gate else experts.act_fn(projected)


def router_weights(parts: MoeParts, top_k_index: Any, top_k_weights: Any) -> Any:
    """Routing weights [tokens, E] float32: what each expert's output is multiplied by; 0 where
    the token was not routed to the expert."""
    import torch

    index = top_k_index.reshape(-1, top_k_index.shape[-1])  # [tokens, k]
    weights = top_k_weights.reshape(index.shape).to(torch.float32)
    valid = (index >= 0) & (index < parts.num_experts)
    out = torch.zeros((index.shape[0], parts.num_experts + 1), dtype=torch.float32,
                      device=index.device)
    slot = torch.where(valid, index, parts.num_experts).long()  # sentinels: a spare column
    out.scatter_(1, slot, weights.to(out.device))
    return out[:, : parts.num_experts]


def routed_mask(parts: MoeParts, top_k_index: Any) -> Any:
    """[tokens, E] bool: True where the token was routed to the expert."""
    import torch

    index = top_k_index.reshape(-1, top_k_index.shape[-1])  # [tokens, k]
    experts = torch.arange(parts.num_experts, device=index.device)
    return (index[:, :, None] == experts).any(dim=1)


def units_from_hook(parts: MoeParts, args: tuple[Any, ...], kwargs: dict[str, Any],
                    tokens: Any | None = None) -> Any:
    """`expert_units` from a forward pre-hook's (args, kwargs) on the experts module."""
    hidden_states, top_k_index, _ = hook_inputs(parts, args, kwargs)
    return expert_units(parts, hidden_states, top_k_index, tokens)


def router_from_hook(parts: MoeParts, args: tuple[Any, ...], kwargs: dict[str, Any],
                     tokens: Any | None = None) -> Any:
    """`router_weights` from a forward pre-hook's (args, kwargs) on the experts module."""
    _, top_k_index, top_k_weights = hook_inputs(parts, args, kwargs)
    weights = router_weights(parts, top_k_index, top_k_weights)
    return weights if tokens is None else weights[tokens]


def edited_output(parts: MoeParts, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  output: Any, change: Any, watched: bool = False) -> Any:
    """The experts module's output [tokens, H] as if its units (`mlp_post`) or routing weights
    (`router`) had been `change(values)`, both [tokens, width] float32.

    The module's output is sum over experts e of weight[t, e] * (down_e(units[t, e]) + bias_e),
    linear in the units and in the weights, so the edit is added as a correction:
    units: sum over routed e of weight[t, e] * down_e(new - old) (unrouted units stay unrouted:
    they are never computed); router: sum over e of (new - old)[t, e] * expert_e(x[t]), which
    also covers an expert the token was not routed to (its output is computed for that token).
    With `watched`, every routed row is corrected, even by zero, so that the output's gradient
    reaches the changed values.
    """
    import torch

    hidden_states, top_k_index, top_k_weights = hook_inputs(parts, args, kwargs)
    x = hidden_states.reshape(-1, hidden_states.shape[-1])  # [tokens, H]
    weights = router_weights(parts, top_k_index, top_k_weights)  # [tokens, E]
    old = expert_units(parts, x, top_k_index) if name == "mlp_post" else weights
    new = change(old.clone())
    delta = torch.where(torch.isfinite(old) & torch.isfinite(new), new - old, 0.0)
    correction = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for expert in range(parts.num_experts):
        if name == "mlp_post":
            part = delta[:, expert * parts.units:(expert + 1) * parts.units]  # [tokens, I]
            moved_rows = torch.isfinite(old[:, expert * parts.units]) if watched else (
                part.abs().sum(dim=-1) != 0)
            rows = moved_rows.nonzero().squeeze(-1)
            if rows.numel():
                moved = _down(parts, expert, part[rows], bias=False)  # [n, H]
                correction[rows] += weights[rows, expert, None] * moved.to(torch.float32)
        else:
            rows = (torch.ones_like(delta[:, expert], dtype=torch.bool) if watched
                    else delta[:, expert] != 0).nonzero().squeeze(-1)
            if rows.numel():
                out = _down(parts, expert, _units_of(parts, expert, x[rows]), bias=True)
                correction[rows] += delta[rows, expert, None] * out.to(torch.float32)
    return output + correction.reshape(output.shape).to(output.dtype)


def _down(parts: MoeParts, expert: int, units: Any, bias: bool) -> Any:
    """Expert `expert`'s down projection of units [n, I] -> [n, H] (with its bias, if asked)."""
    weight = parts.experts.down_proj[expert]  # [I, H] if transposed, else [H, I]
    units = units.to(weight.device, weight.dtype)
    out = units @ weight if parts.transposed else units @ weight.T
    if bias and parts.has_bias:
        out = out + parts.experts.down_proj_bias[expert]
    return out


def moe_shape(config: dict) -> tuple[int, int] | None:
    """(experts, units per expert) that a config.json describes, or None for a dense model;
    read without torch (the cache and the reports need it before any model loads). Units
    stored per layer (`configs.config_int`) give the largest."""
    text = text_config(config)
    experts = first_config_int(text, "num_local_experts", "num_experts", "n_routed_experts")
    if experts is None:
        return None
    units = first_config_int(text, "moe_intermediate_size", "intermediate_size")
    return None if units is None else (experts, units)
