"""Text reports of `ablate` and `steer`: baseline against intervention, per prompt and label."""

from __future__ import annotations

from lazarus.analyses.steer_strength import NEURON_WARN_FRACTION, WARN_FRACTION
from lazarus.engine.sites import unit_noun
from lazarus.results.ablation import AblationResult, Condition, Outcome
from lazarus.results.steer import SteerResult
from lazarus.stats.controls import NO_P_AT_ROUNDING, ROUNDING_ULPS, Z_NOTE
from lazarus.text import banner, display_width, fit_cell, pad, plural

PROMPT = 20
TEXT = 16


def _number(value: float | None, width: int = 8, sign: bool = False) -> str:
    if value is None:
        return " " * (width - 1) + "-"
    return f"{value:+{width}.2f}" if sign else f"{value:{width}.2f}"


def _p(p: float) -> str:
    return f"{p:.3g}"


def _nats(value: float) -> str:
    """An effect in nats: 4 decimals, or 3 significant digits when that would show 0.0000 for
    a number that is not 0 (a KL of 7.8e-08 is small, not nothing)."""
    return f"{value:.2e}" if 0 < abs(value) < 5e-4 else f"{value:.4f}"


def _kl_cell(value: float | None) -> str:
    if value is not None and 0 < abs(value) < 5e-3:
        return f"{value:8.1e}"
    return _number(value)


def render_ablation(result: AblationResult) -> str:
    what = (f"the {result.component} output ({result.site})" if result.component is not None
            else f"{plural(len(result.neurons or ()), unit_noun(result.site))} of {result.site} "
                 f"[{', '.join(map(str, result.neurons or ()))}] ({result.selection})")
    how = {"zero": "set to 0",
           "mean": "set to their mean over every token of "
                   f"{plural(len(result.reference), 'reference prompt')}",
           "resample": "set to another prompt's values (one of "
                       f"{plural(len(result.reference), 'reference prompt')}, drawn with seed "
                       f"{result.seed})"}[result.method]
    lines = [*banner(f"ABLATION: {what}"), f"Method: {result.method} ({how}), at every token.",
             f"Effect: {result.effect_name}.", ""]
    tested = sum(1 for c in result.conditions if c.control is not None and c.control.p is not None)
    if result.sweep and tested > 1:
        lines += [f"({tested} layers tested one at a time: each p is its own layer's, "
                  f"uncorrected; the smallest of the {tested} is the best of {tested} tests, not "
                  f"one (Bonferroni: p x {tested}))", ""]
    for condition in result.conditions:
        lines += _condition(result, condition)
    return "\n".join(line.rstrip() for line in lines).rstrip("\n")


def _condition(result: AblationResult, condition: Condition) -> list[str]:
    layers = ", ".join(map(str, condition.layers))
    lines = [f"Layer{'s' if len(condition.layers) > 1 else ''} {layers}:"]
    pairs = result.answers is not None
    if pairs:
        lines.append(f"  {fit_cell('Prompt', PROMPT)} | {fit_cell('Answer', 8)} | log p base | "
                     f"log p abl. |   change | {fit_cell('greedy base', TEXT)} | greedy ablated")
    else:
        lines.append(f"  {fit_cell('Prompt', PROMPT)} |    KL    | "
                     f"{fit_cell('greedy base', TEXT)} | greedy ablated")
    for index, prompt in enumerate(result.prompts):
        base, after = result.baseline[index], condition.outcomes[index]
        if pairs:
            assert result.answers is not None
            lines.append(
                f"  {fit_cell(prompt, PROMPT)} | {fit_cell(result.answers[index], 8)} | "
                f"{_number(base.answer_log_prob, 10)} | {_number(after.answer_log_prob, 10)} | "
                f"{_number(_change(base, after), 8, sign=True)} | "
                f"{fit_cell(_greedy(base), TEXT)} | {fit_cell(_greedy(after), TEXT)}")
        else:
            lines.append(f"  {fit_cell(prompt, PROMPT)} | {_kl_cell(after.kl)} | "
                         f"{fit_cell(base.continuation, TEXT)} | "
                         f"{fit_cell(after.continuation, TEXT)}")
    summary = result.label_summary(condition)
    if summary:
        lines += ["", "  By label:"]
        for row in summary:
            if pairs:
                lines.append(
                    f"  {fit_cell(row['label'], 12)} n={row['prompts']:<3} mean log p "
                    f"{row['baseline_log_prob']:.2f} -> {row['ablated_log_prob']:.2f}; "
                    f"answer produced {row['baseline_reproduced']}/{row['prompts']} -> "
                    f"{row['ablated_reproduced']}/{row['prompts']}")
            else:
                lines.append(f"  {fit_cell(row['label'], 12)} n={row['prompts']:<3} mean KL "
                             f"{_nats(row['kl'])}; continuations changed "
                             f"{row['continuations_changed']}/{row['prompts']}")
    lines += ["", f"  Effect: {_nats(condition.effect)} nats"]
    if condition.zero_to_rounding:
        lines[-1] += (": zero to float rounding (no prompt changed more than rounding its "
                      f"log-probabilities by {ROUNDING_ULPS} ulps could explain)")
    control = condition.control
    if control is not None:
        spread = "" if control.std is None else f" ± {_nats(control.std)}"
        above = sum(e >= condition.effect for e in control.effects)
        where = "layers" if len(condition.layers) > 1 else "layer"
        count = len(result.neurons or ())
        drawn = (f"every one of the {plural(control.draws, 'possible set')} of "
                 f"{plural(count, unit_noun(result.site))} (no more exist than were asked for, "
                 "so each is used once and p is exact) " if control.every_set else
                 f"{plural(control.draws, 'draw')} of "
                 f"{plural(count, 'random ' + unit_noun(result.site))} ")
        lines.append(f"  Control: {drawn}at the same {where} and site"
                     + ("" if control.every_set else f" (seed {control.seed})")
                     + f": {_nats(control.mean)}{spread} (mean ± std)")
        if control.p is None:
            lines.append(f"  {NO_P_AT_ROUNDING[0].upper()}{NO_P_AT_ROUNDING[1:]}")
        else:
            lines.append(f"  p = {_p(control.p)} ((1 + {plural(above, 'draw')} >= the effect) "
                         f"/ (1 + {control.draws})): the test")
            if control.z is not None:
                lines.append(f"  z = {control.z:+.2f}: {Z_NOTE}")
    elif result.component is None:
        lines.append("  Control: none (--controls 0)")
    else:
        lines.append("  Control: none (a whole component has no random counterpart of its "
                     "size; compare components, or ablate neurons)")
    lines.append("")
    return lines


