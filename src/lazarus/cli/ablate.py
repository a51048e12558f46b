"""What `introspect ablate` does, between the parsed arguments and the rendered report: the
prompts and `AblateOptions` from argv (checked before any model is looked at), then the
analysis, the JSON written before the report."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lazarus.analyses.ablate import analyse_ablation
from lazarus.analyses.options import AblateOptions
from lazarus.cli.common import (
    check_json_output,
    given,
    inputs_of,
    open_model,
    show_report,
    write_output,
)
from lazarus.cli.output import ProgressBar
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.render.causal import render_ablation


def ablate_options(args: argparse.Namespace) -> tuple[list[str], AblateOptions]:
    """The prompts and the options of `ablate`, from its arguments."""
    prompts, answers = split_answers(inputs.parse_prompts(args.prompts))
    labels = None if args.labels is None else inputs.parse_labels(args.labels, len(prompts))
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    reference = None if args.reference is None else inputs.parse_prompts(args.reference,
                                                                         "reference")
    options = AblateOptions(**given(
        layers=args.layer, answers=answers, labels=labels, neurons=neurons,
        direction=args.from_direction, top_k=args.top_k, component=args.component,
        site=args.site, method=args.method, reference=reference, controls=args.controls,
        seed=args.seed, sweep=args.sweep, max_tokens=args.max_tokens))
    return prompts, options


def split_answers(items: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """`prompt:answer` items (split at the last ':'), or bare prompts when no item has one."""
    with_answer = [":" in item for item in items]
    if not any(with_answer):
        return list(items), None
    if not all(with_answer):
        first = with_answer.index(False) + 1
        raise LazarusError(f"prompt {first} has no ':answer' while others do (give every "
                           "prompt an answer, as '45*45=:2025', or none)")
    prompts, answers = zip(*(item.rsplit(":", 1) for item in items), strict=True)
    for prompt, answer in zip(prompts, answers, strict=True):
        if not prompt:
            raise LazarusError(f"'{prompt}:{answer}' has no prompt before the ':'")
    return list(prompts), list(answers)


def run_ablate(args: argparse.Namespace) -> int:
    prompts, options = ablate_options(args)
    check_json_output(args, inputs_of(args, "prompts", "labels", "reference", "from_direction"))
    model = open_model(args)
    bar = ProgressBar("ablating")
    result = analyse_ablation(model, prompts, options, lambda done, total: bar(done, total))
    report = render_ablation(result)
    write_output(args.output, result.to_json())
    show_report(report, args.output)
    return 0
