"""The argument tree of `lazarus`: its groups and commands, each command's options in the
order users need them (required first), and its help with examples; the neurons, probe and
cache commands here, ablate and steer in `causal_args`, patch in `patch_args`, examples in
`examples_args`, the options they share in `options`. Each command names its run function as
"module:function", imported only when it runs: the tree imports no numpy, so `--help` answers
at once. An option left out is None, and takes its default from the command's options type
(`lazarus.analyses.options`). Usage mistakes are one stderr line, exit 2."""

from __future__ import annotations

import argparse
import re
import sys

from lazarus import __version__
from lazarus.cli.attribute_args import add_attribute_command
from lazarus.cli.card_args import add_card_command
from lazarus.cli.causal_args import add_causal_commands
from lazarus.cli.examples_args import add_examples_command
from lazarus.cli.help import (
    DEFINITIONS,
    EXIT_STATUS,
    MAX_ROWS,
    NEURONS_EXAMPLES,
    PROBE_EXAMPLES,
    PROBE_NOTES,
)
from lazarus.cli.options import (
    Once,
    add_command,
    add_keep_alive_option,
    add_model_options,
    add_site_options,
    real,
    whole,
)
from lazarus.cli.output import write_stdout
from lazarus.cli.patch_args import add_patch_command
from lazarus.cli.serve_args import add_serve_command
from lazarus.text import escape


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one stderr line, like every other user error."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # `-l -1,-2` is a value, not an option: let argparse read lists of negative numbers,
        # and a negative duration or size (`--keep-alive -5m`), which is then refused as such.
        self._negative_number_matcher = re.compile(r"^-\d[\d.,\-]*[a-zA-Z]*$")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {escape(message)} (see {self.prog} --help)\n")

    def _print_message(self, message: str, file=None) -> None:  # type: ignore[no-untyped-def]
        if message and file in (None, sys.stdout):  # --help, --version: a failed write counts
            write_stdout(message)
        else:
            super()._print_message(message, file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lazarus", description="Neuron-level introspection of transformer "
                     "language models.", epilog=EXIT_STATUS,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lazarus {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True,
                                   parser_class=_Parser)
    introspect = groups.add_parser("introspect", help="look inside a model",
                                   description="Look inside a model.")
    commands = introspect.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                         parser_class=_Parser)
    _add_neurons_command(commands)
    _add_probe_command(commands)
    add_causal_commands(commands)
    add_patch_command(commands)
    add_attribute_command(commands)
    add_examples_command(commands)
    add_card_command(commands)

    cache = groups.add_parser(
        "cache", help="the activation cache: what it holds, and clearing it",
        description="Captured rows are cached per model (identified by its files on disk), "
                    "layer, site, token position, dtype, device type and prompt, so re-runs on "
                    "the same prompts load no model. Folder: $LAZARUS_CACHE_DIR, else "
                    "$XDG_CACHE_HOME/lazarus, else ~/.cache/lazarus. Skip it with --no-cache.",
        epilog="examples:\n  lazarus cache info\n  LAZARUS_CACHE_DIR=/scratch/lazarus lazarus "
               "cache info\n  lazarus cache clear\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True,
                                   parser_class=_Parser)
    actions.add_parser("info", help="show the cache folder and what it holds"
                       ).set_defaults(run="lazarus.cli.cache:run_cache_info")
    actions.add_parser("clear", help="delete every cached row"
                       ).set_defaults(run="lazarus.cli.cache:run_cache_clear")
    add_serve_command(groups)
    return parser


