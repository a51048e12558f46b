"""What `introspect examples` does, between the parsed arguments and the rendered report:
checks of the corpus, work folder and output before the model loads, then the scan, the file
(.json, .parquet or .html) written before the report."""

from __future__ import annotations

import argparse

from lazarus.analyses.shards import check_work_dir
from lazarus.cli.common import (
    check_extension,
    inputs_of,
    open_model,
    use_color,
    write_output,
)
from lazarus.cli.output import ProgressBar, note, out, warn
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.io.corpus import check_corpus, check_window, resolve_corpus
from lazarus.io.directions import load_direction
from lazarus.io.files import check_outputs_apart, check_writable, write_text_atomically
from lazarus.render.examples import render_examples, render_html
from lazarus.text import agree, plural


def run_examples(args: argparse.Namespace) -> int:
    if args.neurons is not None and args.from_direction is not None:
        raise LazarusError("--neurons and --from-direction were both given (choose one)")
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    if args.top_k is not None and args.from_direction is None:
        warn("--top-k is ignored without --from-direction")
    ray_workers = args.ray_workers
    if ray_workers is not None and not args.ray and args.ray_address is None:
        warn("--ray-workers is ignored without --ray or --ray-address (add --ray)")
        ray_workers = None
    text_field = "text" if args.text_field is None else args.text_field
    check_window(args.window, args.stride)
    for name in ("examples", "shard_windows", "ray_workers", "top_k"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LazarusError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    if args.work_dir is not None and not args.work_dir.strip():
        raise LazarusError("--work-dir is empty (give a folder, or leave the option out for "
                           "the cache folder's examples/)")
    if args.work_dir is not None:  # before the model loads
        from pathlib import Path

        check_work_dir(Path(args.work_dir))
    corpus = resolve_corpus(args.corpus)
    check_corpus(corpus, text_field)
    if args.text_field is not None and corpus.lower().endswith(".txt"):
        warn("--text-field is ignored with a .txt corpus (each line is a document)")
    output = args.output
    if output is not None:
        check_extension("--output", output, ".json", ".parquet", ".html")
        if output.lower().endswith(".parquet"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise LazarusError("--output .parquet needs pyarrow (pip install pyarrow), or "
                                   "give a .json name") from None
        check_writable(output)
    check_outputs_apart({"--output": output},
                        [("--corpus", corpus), *inputs_of(args, "from_direction")])
    direction = None
    if args.from_direction is not None:
        direction = load_direction(args.from_direction)
    model = open_model(args)
    bar = ProgressBar("scanning windows")
    result = model.examples(corpus, model.layers(args.layer), site=args.site,
                            neurons=neurons, direction=direction,
                            top_k=None if args.from_direction is None else args.top_k,
                            examples=args.examples, window=args.window, stride=args.stride,
                            text_field=text_field, work_dir=args.work_dir,
                            shard_windows=args.shard_windows, ray=args.ray,
                            ray_workers=ray_workers, ray_address=args.ray_address,
                            progress=lambda done, total: bar(done, total))
    color = use_color(args)
    report = render_examples(result, color=color)
    if output is not None:  # files before the report, so that a closed pipe cannot lose them
        if output.lower().endswith(".parquet"):
            result.write_parquet(output)
        elif output.lower().endswith(".html"):
            write_text_atomically(output, render_html(result))
        else:
            write_output(output, result.to_json())
    out(report, keep_color=color)
    if result.resumed_shards:
        note(f"resumed: {result.resumed_shards} of {plural(result.shards, 'shard')} "
             f"{agree(result.resumed_shards, 'was', 'were')} already in {result.work_dir}")
    if output is not None:
        note(f"saved {output}")
    return 0