def _change(base: Outcome, after: Outcome) -> float | None:
    if base.answer_log_prob is None or after.answer_log_prob is None:
        return None
    return after.answer_log_prob - base.answer_log_prob


def _greedy(outcome: Outcome) -> str:
    return f"{outcome.continuation} {'✓' if outcome.reproduces else '✗'}"


def render_steer(result: SteerResult) -> str:
    norm = (f"{result.activation_norm:.3g} (mean L2 norm of {result.site} at layer "
            f"{result.layer} over {plural(result.norm_tokens, 'prompt token')}, a BOS-like "
            "prefix left out"
            + ("; MoE: each token's units of the experts it was routed to, the only ones it "
               "has and the only ones the vector is added to" if result.routed_only else "")
            + ")")
    scale = (f"× {norm} × the unit direction" if result.scale_kind == "relative"
             else "× the values given, in place of the neurons' own (clamped)"
             if result.clamp
             else "× the vector as given (absolute)" if result.source.startswith("neurons")
             else "× the unit direction (absolute: the coefficient is the added length)")
    decoding = ("greedy" if not result.temperature
                else f"sampled at temperature {result.temperature:g}, seed {result.seed}")
    lines = [*banner(f"STEERING at layer {result.layer}, site {result.site}"),
             f"Vector: {result.source}",
             f"{'Set' if result.clamp else 'Added'} at every token: coefficient {scale}."]
    if result.scale_kind != "relative" and not result.clamp:
        lines.append(f"Activation norm: {norm}.")
    lines += [f"Continuations: {plural(result.max_tokens, 'token')}, {decoding}.", ""]
    fraction = not result.clamp
    cells = [_header_cell(t) for t in result.tokens]
    header = "".join(cells)
    widths = [display_width(cell) - len(" | ") for cell in cells]  # the values under them
    for index, prompt in enumerate(result.prompts):
        lines.append(f"Prompt: {prompt}")
        lines.append(f"  {'coef':>6} |{' of norm |' if fraction else ''} "
                     f"{fit_cell('continuation', 24)}{header}")
        for run in result.runs:
            changes = "".join(f" | {pad(f'{change:+.2f}', width, right=True)}"
                              for change, width in zip(run.changes[index], widths, strict=True))
            share = f" {_fraction(result.added_fraction(run))} |" if fraction else ""
            lines.append(f"  {run.coefficient:>6g} |{share} "
                         f"{fit_cell(run.continuations[index], 24)}{changes}")
        lines.append("")
    if fraction:
        if result.source.startswith("neurons"):  # one unit of a sparse site: a higher bar
            usual = (f"below {NEURON_WARN_FRACTION:g}x with --neurons: one MLP unit is large "
                     "beside its site's whole norm")
        else:
            usual = f"below {WARN_FRACTION:g}"
        lines.append("of norm: the added vector's L2 length over the mean activation norm "
                     f"(continuations usually stay text {usual}).")
    if result.tokens:
        lines.append("Δlog p(token): change of the named token's log-probability right after the "
                     "prompt (nats, summed over its tokens), against coefficient 0.")
    return "\n".join(line.rstrip() for line in lines).rstrip("\n")


def _fraction(value: float | None) -> str:
    return " " * 6 + "-" if value is None else f"{value:6.2f}x"


def _header_cell(token: str) -> str:
    return f" | Δlog p({fit_cell(token, 6).rstrip()})"
