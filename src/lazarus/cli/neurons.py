"""What `introspect neurons` does, between the parsed arguments and the rendered report: the
prompts and `NeuronsOptions` from argv (checked before any model is looked at), then the
analysis, files written before the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.options import NeuronsOptions
from lazarus.cli.common import (
    check_extension,
    check_outputs,
    given,
    inputs_of,
    row_limit,
    show_report,
    use_color,
    write_output,
)
from lazarus.cli.keep_alive import run_analysis
from lazarus.cli.output import EXIT_NOTHING_FOUND, ProgressBar, warn
from lazarus.io import inputs
from lazarus.render.layers import render_result
from lazarus.results.plot_neurons import plot_neurons


def neurons_options(args: argparse.Namespace) -> tuple[list[str], NeuronsOptions]:
    """The prompts and the options of `neurons`, from its arguments."""
    prompts = inputs.parse_prompts(args.prompts)
    labels = None if args.labels is None else inputs.parse_labels(args.labels, len(prompts))
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    options = NeuronsOptions(**given(
        layers=args.layer, site=args.site, position=args.position, neurons=neurons,
        direction=args.from_direction, top_k=args.top_k, labels=labels,
        auto_discover=args.auto_discover, permutations=args.permutations))
    return prompts, options


def run_neurons(args: argparse.Namespace) -> int:
    # Cheap checks first: nothing heavy has happened yet.
    prompts, options = neurons_options(args)
    if args.top_k is not None and options.neurons is not None:
        warn("--top-k is ignored with --neurons (it applies to --from-direction, or to the "
             "default choice of neurons)")
    if args.permutations is not None and not options.auto_discover:
        warn("--permutations is ignored without --auto-discover")
    max_rows = row_limit(args.max_rows)
    check_outputs({"--output": args.output, "--plot": args.plot},
                  inputs_of(args, "prompts", "labels", "from_direction"))
    check_extension("--output", args.output, ".json", ".csv")
    with inputs.naming_prompts(prompts):
        result = run_analysis(args, "neurons", prompts, options,
                              progress=ProgressBar("capturing"))
    color = use_color(args)
    report = render_result(result, max_rows=max_rows, color=color)
    # Files before the report, so that a closed pipe cannot lose them.
    write_output(args.output, result.to_json(), result.to_csv())
    if args.plot is not None:
        plot_neurons(result, args.plot)
    show_report(report, args.output, args.plot, keep_color=color)
    found_nothing = any(layer.discovery is not None and layer.discovery.survivors == 0
                        for layer in result.layers)
    return EXIT_NOTHING_FOUND if found_nothing else 0
