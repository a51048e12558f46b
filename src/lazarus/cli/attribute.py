"""What `introspect attribute` does: `AttributeOptions` from argv (checked before any model is
looked at), the analysis, the files (-o, --plot), then the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.attribute import AttributeOptions, analyse_attribution
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
from lazarus.render.attribute import render_attribution


def attribute_options(args: argparse.Namespace) -> AttributeOptions:
    return AttributeOptions(**given(
        **pair_fields(args), sites=args.site, layers=args.layer, method=args.method,
        steps=args.steps, top=args.top, self_check=args.check, seed=args.seed))


def run_attribute(args: argparse.Namespace) -> int:
    options = attribute_options(args)
    inputs = inputs_of(args, "clean", "corrupt")
    if args.pairs is not None:
        inputs.append(("--pairs", args.pairs))
    check_outputs({"--output": args.output, "--plot": args.plot}, inputs)
    check_extension("--output", args.output, ".json")
    model = open_model(args)
    result = analyse_attribution(model, options, ProgressBar("attributing"))
    report = render_attribution(result)
    write_output(args.output, result.to_json())  # files first: a closed pipe cannot lose them
    if args.plot is not None:
        result.plot(args.plot)
    show_report(report, args.output, args.plot)
    return 0
