"""What `introspect steer` does, between the parsed arguments and the rendered report: the
prompts and `SteerOptions` from argv (the layer read against the model's), then the analysis,
the JSON written before the report."""

from __future__ import annotations

import argparse
import math

from lazarus.analyses.options import SteerOptions
from lazarus.cli.common import (
    check_extension,
    check_outputs,
    given,
    inputs_of,
    open_model,
    show_report,
    write_output,
)
from lazarus.cli.keep_alive import run_analysis
from lazarus.engine.handle import Handle
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.render.causal import render_steer
from lazarus.text import real_number


def steer_options(args: argparse.Namespace, model: Handle) -> tuple[list[str], SteerOptions]:
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
        coefficients=_coefficients(args), compare=args.compare is True or None,
        absolute=args.absolute, site=args.site,
        tokens=None if args.tokens is None else [
            t.strip() for t in inputs.parse_list(args.tokens, "tokens", "word")],
        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed,
        clamp=args.clamp))
    return prompts, options


def _coefficients(args: argparse.Namespace) -> list[float] | None:
    if args.coefficient is not None and args.compare is not None:
        raise LazarusError("--coefficient and --compare were both given (choose one)")
    if isinstance(args.compare, str):  # --compare C1,C2,... (bare: True, the sweep)
        return parse_coefficients(args.compare)
    if args.coefficient is not None:
        return parse_coefficients(args.coefficient, "--coefficient")
    return None  # the mode's default, or with a bare --compare its sweep (steer_strength)


def parse_coefficients(text: str, option: str = "--compare") -> list[float]:
    values = []
    for part in text.split(","):
        try:
            value = real_number(part.strip())
        except ValueError:
            example = "808:2.5,1190:-1" if option == "--neurons" else "-0.2,0.1,0.3"
            raise LazarusError(f"{option}: {part.strip()!r} is not a number (give numbers, e.g. "
                               f"{option} {example})") from None
        if not math.isfinite(value):
            raise LazarusError(f"{option}: {part.strip()!r} is not a finite number")
        values.append(value)
    return values


def parse_neuron_values(text: str) -> dict[int, float]:
    """`808:2.5,1190:-1` -> {808: 2.5, 1190: -1.0}."""
    pairs = [part.split(":", 1) for part in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise LazarusError("--neurons for steer takes id:value pairs (e.g. --neurons "
                           "808:2.5,1190:-1)")
    ids = inputs.parse_neurons(",".join(pair[0] for pair in pairs))
    values = parse_coefficients(",".join(pair[1] for pair in pairs), "--neurons")
    return dict(zip(ids, values, strict=True))


def run_steer(args: argparse.Namespace) -> int:
    check_outputs({"--output": args.output, "--plot": args.plot},
                  inputs_of(args, "prompts", "positive", "negative", "tokens", "direction"))
    check_extension("--output", args.output, ".json")
    model = open_model(args)
    prompts, options = steer_options(args, model)
    result = run_analysis(args, "steer", prompts, options, model=model)
    report = render_steer(result)
    write_output(args.output, result.to_json())
    if args.plot is not None:
        result.plot(args.plot)
    show_report(report, args.output, args.plot)
    return 0
