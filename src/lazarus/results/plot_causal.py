"""Pictures of the causal commands (`--plot FILE`, `.plot(path)`).

`ablate` (`ablation_figure`): per condition (all layers at once, or one per layer with a sweep)
a panel with each prompt's change (the drop in the answer's log-probability, or the next
token's KL) under the chosen units, a point, over the same prompt's changes under each random
draw of as many units (a strip of points, one per draw, and their box: quartiles, whiskers from
the lowest to the highest draw); the last column is the mean over prompts, the effect the
control's p compares with the draws' means.

`steer` (`steer_figure`): log-probabilities against the coefficient (0 = unsteered): per prompt,
the log-probability of coefficient 0's own continuation under each coefficient (teacher-forced,
summed over its tokens), and, with named tokens, each token's log-probability (the mean over
prompts, with each prompt's thinner). matplotlib is imported only when drawing.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

from lazarus.results import palette
from lazarus.results.plot_common import DPI, draw, figure_class, tick_text, ticks, title_text
from lazarus.text import plural

MAX_PANELS = 12  # conditions drawn (a sweep over more layers: the first ones, said so)
CONTROL = "0.55"  # the random draws: neutral grey, behind the chosen units' points
NAMED = 8  # prompts named in a legend; more are drawn, unnamed
WRAP = 90  # characters per line of a long title
DASHES = ("-", "--", ":", "-.")  # the prompts' line styles
# steer's lines: the palette's categories but its yellow, too faint for a thin line on white
LINES = tuple(c for c in palette.OKABE_ITO if c != "#f0e442")


def plot_ablation(result: Any, path: str, size: tuple[float, float] | None = None,
                  dpi: int = DPI) -> None:
    """Draw an `AblationResult` (see the module docstring) and write it to `path`."""
    draw(ablation_figure, result, path, size, dpi)


def change_name(result: Any) -> str:
    """What one prompt's change is, for the y axis."""
    if result.pairs:
        return "drop in the answer's log-probability (nats)"
    return "KL(baseline || ablated), next token (nats)"


def ablation_figure(result: Any, size: tuple[float, float] | None = None,
                    dpi: int = DPI) -> Any:
    """The matplotlib `Figure` of `plot_ablation` for an `AblationResult`."""
    conditions = result.conditions[:MAX_PANELS]
    changes = result.to_numpy()  # [conditions, prompts]
    columns = len(result.prompts) + 1
    if size is None:
        size = (min(max(3.0 + 0.6 * columns, 6.0), 16.0), 3.2 * len(conditions) + 0.8)
    figure = figure_class()(figsize=size, dpi=dpi, layout="constrained")
    for index, condition in enumerate(conditions):
        axes = figure.add_subplot(len(conditions), 1, index + 1)
        _condition_panel(axes, result, condition, changes[index])
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=1)
    what = (f"the {result.component} component" if result.component
            else f"{plural(len(result.neurons or ()), 'unit')} at {result.site}")
    controlled = any(c.control is not None and c.control.prompt_effects for c in conditions)
    title = (f"ablating {what} ({result.method}): each prompt"
             + (" against random units" if controlled else "'s change"))
    if len(result.conditions) > MAX_PANELS:
        title += f"\nthe first {MAX_PANELS} of {len(result.conditions)} conditions"
    figure.suptitle(title, fontsize=10)
    return figure


def _condition_panel(axes: Any, result: Any, condition: Any, chosen: np.ndarray) -> None:
    prompts = len(result.prompts)
    positions = np.arange(prompts + 1, dtype=np.float64)  # the last: the mean over prompts
    control = condition.control
    if control is not None and control.prompt_effects:
        draws = np.array(control.prompt_effects, dtype=np.float64)  # [draws, prompts]
        groups = [*draws.T, np.array(control.effects, dtype=np.float64)]
        spread = np.linspace(-0.22, 0.22, len(draws)) if len(draws) > 1 else np.zeros(1)
        axes.scatter(np.concatenate([p + spread for p in positions]),
                     np.concatenate(groups), s=6, color=CONTROL, alpha=0.6, linewidths=0,
                     gid="controls", zorder=1,
                     label=f"{plural(len(draws), 'random draw')} of as many units (box: "
                           "quartiles; whiskers: lowest to highest)")
        axes.boxplot(groups, positions=positions, widths=0.55, whis=(0, 100),
                     showfliers=False, manage_ticks=False, zorder=2,
                     medianprops={"color": "0.2"}, boxprops={"color": "0.35"},
                     whiskerprops={"color": "0.35"}, capprops={"color": "0.35"})
    axes.scatter(positions, [*chosen, condition.effect], s=36, marker="D",
                 color=palette.POSITIVE, edgecolors="black", linewidths=0.5, zorder=3,
                 gid="chosen", label="the chosen units" if result.neurons else "ablated")
    axes.axvline(prompts - 0.5, color="0.7", linewidth=0.8)
    axes.axhline(0.0, color="0.7", linewidth=0.8, zorder=0)
    labels = [tick_text(p) for p in result.prompts] + ["mean (the effect)"]
    ticks(axes.set_xticks, labels, rotate=len(labels) > 6)
    axes.set_xlim(-0.6, prompts + 0.6)
    axes.set_ylabel(change_name(result), fontsize=8)
    layers = ",".join(map(str, condition.layers))
    title = f"layer{'s' if len(condition.layers) > 1 else ''} {layers}: effect " \
            f"{condition.effect:.3g}"
    if control is not None and control.p is not None:
        title += f", p = {control.p:.2g} against {plural(control.draws, 'draw')}"
    elif condition.zero_to_rounding:
        title += " (zero to float rounding: no p)"
    axes.set_title(title, fontsize=9)
    axes.tick_params(length=2, labelsize=8)


