"""The arguments of `introspect patch` (its help texts are in `help`, its work in `patch`)."""

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
from lazarus.cli.pairs_args import add_pair_arguments
from lazarus.engine.pair_terms import DIRECTIONS, patch_sites


def add_patch_command(commands: argparse._SubParsersAction) -> None:
    patch = add_command(
        commands, "patch",
        help="patch activations between clean and corrupted prompts: which layers, positions "
             "and heads carry the answer",
        description="Activation patching: for each site, layer and token position (or head), "
                    "run the corrupted prompt with that one activation from the clean run (or "
                    "the reverse), and show how much of the clean answer it restores, "
                    "normalised so that 1 = the clean run and 0 = the corrupted run.",
        epilog=cli_help.PATCH_NOTES + "\n" + cli_help.PATCH_EXAMPLES)
    add_pair_arguments(patch)
    patch.add_argument("--site", action=Once, metavar="SITES",
                       help=f"where to patch, comma-separated: {', '.join(patch_sites())} "
                            "(default resid_post)")
    patch.add_argument("--direction", choices=tuple(DIRECTIONS),
                       help="denoise: clean into corrupted (default); noise: corrupted into "
                            "clean")
    patch.add_argument("--seed", type=whole, help="seed of the bootstrap over pairs (default 0)")
    patch.add_argument("-o", "--output", metavar="FILE.json|FILE.csv",
                       help="also save every number as JSON, or the long table as CSV")
    patch.add_argument("--plot", metavar="FILE.png|FILE.svg",
                       help="also draw one heatmap per site")
    add_model_options(patch)
    add_keep_alive_option(patch)
    patch.set_defaults(run="lazarus.cli.patch:run_patch")