def _add_neurons_command(commands: argparse._SubParsersAction) -> None:
    """`neurons`: how chosen neurons fire across prompts."""
    neurons = add_command(
        commands, "neurons",
        help="how individual neurons fire across prompts",
        description="Show how individual neurons fire across prompts: an activation map, an "
                    "ASCII heatmap, per-neuron statistics and, with --labels, per-label means.",
        epilog=DEFINITIONS + "\n" + NEURONS_EXAMPLES)
    neurons.add_argument("-l", "--layer", required=True, action=Once,
                         help="layer(s) to analyze: one (0-based; negative counts from the "
                              "end), a list and ranges (0,2,5-7), or all; several layers are "
                              "read in one pass")
    neurons.add_argument("-p", "--prompts", required=True,
                         help="prompts, pipe-separated ('2+2=|47*47=') or @file.txt "
                              "(one per line, blank lines skipped)")
    neurons.add_argument("-n", "--neurons", action=Once,
                         help="neuron indices, comma-separated (e.g. 808,1190)")
    neurons.add_argument("--from-direction", metavar="FILE",
                         help="take the top neurons of a direction .npz saved by "
                              "'lazarus introspect probe --save-direction'")
    neurons.add_argument("--top-k", type=whole, default=None,
                         help="how many neurons to take from --from-direction (default: 10); "
                              "with --auto-discover, at most this many of the strongest "
                              "survivors; without any of these, the top-k neurons with the "
                              "largest spread across the prompts are shown")
    neurons.add_argument("--labels", help="a label per prompt, pipe-separated, same order "
                                          "(or @file.txt)")
    neurons.add_argument("--auto-discover", action="store_true",
                         help="test every neuron of the layer for a difference in --labels' "
                              "means (Welch's F, each label with its own spread, against a "
                              "bootstrap within labels; p corrected family-wise by the "
                              "max-statistic over all neurons; shown: Cohen's d for two labels, "
                              "eta-squared for more, exact 95%% CI simultaneous over all "
                              "neurons) and show the --top-k "
                              "strongest that survive")
    neurons.add_argument("--permutations", type=whole, default=None, metavar="N",
                         help="bootstrap resamples of --auto-discover's test (default: 1000; "
                              "the smallest possible p is 1/(N+1))")
    add_site_options(neurons)
    neurons.add_argument("-o", "--output", metavar="FILE",
                         help="also save every value: FILE.json (the spec's format), or "
                              "FILE.csv (one row per layer x prompt x neuron)")
    neurons.add_argument("--plot", metavar="FILE", help="also draw the heatmap (and, with "
                         "--labels, per-label means with 95%% t-intervals over prompts) as "
                         ".png or .svg (needs: pip install 'lazarus[plot]')")
    neurons.add_argument("--max-rows", type=whole, default=None, metavar="N",
                         help=f"show at most N prompts in the map and heatmap, then one row "
                              f"with the mean of the rest (default {MAX_ROWS}; 0: every row)")
    neurons.add_argument("--color", action="store_true",
                         help="colour the heatmap on a scale centred at 0, when standard "
                              "output is a colour terminal")
    add_model_options(neurons)
    add_keep_alive_option(neurons)
    neurons.set_defaults(run="lazarus.cli.neurons:run_neurons")


def _add_probe_command(commands: argparse._SubParsersAction) -> None:
    """`probe`: where two classes of prompts separate, and the direction."""
    probe = add_command(
        commands, "probe",
        help="find where two classes of prompts separate, and save the direction",
        description="Train cross-validated linear probes between two classes of prompts at "
                    "each layer, compare them with a shuffled-label baseline, and save the "
                    "separating direction of the best layer for 'introspect neurons "
                    "--from-direction'.",
        epilog=PROBE_NOTES + "\n" + DEFINITIONS + "\n" + PROBE_EXAMPLES)
    probe.add_argument("--class-a", required=True,
                       help="class A prompts, pipe-separated or @file.txt (positive class)")
    probe.add_argument("--class-b", required=True,
                       help="class B prompts, pipe-separated or @file.txt")
    probe.add_argument("--label-a", help="name of class A (default: class_a)")
    probe.add_argument("--label-b", help="name of class B (default: class_b)")
    probe.add_argument("-l", "--layer", action=Once,
                       help="probe only these layers (one, a list and ranges such as 0,2,5-7, "
                            "or all; default: every layer, and pick the best)")
    probe.add_argument("--method", choices=("logistic", "difference"),
                       help="how the direction is fitted (default: logistic)")
    probe.add_argument("--save-direction", metavar="FILE.npz",
                       help="save the best layer's direction for 'neurons --from-direction'")
    probe.add_argument("-t", "--test", metavar="PROMPTS",
                       help="prompts to classify with the fitted probe (pipe-separated or @file)")
    probe.add_argument("--test-labels", metavar="LABELS",
                       help="the true class of each --test prompt (--label-a or --label-b), "
                            "pipe-separated or @file, for a held-out test accuracy")
    probe.add_argument("--permutations", type=whole, default=None, metavar="N",
                       help="shuffled labellings for the baseline and the p-value (default: "
                            "200; the smallest p is 1/(N+1))")
    probe.add_argument("--alpha", type=real, default=None,
                       help="significance level: a layer is marked best only when p < alpha "
                            "(default: 0.05)")
    probe.add_argument("--force-save", action="store_true",
                       help="write --save-direction even when no layer beats chance")
    probe.add_argument("-o", "--output", metavar="FILE.json", help="also save the results as JSON")
    probe.add_argument("--plot", metavar="FILE", help="also draw accuracy by layer over the "
                       "shuffled baseline, as .png or .svg (needs: pip install 'lazarus[plot]')")
    add_site_options(probe, probe=True)
    add_model_options(probe)
    add_keep_alive_option(probe)
    probe.set_defaults(run="lazarus.cli.probe:run_probe")
