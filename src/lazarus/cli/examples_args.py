"""The arguments of `introspect examples`, the corpus scan (its help texts are in `help`, its
work in `examples`)."""

from __future__ import annotations

import argparse

from lazarus.cli import help as cli_help
from lazarus.cli.options import (
    Once,
    add_command,
    add_keep_alive_option,
    add_model_options,
    whole,
)
from lazarus.engine.sites import SITE_HELP


def add_examples_command(commands: argparse._SubParsersAction) -> None:
    """`examples` (help texts in `cli.help`)."""
    examples = add_command(
        commands, "examples",
        help="top- and bottom-activating tokens of neurons over a corpus",
        description="Scan every token of a corpus and show, per neuron, the tokens it fires on "
                    "most and least, in context, with its mean, std, share positive, quantiles "
                    "and a histogram. Streamed, resumable, and optionally on Ray.",
        epilog=cli_help.EXAMPLES_NOTES + "\n" + cli_help.EXAMPLES_EXAMPLES)
    examples.add_argument("-l", "--layer", required=True, action=Once,
                          help="the layer (0-based; negative counts from the end)")
    examples.add_argument("--corpus", required=True, metavar="FILE",
                          help="a .txt (one document per line), .jsonl or .parquet file, or "
                               "hf:org/name[:file] for a dataset in the local Hugging Face "
                               "cache")
    examples.add_argument("--text-field", default=None, metavar="NAME",
                          help="the text field of a .jsonl or column of a .parquet corpus "
                               "(default: text)")
    examples.add_argument("-n", "--neurons", action=Once,
                          help="neuron ids, comma-separated (default: every neuron of the site)")
    examples.add_argument("--from-direction", metavar="FILE",
                          help="take the --top-k neurons of a probe's direction .npz")
    examples.add_argument("--top-k", type=whole, default=None,
                          help="how many neurons of --from-direction (default 10)")
    examples.add_argument("--projection", action="store_true",
                          help="read --from-direction's projection as one unit: the "
                               "activation's dot product with its vector as stored, at every "
                               "token (not its --top-k neurons)")
    examples.add_argument("--site", choices=tuple(SITE_HELP),
                          action=Once, help="what to read (default resid_post)")
    examples.add_argument("--examples", type=whole, metavar="N",
                          help="top and bottom tokens kept per neuron (default 10)")
    examples.add_argument("--window", type=whole, metavar="W",
                          help="tokens per window (default 64)")
    examples.add_argument("--stride", type=whole, default=None, metavar="S",
                          help="tokens between window starts (default: --window)")
    examples.add_argument("-o", "--output", metavar="FILE",
                          help="also save: FILE.json (everything), FILE.parquet (one row "
                               "per example with its neuron's summary; needs pyarrow), or "
                               "FILE.html (a self-contained page)")
    examples.add_argument("--plot", metavar="FILE",
                          help="also draw each neuron's histogram with its quantiles, as .png "
                               "or .svg (needs: pip install 'lazarus[plot]')")
    examples.add_argument("--work-dir", metavar="DIR",
                          help="where shard summaries are kept for resuming (default: "
                               "<cache folder>/examples)")
    examples.add_argument("--shard-windows", type=whole, metavar="N",
                          help="windows per shard, the unit of work and of resume (default 256)")
    examples.add_argument("--ray", action="store_true",
                          help="run the shards on local Ray actors (pip install 'lazarus[ray]')")
    examples.add_argument("--ray-workers", type=whole, metavar="N",
                          help="model actors with --ray (default: one per GPU of the cluster, "
                               "or its CPUs / torch threads)")
    examples.add_argument("--ray-address", metavar="ADDR",
                          help="run the shards on the Ray cluster at ADDR instead (its workers "
                               "must see --work-dir and the model at the same paths; a cluster "
                               "with token authentication needs RAY_AUTH_MODE=token)")
    examples.add_argument("--color", action="store_true",
                          help="mark the tokens in colour when standard output is a colour "
                               "terminal (else in brackets)")
    add_model_options(examples)
    add_keep_alive_option(examples)
    examples.set_defaults(run="lazarus.cli.examples:run_examples")
