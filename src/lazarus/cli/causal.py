"""What `introspect ablate` and `introspect steer` do, between the parsed arguments and the
rendered report: cheap checks first, then one library call, the JSON written before the
report."""

from __future__ import annotations

import argparse

from lazarus.analyses.ablate import split_answers
from lazarus.analyses.steer import parse_coefficients, parse_neuron_values
from lazarus.cli.common import (
    check_json_output,
    inputs_of,
    open_model,
    show_report,
    write_output,
)
from lazarus.cli.output import ProgressBar
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.io.directions import load_direction
from lazarus.render.causal import render_ablation, render_steer


def run_ablate(args: argparse.Namespace) -> int:
    chosen = [name for name, value in (("--neurons", args.neurons),
                                       ("--from-direction", args.from_direction),
                                       ("--component", args.component)) if value is not None]
    if len(chosen) != 1:
        raise LazarusError("say what to ablate: one of --neurons, --from-direction or "
                           "--component" + (f" (not {' and '.join(chosen)})" if chosen else ""))
    prompts, answers = split_answers(inputs.parse_prompts(args.prompts))
    labels = None if args.labels is None else inputs.parse_labels(args.labels, len(prompts))
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    reference = None if args.reference is None else inputs.parse_prompts(args.reference,
                                                                         "reference")
    check_json_output(args, inputs_of(args, "prompts", "labels", "reference", "from_direction"))
    direction = None
    if args.from_direction is not None:
        direction = load_direction(args.from_direction)
    model = open_model(args)
    bar = ProgressBar("ablating")
    result = model.ablate(prompts, model.layers(args.layer), answers=answers, labels=labels,
                          neurons=neurons, direction=direction, top_k=args.top_k,
                          component=args.component, site=args.site, method=args.method,
                          reference=reference, controls=args.controls, seed=args.seed,
                          sweep=args.sweep, max_tokens=args.max_tokens,
                          progress=lambda done, total: bar(done, total))
    report = render_ablation(result)
    write_output(args.output, result.to_json())
    show_report(report, args.output)
    return 0


def run_steer(args: argparse.Namespace) -> int:
    if args.coefficient is not None and args.compare is not None:
        raise LazarusError("--coefficient and --compare were both given (choose one)")
    coefficients = parse_coefficients(args.compare) if args.compare is not None else \
        parse_coefficients(args.coefficient or "1", "--coefficient")
    prompts = inputs.parse_prompts(args.prompts)
    positive = None if args.positive is None else inputs.parse_prompts(args.positive, "positive")
    negative = None if args.negative is None else inputs.parse_prompts(args.negative, "negative")
    neurons = None if args.neurons is None else parse_neuron_values(args.neurons)
    tokens = [] if args.tokens is None else [t.strip() for t in
                                             inputs.parse_list(args.tokens, "tokens", "word")]
    read = inputs_of(args, "prompts", "positive", "negative", "tokens")
    check_json_output(args, read + ([("--direction", args.direction)] if args.direction else []))
    direction = None
    if args.direction is not None:
        direction = load_direction(args.direction)
    model = open_model(args)
    layers = None if args.layer is None else model.layers(args.layer)
    if layers is not None and len(layers) > 1:
        raise LazarusError(f"steer adds at one layer; -l {args.layer} names {len(layers)} "
                           "(give one)")
    result = model.steer(prompts, None if layers is None else layers[0],
                         direction=direction, positive=positive, negative=negative,
                         neurons=neurons, coefficients=coefficients, absolute=args.absolute,
                         site=args.site, tokens=tokens, max_tokens=args.max_tokens,
                         temperature=args.temperature, seed=args.seed, clamp=args.clamp)
    report = render_steer(result)
    write_output(args.output, result.to_json())
    show_report(report, args.output)
    return 0