def plot_steer(result: Any, path: str, size: tuple[float, float] | None = None,
               dpi: int = DPI) -> None:
    """Draw a `SteerResult` (see the module docstring) and write it to `path`."""
    draw(steer_figure, result, path, size, dpi)


def coefficient_name(result: Any) -> str:
    """What the coefficient multiplies, for the x axis."""
    if result.source.startswith("neurons clamped"):
        return "coefficient (the neurons set to coefficient × value)"
    if result.source.startswith("neurons"):
        return "coefficient (× the neuron values, added)"
    if result.scale_kind == "relative":
        return f"coefficient (× the mean activation norm, {result.scale:.3g})"
    return "coefficient (the added vector's length)"


def steer_figure(result: Any, size: tuple[float, float] | None = None, dpi: int = DPI) -> Any:
    """The matplotlib `Figure` of `plot_steer` for a `SteerResult`: x = the coefficients in
    increasing order."""
    panels = 2 if result.tokens else 1
    if size is None:
        size = (7.0, 3.6 * panels + 0.6)
    figure = figure_class()(figsize=size, dpi=dpi, layout="constrained")
    runs = sorted(result.runs, key=lambda run: run.coefficient)
    x = np.array([run.coefficient for run in runs], dtype=np.float64)
    kept = figure.add_subplot(panels, 1, 1)
    values = np.array([run.unsteered_log_probs for run in runs], dtype=np.float64)
    for i, prompt in enumerate(result.prompts):
        kept.plot(x, values[:, i], marker="o", linestyle=_dashes(i), markersize=4,
                  color=LINES[i % len(LINES)], gid=f"unsteered-{i}",
                  label=tick_text(prompt) if i < NAMED else None)
    kept.set_ylabel("log p(unsteered continuation)\n(nats, summed over its tokens)",
                    fontsize=8)
    kept.set_title("coefficient 0's continuation, scored under each coefficient", fontsize=9)
    if len(result.prompts) > NAMED:
        kept.plot([], [], color="none", label=f"… {len(result.prompts) - NAMED} more prompts")
    kept.legend(fontsize=7, loc="best", title="prompt", title_fontsize=7)
    if result.tokens:
        named = figure.add_subplot(panels, 1, 2, sharex=kept)
        scores = np.array([run.log_probs for run in runs], dtype=np.float64)  # [runs, p, t]
        first = min(len(result.prompts), NAMED)  # tokens' colours: after the prompts' own
        for t, token in enumerate(result.tokens):
            colour = LINES[(first + t) % len(LINES)]
            for i in range(len(result.prompts)):  # each prompt in its line style above
                named.plot(x, scores[:, i, t], color=colour, linewidth=0.8, alpha=0.6,
                           linestyle=_dashes(i), gid=f"token-{t}-prompt-{i}")
            named.plot(x, scores[:, :, t].mean(axis=1), "o-", color=colour, linewidth=2,
                       markersize=5, gid=f"token-{t}",
                       label=f"{tick_text(token)!r} (mean over "
                             f"{plural(len(result.prompts), 'prompt')}; thin: each, "
                             "dashed as above)")
        named.set_ylabel("log p(token after the prompt)\n(nats, summed over its tokens)",
                         fontsize=8)
        named.legend(fontsize=7, loc="best", title="named token", title_fontsize=7)
    for axes in figure.axes:
        axes.axvline(0.0, color="0.6", linewidth=0.8, linestyle=":")
        axes.tick_params(length=2, labelsize=8)
        if len(x) <= 20:
            axes.set_xticks(x)
    figure.axes[-1].set_xlabel(coefficient_name(result), fontsize=8)
    along = textwrap.fill(f"along {title_text(result.source)}", WRAP)
    figure.suptitle(f"steering at layer {result.layer} ({result.site})\n{along}", fontsize=9)
    return figure


def _dashes(prompt: int) -> Any:
    """The `prompt`-th prompt's line style, shared by both panels (its colour is the top
    panel's only: below, colours are the named tokens')."""
    return DASHES[prompt % len(DASHES)]
