"""What `introspect neurons` and `introspect probe` do, between the parsed arguments and the
rendered report: cheap checks first, then one library call (`lazarus.api.Model`), files written
before the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.probe import check_inputs
from lazarus.cli.common import (
    check_extension,
    inputs_of,
    open_model,
    row_limit,
    show_report,
    use_color,
    write_output,
)
from lazarus.cli.output import EXIT_NOTHING_FOUND, ProgressBar, note, out, warn
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.io.directions import load_direction
from lazarus.io.files import check_outputs_apart, check_writable
from lazarus.render.layers import render_result
from lazarus.render.probe import render_probe_report
from lazarus.results.plot import check_plot_path, plot_neurons, plot_probe
from lazarus.results.probe import hopeless_warning
from lazarus.stats.probe import MAX_PERMUTATIONS, PERMUTATIONS, check_settings, check_test_labels


def run_neurons(args: argparse.Namespace) -> int:
    # Cheap checks first: nothing heavy has happened yet.
    if args.neurons is not None and args.from_direction is not None:
        raise LazarusError("--neurons and --from-direction were both given (choose one)")
    prompts = inputs.parse_prompts(args.prompts)
    labels = None if args.labels is None else inputs.parse_labels(args.labels, len(prompts))
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    if args.top_k is not None and args.top_k < 1:
        raise LazarusError(f"--top-k must be at least 1 (got {args.top_k})")
    if args.top_k is not None and neurons is not None:
        warn("--top-k is ignored with --neurons (it applies to --from-direction, or to the "
             "default choice of neurons)")
    max_rows = row_limit(args.max_rows)
    if args.permutations is not None and not args.auto_discover:
        warn("--permutations is ignored without --auto-discover")
    if args.auto_discover and labels is None:
        raise LazarusError("--auto-discover needs --labels (a label per prompt) to test "
                           "neurons against")
    if args.auto_discover and (neurons is not None or args.from_direction is not None):
        raise LazarusError("--auto-discover chooses the neurons itself: leave out "
                           f"{'--neurons' if neurons is not None else '--from-direction'}")
    if args.output is not None:
        check_writable(args.output)
    if args.plot is not None:
        check_plot_path(args.plot)
    check_outputs_apart({"--output": args.output, "--plot": args.plot},
                        inputs_of(args, "prompts", "labels", "from_direction"))
    check_extension("--output", args.output, ".json", ".csv")
    direction = None
    if args.from_direction is not None:
        direction = load_direction(args.from_direction)
    model = open_model(args)
    with inputs.naming_prompts(prompts):
        result = model.neurons(
            prompts, model.layers(args.layer), site=args.site, position=args.position,
            neurons=neurons, direction=direction,
            top_k=10 if args.top_k is None else args.top_k, labels=labels,
            progress=ProgressBar("capturing"), auto_discover=args.auto_discover,
            **({} if args.permutations is None else {"permutations": args.permutations}))
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


def run_probe(args: argparse.Namespace) -> int:
    class_a = inputs.parse_prompts(args.class_a, "class-a")
    class_b = inputs.parse_prompts(args.class_b, "class-b")
    check_inputs(len(class_a), len(class_b), args.label_a, args.label_b, args.method)
    tests = [] if args.test is None else inputs.parse_prompts(args.test, "test")
    test_labels = None
    if args.test_labels is not None:
        if not tests:
            raise LazarusError("--test-labels needs --test (the prompts they label)")
        test_labels = inputs.parse_labels(args.test_labels, len(tests), "test-labels")
        check_test_labels(test_labels, args.label_a, args.label_b)
    settings = {key: value for key, value in (("permutations", args.permutations),
                                              ("alpha", args.alpha)) if value is not None}
    if args.permutations == 0:  # the library allows 0 (no test); a user asking for it errs
        raise LazarusError("--permutations must be a whole number from 1 to "
                           f"{MAX_PERMUTATIONS}, got 0 (e.g. {PERMUTATIONS})")
    check_settings(args.method, **settings)
    for path in (args.save_direction, args.output):
        if path is not None:
            check_writable(path)
    if args.plot is not None:
        check_plot_path(args.plot)
    check_outputs_apart({"--save-direction": args.save_direction, "--output": args.output,
                         "--plot": args.plot},
                        inputs_of(args, "class_a", "class_b", "test", "test_labels"))
    check_extension("--output", args.output, ".json")
    check_extension("--save-direction", args.save_direction, ".npz")
    model = open_model(args)
    with inputs.naming_prompts(class_a, class_b, tests):
        result = model.probe(class_a, class_b, label_a=args.label_a, label_b=args.label_b,
                             layers=None if args.layer is None else model.layers(args.layer),
                             site=args.site, position=args.position, method=args.method,
                             test=tests, test_labels=test_labels,
                             progress=ProgressBar("capturing"), **settings)
    report = result.report
    save = args.save_direction is not None and (report.significant or args.force_save)
    # Files first, so that a closed pipe on stdout cannot lose them.
    if save:
        result.save_direction(args.save_direction, force=args.force_save)
    write_output(args.output, result.to_json())
    if args.plot is not None:
        plot_probe(report, args.plot)
    text = render_probe_report(report, test_prompts=tests, test=result.test).rstrip("\n")
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
