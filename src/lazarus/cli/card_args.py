"""The arguments of `introspect card` (its help texts are in `help`, its work in `card`)."""

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


def add_card_command(commands: argparse._SubParsersAction) -> None:
    """`card` (help texts in `cli.help`)."""
    card = add_command(
        commands, "card",
        help="a page per unit: what it writes, where it fires, what it does",
        description="Show, per unit (neuron, MoE expert unit, head or saved direction), the "
                    "tokens its write vector promotes and suppresses; with --corpus, its "
                    "statistics and top and bottom contexts; with --causal, the loss change "
                    "of ablating it against random units, and steered continuations.",
        epilog=cli_help.CARD_NOTES + "\n" + cli_help.CARD_EXAMPLES)
    card.add_argument("-l", "--layer", required=True, action=Once,
                      help="the layer (0-based; negative counts from the end)")
    card.add_argument("-n", "--neurons", action=Once, help="unit ids, comma-separated")
    card.add_argument("--from-direction", metavar="FILE",
                      help="a saved direction .npz over the residual stream")
    card.add_argument("--site", choices=tuple(SITE_HELP), action=Once,
                      help="where the units are (default: mlp_post; a direction's own)")
    card.add_argument("--top-k", type=whole, metavar="K",
                      help="promoted and suppressed tokens shown (default 10)")
    card.add_argument("--corpus", metavar="FILE",
                      help="a .txt, .jsonl or .parquet corpus (or hf:org/name[:file]) for the "
                           "corpus view")
    card.add_argument("--text-field", metavar="NAME",
                      help="the text field of a .jsonl or column of a .parquet corpus")
    card.add_argument("--examples", type=whole, metavar="N",
                      help="top and bottom contexts per unit (default 5)")
    card.add_argument("--window", type=whole, metavar="W", help="tokens per window (default 64)")
    card.add_argument("--stride", type=whole, metavar="S",
                      help="tokens between window starts (default: --window)")
    card.add_argument("--work-dir", metavar="DIR",
                      help="where the scan's shards are kept (default: <cache folder>/examples)")
    card.add_argument("--causal", action="store_true",
                      help="also ablate and steer each unit (needs --corpus)")
    card.add_argument("--causal-windows", type=whole, metavar="N",
                      help="corpus windows the ablation is measured on (default 8)")
    card.add_argument("--controls", type=whole, metavar="N",
                      help="random units of the site ablated alike (default 20; 0: none)")
    card.add_argument("--seed", type=whole, help="seed of the controls' draws (default 0)")
    card.add_argument("--coefficients", metavar="C1,C2,...",
                      help="steering coefficients (default -1,1,2 for a neuron, "
                           "±0.1,±0.2,±0.3 for a direction; 0 always runs)")
    card.add_argument("--prompt", help="steering's prompt (default: the first window's first "
                                       "tokens)")
    card.add_argument("--max-tokens", type=whole, metavar="N",
                      help="tokens generated per coefficient (default 12)")
    card.add_argument("-o", "--output", metavar="FILE.json|FILE.html",
                      help="also save as JSON, or as a self-contained HTML dashboard (opens "
                           "from the file, offline)")
    add_model_options(card)
    add_keep_alive_option(card)
    card.set_defaults(run="lazarus.cli.card:run_card")
