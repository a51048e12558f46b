"""The arguments of `introspect attribute` (its help texts are in `help`, its work in
`attribute`)."""

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


def add_attribute_command(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands, "attribute",
        help="estimate every unit's patching effect at once, and check it against real patches",
        description="Estimate, from one forward per prompt and one backward, what patching "
                    "each unit (MLP neuron, head, or residual position) of the clean run into "
                    "the corrupted run would change; list the top units, then patch some for "
                    "real to say whether the estimate can be trusted.",
        epilog=cli_help.ATTRIBUTE_NOTES + "\n" + cli_help.ATTRIBUTE_EXAMPLES)
    add_pair_arguments(parser)
    parser.add_argument("--site", action=Once, metavar="SITES",
                        help="units to estimate, comma-separated: mlp_post (default), "
                             "attn_head, resid_pre, resid_post, attn_out, mlp_out")
    parser.add_argument("--method", choices=("atp", "ig"),
                        help="atp: attribution patching (default); ig: integrated gradients")
    parser.add_argument("--steps", type=whole, metavar="N",
                        help="ig: points on the path from corrupted to clean (default 10)")
    parser.add_argument("--top", type=whole, metavar="N",
                        help="units of largest |estimate| to list (default 20)")
    parser.add_argument("--check", type=whole, metavar="K",
                        help="patch the top K units and K random ones for real (default 20, or "
                             "half the units when fewer; 0: no self-check)")
    parser.add_argument("--seed", type=whole, help="seed of the random units (default 0)")
    parser.add_argument("-o", "--output", metavar="FILE.json",
                        help="also save every number as JSON")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the per-layer profile and the self-check, as .png or "
                             ".svg (needs: pip install 'lazarus[plot]')")
    add_model_options(parser)
    add_keep_alive_option(parser)
    parser.set_defaults(run="lazarus.cli.attribute:run_attribute")
