"""What `introspect card` does, between the parsed arguments and the rendered report: the
options from argv, checks of the corpus and the output before the model loads, then the cards,
the JSON or the HTML dashboard written before the report."""

from __future__ import annotations

import argparse
import dataclasses
import os

from lazarus.analyses.card_options import CardOptions
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
from lazarus.cli.steer import parse_coefficients
from lazarus.io import inputs
from lazarus.io.corpus import check_corpus, resolve_corpus
from lazarus.io.files import write_text_atomically
from lazarus.render.card import render_card
from lazarus.render.card_html import render_card_html


def card_options(args: argparse.Namespace) -> CardOptions:
    """The options of `card`, from its arguments."""
    return CardOptions(**given(
        layer=args.layer, site=args.site,
        neurons=None if args.neurons is None else inputs.parse_neurons(args.neurons),
        direction=args.from_direction, top_k=args.top_k, examples=args.examples,
        window=args.window, stride=args.stride, text_field=args.text_field,
        work_dir=args.work_dir, causal=args.causal or None,
        causal_windows=args.causal_windows, controls=args.controls, seed=args.seed,
        coefficients=None if args.coefficients is None else parse_coefficients(
            args.coefficients, "--coefficients"),
        prompt=args.prompt, max_tokens=args.max_tokens))


def run_card(args: argparse.Namespace) -> int:
    options = card_options(args)
    corpus = None
    if args.corpus is not None:
        corpus = resolve_corpus(args.corpus)
        check_corpus(corpus, options.text_field)
    if args.output is not None:
        check_extension("--output", args.output, ".json", ".html")
    check_outputs({"--output": args.output},
                  [*([("--corpus", corpus)] if corpus else []),
                   *inputs_of(args, "from_direction")])
    bar = ProgressBar("scanning windows")
    # Absolute paths, for a server started elsewhere; the card names the corpus as given.
    result = run_analysis(
        args, "card", None if corpus is None else os.path.abspath(corpus),
        dataclasses.replace(options, work_dir=None if options.work_dir is None
                            else os.path.abspath(options.work_dir)),
        progress=lambda done, total: bar(done, total))
    result = dataclasses.replace(result, corpus=corpus)
    report = render_card(result)
    if args.output is not None and args.output.lower().endswith(".html"):
        write_text_atomically(args.output, render_card_html(result))
    else:
        write_output(args.output, result.to_json())
    show_report(report, args.output)
    return 0
