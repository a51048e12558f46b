"""What `introspect probe` does, between the parsed arguments and the rendered report: the two
classes and `ProbeOptions` from argv (checked before any model is looked at), then the
analysis, files (the direction, -o, --plot) written before the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.options import ProbeOptions
from lazarus.cli.common import (
    check_extension,
    check_outputs,
    given,
    inputs_of,
    write_output,
)
from lazarus.cli.keep_alive import run_analysis
from lazarus.cli.output import EXIT_NOTHING_FOUND, ProgressBar, note, out, warn
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.render.probe import render_probe_report
from lazarus.results.plot_probe import plot_probe
from lazarus.results.probe import hopeless_warning
from lazarus.stats.probe import MAX_PERMUTATIONS, PERMUTATIONS, check_classes


def probe_options(
        args: argparse.Namespace) -> tuple[list[str], list[str], list[str], ProbeOptions]:
    """The two classes' prompts, the test prompts as read (which name their file and line in
    messages; the options hold them as plain prompts) and the options of `probe`, from its
    arguments."""
    class_a = inputs.parse_prompts(args.class_a, "class-a")
    class_b = inputs.parse_prompts(args.class_b, "class-b")
    tests = None if args.test is None else inputs.parse_prompts(args.test, "test")
    test_labels = None
    if args.test_labels is not None:
        if not tests:
            raise LazarusError("--test-labels needs --test (the prompts they label)")
        test_labels = inputs.parse_labels(args.test_labels, len(tests), "test-labels")
    if args.permutations == 0:  # the library allows 0 (no test); a user asking for it errs
        raise LazarusError("--permutations must be a whole number from 1 to "
                           f"{MAX_PERMUTATIONS}, got 0 (e.g. {PERMUTATIONS})")
    options = ProbeOptions(**given(
        label_a=args.label_a, label_b=args.label_b, layers=args.layer, site=args.site,
        position=args.position, method=args.method, test=tests, test_labels=test_labels,
        permutations=args.permutations, alpha=args.alpha))
    # The analysis counts the (distinct) prompts too; here, before the model is looked at.
    check_classes(len(set(class_a)), len(set(class_b)), options.label_a, options.label_b)
    return class_a, class_b, tests or [], options


def run_probe(args: argparse.Namespace) -> int:
    class_a, class_b, tests, options = probe_options(args)
    check_outputs({"--save-direction": args.save_direction, "--output": args.output,
                   "--plot": args.plot},
                  inputs_of(args, "class_a", "class_b", "test", "test_labels"))
    check_extension("--output", args.output, ".json")
    check_extension("--save-direction", args.save_direction, ".npz")
    with inputs.naming_prompts(class_a, class_b, tests):
        result = run_analysis(args, "probe", class_a, class_b, options,
                              progress=ProgressBar("capturing"))
    report = result.report
    save = args.save_direction is not None and (report.significant or args.force_save)
    # Files first, so that a closed pipe on stdout cannot lose them.
    if save:
        result.save_direction(args.save_direction, force=args.force_save)
    write_output(args.output, result.to_json())
    if args.plot is not None:
        plot_probe(report, args.plot)
    text = render_probe_report(report, test_prompts=result.test_prompts, test=result.test,
                               merged=result.merged_copies).rstrip("\n")
    if (result.site, result.position) != ("resid_post", "last"):
        text = f"(site: {result.site}, position: {result.position})\n{text}"
    out(text)
    warning = hopeless_warning(report)
    if warning is not None:
        warn(warning.removeprefix("Warning: ").rstrip("."))
    if save:
        note(f"saved the layer {report.top_layer} direction to {args.save_direction}"
             + ("" if report.significant else " (forced: no layer beats chance)"))
    elif not report.significant:
        note(f"no layer beats chance (p = {report.p_value:.2g} >= {report.alpha:g}): exit "
             f"status {EXIT_NOTHING_FOUND}" + ("" if args.save_direction is None else
                                              f"; {args.save_direction} was not written (add "
                                              "--force-save to write it anyway)"))
    for path in (args.output, args.plot):
        if path is not None:
            note(f"saved {path}")
    return 0 if report.significant else EXIT_NOTHING_FOUND
