"""The arguments of `introspect ablate` and `introspect steer`, the causal commands (their
help texts are in `help`, their work in `ablate` and `steer`)."""

from __future__ import annotations

import argparse

from lazarus.cli import help as cli_help
from lazarus.cli.options import (
    Once,
    add_command,
    add_keep_alive_option,
    add_model_options,
    real,
    whole,
)
from lazarus.engine.sites import SITE_HELP


def add_causal_commands(commands: argparse._SubParsersAction) -> None:
    """`ablate` and `steer` (help texts in `cli.help`)."""
    ablate = add_command(
        commands, "ablate",
        help="knock neurons or components out and measure the loss, against chance",
        description="Ablate neurons (by id or a direction's top-k) or whole components at one "
                    "or more layers, measure what each prompt loses, and compare with as many "
                    "random neurons.",
        epilog=cli_help.ABLATE_NOTES + "\n" + cli_help.ABLATE_EXAMPLES)
    ablate.add_argument("-l", "--layer", required=True, action=Once,
                        help="layer(s): one, a list and ranges (0,2,5-7), or all")
    ablate.add_argument("-p", "--prompts", required=True,
                        help="prompts, or 'prompt:answer' pairs, pipe-separated or @file.txt")
    ablate.add_argument("--labels", help="a label per prompt (pipe-separated or @file.txt)")
    ablate.add_argument("-n", "--neurons", action=Once, help="neuron ids, comma-separated")
    ablate.add_argument("--from-direction", metavar="FILE",
                        help="ablate the top neurons of a probe's direction .npz")
    ablate.add_argument("--top-k", type=whole,
                        help="how many neurons of --from-direction (default 10)")
    ablate.add_argument("--component", choices=("mlp", "attention"),
                        help="ablate a whole sub-block's output instead of neurons")
    ablate.add_argument("--site", choices=tuple(SITE_HELP), action=Once,
                        help="where the neurons are (default: the direction's, else "
                             "resid_post)")
    ablate.add_argument("--method", choices=("zero", "mean", "resample"),
                        help="what the values become (default zero)")
    ablate.add_argument("--reference", metavar="PROMPTS",
                        help="prompts for mean and resample values (default: --prompts)")
    ablate.add_argument("--controls", type=whole, metavar="N",
                        help="random-neuron draws for the control (default 100; 0: none)")
    ablate.add_argument("--seed", type=whole, help="seed of the draws (default 0)")
    ablate.add_argument("--sweep", action="store_true",
                        help="ablate one layer of -l at a time instead of all at once")
    ablate.add_argument("--max-tokens", type=whole, metavar="N",
                        help="greedy tokens generated after bare prompts (default 8)")
    ablate.add_argument("-o", "--output", metavar="FILE.json",
                        help="also save every number as JSON")
    ablate.add_argument("--plot", metavar="FILE",
                        help="also draw each prompt's change against the random draws', as "
                             ".png or .svg (needs: pip install 'lazarus[plot]')")
    add_model_options(ablate)
    add_keep_alive_option(ablate)
    ablate.set_defaults(run="lazarus.cli.ablate:run_ablate")

    steer = add_command(
        commands, "steer",
        help="add a direction while the model generates, and measure the change",
        description="Add a direction (a probe's, or the difference of two prompt sets) or "
                    "neuron values at a layer, at every position while generating, and show "
                    "the continuations and the change in named tokens' log-probabilities.",
        epilog=cli_help.STEER_NOTES + "\n" + cli_help.STEER_EXAMPLES)
    steer.add_argument("-p", "--prompts", required=True,
                       help="prompts, pipe-separated or @file.txt")
    steer.add_argument("-l", "--layer", action=Once,
                       help="the layer (default: the direction file's)")
    steer.add_argument("--direction", metavar="FILE", help="a probe's direction .npz")
    steer.add_argument("--positive", metavar="PROMPTS",
                       help="with --negative: steer along mean(positive) - mean(negative)")
    steer.add_argument("--negative", metavar="PROMPTS")
    steer.add_argument("-n", "--neurons", action=Once, metavar="ID:VALUE,...",
                       help="add coefficient x value to each neuron (e.g. 808:2.5,1190:-1)")
    steer.add_argument("--site", choices=tuple(SITE_HELP), action=Once,
                       help="where to add (default: the direction's, else resid_post)")
    steer.add_argument("--coefficient", metavar="C",
                       help="one coefficient (default 0.2 for a direction, 1 with --neurons or "
                            "--absolute)")
    steer.add_argument("--compare", metavar="C1,C2,...", nargs="?", const=True,
                       help="several coefficients, e.g. -0.2,0.2,0.4 (coefficient 0 always "
                            "runs); bare: ±0.1,±0.2,±0.3 for a direction, ±0.5,±1,±1.5 with "
                            "--neurons, ±0.1..±0.3 x the norm as lengths with --absolute")
    steer.add_argument("--clamp", action="store_true",
                       help="with --neurons: set them to coefficient x value at every token "
                            "instead of adding (coefficient 0: the unmodified model)")
    steer.add_argument("--absolute", action="store_true",
                       help="scale 1 instead of the mean activation norm (--neurons values "
                            "are always absolute)")
    steer.add_argument("--max-tokens", type=whole, metavar="N",
                       help="tokens to generate (default 20)")
    steer.add_argument("--temperature", type=real,
                       help="0 for greedy (default), else sample at this temperature")
    steer.add_argument("--seed", type=whole, help="seed for sampling (default 0)")
    steer.add_argument("--tokens", metavar="WORDS",
                       help="words whose log-probability change to report ('hard|easy')")
    steer.add_argument("-o", "--output", metavar="FILE.json", help="also save as JSON")
    steer.add_argument("--plot", metavar="FILE",
                       help="also draw log-probabilities against the coefficient, as .png or "
                            ".svg (needs: pip install 'lazarus[plot]')")
    add_model_options(steer)
    add_keep_alive_option(steer)
    steer.set_defaults(run="lazarus.cli.steer:run_steer")
