"""What `introspect steer` does, between the parsed arguments and the rendered report: the
prompts and `SteerOptions` from argv (the layer read against the model's), then the analysis,
the JSON written before the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.options import SteerOptions
from lazarus.analyses.steer import analyse_steer, parse_coefficients, parse_neuron_values
from lazarus.api import Model
from lazarus.cli.common import (
    check_json_output,
    given,
    inputs_of,
    open_model,
    show_report,
    write_output,
)
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.render.causal import render_steer


def steer_options(args: argparse.Namespace, model: Model) -> tuple[list[str], SteerOptions]:
    """The prompts and the options of `steer`, from its arguments and the model (-l names one
    of its layers)."""
    prompts = inputs.parse_prompts(args.prompts)
    layers = None if args.layer is None else model.layers(args.layer)
    if layers is not None and len(layers) > 1:
        raise LazarusError(f"steer adds at one layer; -l {args.layer} names {len(layers)} "
                           "(give one)")
    options = SteerOptions(**given(
        layer=None if layers is None else layers[0], direction=args.direction,
        positive=None if args.positive is None else inputs.parse_prompts(args.positive,
                                                                         "positive"),
        negative=None if args.negative is None else inputs.parse_prompts(args.negative,
                                                                         "negative"),
        neurons=None if args.neurons is None else parse_neuron_values(args.neurons),
        coefficients=_coefficients(args), absolute=args.absolute, site=args.site,
        tokens=None if args.tokens is None else [
            t.strip() for t in inputs.parse_list(args.tokens, "tokens", "word")],
        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed,
        clamp=args.clamp))
    return prompts, options


def _coefficients(args: argparse.Namespace) -> list[float]:
    if args.coefficient is not None and args.compare is not None:
        raise LazarusError("--coefficient and --compare were both given (choose one)")
    if args.compare is not None:
        return parse_coefficients(args.compare)
    return parse_coefficients(args.coefficient or "1", "--coefficient")


def run_steer(args: argparse.Namespace) -> int:
    read = inputs_of(args, "prompts", "positive", "negative", "tokens")
    check_json_output(args, read + ([("--direction", args.direction)] if args.direction else []))
    model = open_model(args)
    prompts, options = steer_options(args, model)
    result = analyse_steer(model, prompts, options)
    report = render_steer(result)
    write_output(args.output, result.to_json())
    show_report(report, args.output)
    return 0
