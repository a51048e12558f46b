"""What `introspect ablate` does, between the parsed arguments and the rendered report: the
prompts and `AblateOptions` from argv (checked before any model is looked at), then the
analysis, the JSON written before the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.options import AblateOptions
from lazarus.cli.common import (
    check_extension,
    check_outputs,
    given,
    inputs_of,
    show_report,
    write_output,
)
from lazarus.cli.keep_alive import run_analysis
from lazarus.cli.output import ProgressBar
from lazarus.io import inputs
from lazarus.render.causal import render_ablation


def ablate_options(args: argparse.Namespace) -> tuple[list[str], AblateOptions]:
    """The prompts and the options of `ablate`, from its arguments."""
    prompts, answers = inputs.split_answers(inputs.parse_prompts(args.prompts))
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


def run_ablate(args: argparse.Namespace) -> int:
    prompts, options = ablate_options(args)
    check_outputs({"--output": args.output, "--plot": args.plot},
                  inputs_of(args, "prompts", "labels", "reference", "from_direction"))
    check_extension("--output", args.output, ".json")
    bar = ProgressBar("ablating")
    result = run_analysis(args, "ablate", prompts, options,
                          progress=lambda done, total: bar(done, total))
    report = render_ablation(result)
    write_output(args.output, result.to_json())
    if args.plot is not None:
        result.plot(args.plot)
    show_report(report, args.output, args.plot)
    return 0
