"""What `introspect patch` does, between the parsed arguments and the rendered report:
`PatchOptions` from argv (checked before any model is looked at), then the analysis, files
written before the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.patch import analyse_patch
from lazarus.analyses.patch_options import PatchOptions
from lazarus.cli.common import (
    check_extension,
    check_outputs,
    given,
    inputs_of,
    open_model,
    show_report,
    write_output,
)
from lazarus.cli.output import ProgressBar
from lazarus.cli.pairs_args import pair_fields
from lazarus.render.patch import render_patch
from lazarus.results.patch_plot import plot_patch


def patch_options(args: argparse.Namespace) -> PatchOptions:
    """The options of `patch`, from its arguments."""
    return PatchOptions(**given(**pair_fields(args), sites=args.site, layers=args.layer,
                                direction=args.direction, seed=args.seed))


def run_patch(args: argparse.Namespace) -> int:
    options = patch_options(args)
    check_outputs({"--output": args.output, "--plot": args.plot},
                  inputs_of(args, "clean", "corrupt", "answer", "wrong", "pairs"))
    check_extension("--output", args.output, ".json", ".csv")
    model = open_model(args)
    result = analyse_patch(model, options, ProgressBar("patching"))
    report = render_patch(result)
    write_output(args.output, result.to_json(), result.to_csv())
    if args.plot is not None:
        plot_patch(result, args.plot)
    show_report(report, args.output, args.plot)
    return 0
