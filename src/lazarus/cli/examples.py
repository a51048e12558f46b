"""What `introspect examples` does, between the parsed arguments and the rendered report: the
corpus and `ExamplesOptions` from argv, checks of the corpus, work folder and output before the
model loads, then the scan, the file (.json, .parquet or .html) written before the report."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from lazarus.analyses.options import ExamplesOptions
from lazarus.analyses.shards import check_work_dir
from lazarus.cli.common import (
    check_extension,
    check_outputs,
    given,
    inputs_of,
    use_color,
    write_output,
)
from lazarus.cli.keep_alive import run_analysis
from lazarus.cli.output import ProgressBar, note, out, warn
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.io.corpus import check_corpus, resolve_corpus
from lazarus.io.files import write_text_atomically
from lazarus.render.examples import render_examples, render_html
from lazarus.text import agree, plural


def examples_options(args: argparse.Namespace) -> tuple[str, ExamplesOptions]:
    """The corpus and the options of `examples`, from its arguments (the options a flag given
    in vain would set are left out, with a warning)."""
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    ignored_ray_workers = (args.ray_workers is not None and not args.ray
                           and args.ray_address is None)
    options = ExamplesOptions(**given(
        layer=args.layer, site=args.site, neurons=neurons, direction=args.from_direction,
        top_k=None if args.from_direction is None else args.top_k,
        projection=args.projection, examples=args.examples,
        window=args.window, stride=args.stride, text_field=args.text_field,
        work_dir=args.work_dir, shard_windows=args.shard_windows, ray=args.ray,
        ray_workers=None if ignored_ray_workers else args.ray_workers,
        ray_address=args.ray_address))
    if args.top_k is not None and args.from_direction is None:
        warn("--top-k is ignored without --from-direction")
    if ignored_ray_workers:
        warn("--ray-workers is ignored without --ray or --ray-address (add --ray)")
    corpus = resolve_corpus(args.corpus)
    check_corpus(corpus, options.text_field)
    if args.text_field is not None and corpus.lower().endswith(".txt"):
        warn("--text-field is ignored with a .txt corpus (each line is a document)")
    return corpus, options


def run_examples(args: argparse.Namespace) -> int:
    corpus, options = examples_options(args)
    if options.work_dir is not None:  # before the model loads
        check_work_dir(Path(options.work_dir))
    output = args.output
    if output is not None:
        check_extension("--output", output, ".json", ".parquet", ".html")
        if output.lower().endswith(".parquet"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise LazarusError("--output .parquet needs pyarrow (pip install pyarrow), or "
                                   "give a .json name") from None
    check_outputs({"--output": output, "--plot": args.plot},
                  [("--corpus", corpus), *inputs_of(args, "from_direction")])
    bar = ProgressBar("scanning windows")
    html = output is not None and output.lower().endswith(".html")
    # Absolute paths, for a server started elsewhere; the result names them as given. A Ray
    # scan (--ray, --ray-address) runs in process: its workers are this command's.
    result, shown = run_analysis(
        args, "examples", os.path.abspath(corpus), dataclasses.replace(
            options, work_dir=None if options.work_dir is None
            else os.path.abspath(options.work_dir)), html,
        progress=lambda done, total: bar(done, total),
        served=not options.ray and options.ray_address is None)
    result = dataclasses.replace(result, corpus=corpus, work_dir=result.work_dir
                                 if options.work_dir is None
                                 else str(Path(options.work_dir) / Path(result.work_dir).name))
    color = use_color(args)
    report = render_examples(result, color=color)
    if output is not None:  # files before the report, so that a closed pipe cannot lose them
        if output.lower().endswith(".parquet"):
            result.write_parquet(output)
        elif html:
            write_text_atomically(output, render_html(result, shown))
        else:
            write_output(output, result.to_json())
    if args.plot is not None:
        result.plot(args.plot)
    out(report, keep_color=color)
    if result.resumed_shards:
        note(f"resumed: {result.resumed_shards} of {plural(result.shards, 'shard')} "
             f"{agree(result.resumed_shards, 'was', 'were')} already in {result.work_dir}")
    for path in (output, args.plot):
        if path is not None:
            note(f"saved {path}")
    return 0
