"""The argument tree of `lazarus`: every command, its options in the order users need them
(required first), and its help with examples. Usage mistakes are one stderr line, exit 2."""

from __future__ import annotations

import argparse
import re
import sys

from lazarus import __version__
from lazarus.cli_help import (
    DEFINITIONS,
    EXIT_STATUS,
    MAX_ROWS,
    NEURONS_EXAMPLES,
    PROBE_EXAMPLES,
    PROBE_NOTES,
)
from lazarus.cli_output import write_stdout
from lazarus.commands import run_neurons, run_probe
from lazarus.commands_cache import run_cache_clear, run_cache_info
from lazarus.commands_causal import run_ablate, run_steer
from lazarus.commands_examples import run_examples
from lazarus.model_info import DEMO_MODEL
from lazarus.placement import DEVICES, DTYPES
from lazarus.text import escape


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one stderr line, like every other user error."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # `-l -1,-2` is a value, not an option: let argparse read lists of negative numbers.
        self._negative_number_matcher = re.compile(r"^-\d[\d.,\-]*$")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {escape(message)} (see {self.prog} --help)\n")

    def _print_message(self, message: str, file=None) -> None:  # type: ignore[no-untyped-def]
        if message and file in (None, sys.stdout):  # --help, --version: a failed write counts
            write_stdout(message)
        else:
            super()._print_message(message, file)


class _Once(argparse.Action):
    """An option that may be given once: a second -l is a mistake, not a silent override."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        if getattr(namespace, f"_{self.dest}_seen", False):
            example = {"layer": "-l 0,2,5-7", "neurons": "-n 808,1190"}.get(self.dest)
            parser.error(f"{option_string} was given twice (give it once"
                         + (f", with every value in it, e.g. {example})" if example else ")"))
        setattr(namespace, f"_{self.dest}_seen", True)
        setattr(namespace, self.dest, values)


def _add_site_options(parser: argparse.ArgumentParser, probe: bool = False) -> None:
    from lazarus.sites import SITE_HELP

    sites = "; ".join(f"{name}: {text}" for name, text in SITE_HELP.items())
    parser.add_argument("--site", choices=tuple(SITE_HELP), default="resid_post", action=_Once,
                        help=f"what to read in each block ({sites})")
    positions = "last (default), first, an index (negative from the end), mean"
    parser.add_argument("--position", default="last", action=_Once,
                        help=f"which token of each prompt: {positions}"
                             + ("" if probe else ", or all (every token, shown as strips)"))


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True,
                        help=f"Hugging Face model ID, local folder, or {DEMO_MODEL}")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where to run (default auto: cuda, then mps, then cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="weights' precision (default auto: the checkpoint's on a GPU, "
                             "float32 on CPU)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model's own Python code from the Hub (off by default)")
    parser.add_argument("--device-map", choices=("auto",), default=None,
                        help="spread a big model over the GPUs / offload to CPU (needs "
                             "accelerate)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the activation cache")


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

    neurons = commands.add_parser(
        "neurons",
        help="how individual neurons fire across prompts",
        description="Show how individual neurons fire across prompts: an activation map, an "
                    "ASCII heatmap, per-neuron statistics and, with --labels, per-label means.",
        epilog=DEFINITIONS + "\n" + NEURONS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_option(neurons)
    neurons.add_argument("-l", "--layer", required=True, action=_Once,
                         help="layer(s) to analyze: one (0-based; negative counts from the "
                              "end), a list and ranges (0,2,5-7), or all; several layers are "
                              "read in one pass")
    neurons.add_argument("-p", "--prompts", required=True,
                         help="prompts, pipe-separated ('2+2=|47*47=') or @file.txt "
                              "(one per line, blank lines skipped)")
    neurons.add_argument("-n", "--neurons", action=_Once,
                         help="neuron indices, comma-separated (e.g. 808,1190)")
    neurons.add_argument("--from-direction", metavar="FILE",
                         help="take the top neurons of a direction .npz saved by "
                              "'lazarus introspect probe --save-direction'")
    neurons.add_argument("--top-k", type=int, default=None,
                         help="how many neurons to take from --from-direction (default: 10); "
                              "with --auto-discover, at most this many of the strongest "
                              "survivors; without any of these, the top-k neurons with the "
                              "largest spread across the prompts are shown")
    neurons.add_argument("--labels", help="a label per prompt, pipe-separated, same order "
                                          "(or @file.txt)")
    neurons.add_argument("--auto-discover", action="store_true",
                         help="test every neuron of the layer against --labels (Cohen's d for "
                              "two labels, eta-squared for more; permutation p corrected "
                              "family-wise by the max-statistic over all neurons; bootstrap 95%% "
                              "CI) and show the --top-k strongest that survive")
    neurons.add_argument("--permutations", type=int, default=None, metavar="N",
                         help="label shuffles for --auto-discover (default: 1000; the smallest "
                              "possible p is 1/(N+1))")
    _add_site_options(neurons)
    neurons.add_argument("-o", "--output", metavar="FILE",
                         help="also save every value: FILE.json (the spec's format), or "
                              "FILE.csv (one row per layer x prompt x neuron)")
    neurons.add_argument("--plot", metavar="FILE", help="also draw the heatmap (and, with "
                         "--labels, per-label means with 95%% intervals) as .png or .svg "
                         "(needs: pip install 'lazarus[plot]')")
    neurons.add_argument("--max-rows", type=int, default=None, metavar="N",
                         help=f"show at most N prompts in the map and heatmap, then one row "
                              f"with the mean of the rest (default {MAX_ROWS}; 0: every row)")
    neurons.add_argument("--color", action="store_true",
                         help="colour the heatmap on a scale centred at 0, when standard "
                              "output is a colour terminal")
    _add_model_options(neurons)
    neurons.set_defaults(run=run_neurons)

    probe = commands.add_parser(
        "probe",
        help="find where two classes of prompts separate, and save the direction",
        description="Train cross-validated linear probes between two classes of prompts at "
                    "each layer, compare them with a shuffled-label baseline, and save the "
                    "separating direction of the best layer for 'introspect neurons "
                    "--from-direction'.",
        epilog=PROBE_NOTES + "\n" + DEFINITIONS + "\n" + PROBE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_option(probe)
    probe.add_argument("--class-a", required=True,
                       help="class A prompts, pipe-separated or @file.txt (positive class)")
    probe.add_argument("--class-b", required=True,
                       help="class B prompts, pipe-separated or @file.txt")
    probe.add_argument("--label-a", default="class_a", help="name of class A (default: class_a)")
    probe.add_argument("--label-b", default="class_b", help="name of class B (default: class_b)")
    probe.add_argument("-l", "--layer", action=_Once,
                       help="probe only these layers (one, a list and ranges such as 0,2,5-7, "
                            "or all; default: every layer, and pick the best)")
    probe.add_argument("--method", choices=("logistic", "difference"), default="logistic",
                       help="how the direction is fitted (default: logistic)")
    probe.add_argument("--save-direction", metavar="FILE.npz",
                       help="save the best layer's direction for 'neurons --from-direction'")
    probe.add_argument("-t", "--test", metavar="PROMPTS",
                       help="prompts to classify with the fitted probe (pipe-separated or @file)")
    probe.add_argument("--test-labels", metavar="LABELS",
                       help="the true class of each --test prompt (--label-a or --label-b), "
                            "pipe-separated or @file, for a held-out test accuracy")
    probe.add_argument("--permutations", type=int, default=None, metavar="N",
                       help="shuffled labellings for the baseline and the p-value (default: "
                            "200; the smallest p is 1/(N+1))")
    probe.add_argument("--alpha", type=float, default=None,
                       help="significance level: a layer is marked best only when p < alpha "
                            "(default: 0.05)")
    probe.add_argument("--force-save", action="store_true",
                       help="write --save-direction even when no layer beats chance")
    probe.add_argument("-o", "--output", metavar="FILE.json", help="also save the results as JSON")
    probe.add_argument("--plot", metavar="FILE", help="also draw accuracy by layer over the "
                       "shuffled baseline, as .png or .svg (needs: pip install 'lazarus[plot]')")
    _add_site_options(probe, probe=True)
    _add_model_options(probe)
    probe.set_defaults(run=run_probe)
    _add_causal_commands(commands)
    _add_examples_command(commands)

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
                       ).set_defaults(run=run_cache_info)
    actions.add_parser("clear", help="delete every cached row"
                       ).set_defaults(run=run_cache_clear)
    return parser


def _add_causal_commands(commands: argparse._SubParsersAction) -> None:
    """`ablate` and `steer` (help texts in `cli_help`)."""
    from lazarus import cli_help
    from lazarus.sites import SITE_HELP

    ablate = commands.add_parser(
        "ablate", help="knock neurons or components out and measure the loss, against chance",
        description="Ablate neurons (by id or a direction's top-k) or whole components at one "
                    "or more layers, measure what each prompt loses, and compare with as many "
                    "random neurons.",
        epilog=cli_help.ABLATE_NOTES + "\n" + cli_help.ABLATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_option(ablate)
    ablate.add_argument("-l", "--layer", required=True, action=_Once,
                        help="layer(s): one, a list and ranges (0,2,5-7), or all")
    ablate.add_argument("-p", "--prompts", required=True,
                        help="prompts, or 'prompt:answer' pairs, pipe-separated or @file.txt")
    ablate.add_argument("--labels", help="a label per prompt (pipe-separated or @file.txt)")
    ablate.add_argument("-n", "--neurons", action=_Once, help="neuron ids, comma-separated")
    ablate.add_argument("--from-direction", metavar="FILE",
                        help="ablate the top neurons of a probe's direction .npz")
    ablate.add_argument("--top-k", type=int, default=10,
                        help="how many neurons of --from-direction (default 10)")
    ablate.add_argument("--component", choices=("mlp", "attention"),
                        help="ablate a whole sub-block's output instead of neurons")
    ablate.add_argument("--site", choices=tuple(SITE_HELP), default=None, action=_Once,
                        help="where the neurons are (default: the direction's, else "
                             "resid_post)")
    ablate.add_argument("--method", choices=("zero", "mean", "resample"), default="zero",
                        help="what the values become (default zero)")
    ablate.add_argument("--reference", metavar="PROMPTS",
                        help="prompts for mean and resample values (default: --prompts)")
    ablate.add_argument("--controls", type=int, default=100, metavar="N",
                        help="random-neuron draws for the control (default 100; 0: none)")
    ablate.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    ablate.add_argument("--sweep", action="store_true",
                        help="ablate one layer of -l at a time instead of all at once")
    ablate.add_argument("--max-tokens", type=int, default=8, metavar="N",
                        help="greedy tokens generated after bare prompts (default 8)")
    ablate.add_argument("-o", "--output", metavar="FILE.json",
                        help="also save every number as JSON")
    _add_model_options(ablate)
    ablate.set_defaults(run=run_ablate)

    steer = commands.add_parser(
        "steer", help="add a direction while the model generates, and measure the change",
        description="Add a direction (a probe's, or the difference of two prompt sets) or "
                    "neuron values at a layer, at every position while generating, and show "
                    "the continuations and the change in named tokens' log-probabilities.",
        epilog=cli_help.STEER_NOTES + "\n" + cli_help.STEER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_option(steer)
    steer.add_argument("-p", "--prompts", required=True,
                       help="prompts, pipe-separated or @file.txt")
    steer.add_argument("-l", "--layer", action=_Once,
                       help="the layer (default: the direction file's)")
    steer.add_argument("--direction", metavar="FILE", help="a probe's direction .npz")
    steer.add_argument("--positive", metavar="PROMPTS",
                       help="with --negative: steer along mean(positive) - mean(negative)")
    steer.add_argument("--negative", metavar="PROMPTS")
    steer.add_argument("-n", "--neurons", action=_Once, metavar="ID:VALUE,...",
                       help="add coefficient x value to each neuron (e.g. 808:2.5,1190:-1)")
    steer.add_argument("--site", choices=tuple(SITE_HELP), default=None, action=_Once,
                       help="where to add (default: the direction's, else resid_post)")
    steer.add_argument("--coefficient", metavar="C", help="one coefficient (default 1)")
    steer.add_argument("--compare", metavar="C1,C2,...",
                       help="several coefficients, e.g. -2,-1,1,2 (coefficient 0 always runs)")
    steer.add_argument("--clamp", action="store_true",
                       help="with --neurons: set them to coefficient x value at every token "
                            "instead of adding (coefficient 0: the unmodified model)")
    steer.add_argument("--absolute", action="store_true",
                       help="scale 1 instead of the mean activation norm (--neurons values "
                            "are always absolute)")
    steer.add_argument("--max-tokens", type=int, default=20, metavar="N",
                       help="tokens to generate (default 20)")
    steer.add_argument("--temperature", type=float, default=0.0,
                       help="0 for greedy (default), else sample at this temperature")
    steer.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    steer.add_argument("--tokens", metavar="WORDS",
                       help="words whose log-probability change to report ('hard|easy')")
    steer.add_argument("-o", "--output", metavar="FILE.json", help="also save as JSON")
    _add_model_options(steer)
    steer.set_defaults(run=run_steer)


def _add_examples_command(commands: argparse._SubParsersAction) -> None:
    """`examples` (help texts in `cli_help`)."""
    from lazarus import cli_help
    from lazarus.sites import SITE_HELP

    examples = commands.add_parser(
        "examples", help="top- and bottom-activating tokens of neurons over a corpus",
        description="Scan every token of a corpus and show, per neuron, the tokens it fires on "
                    "most and least, in context, with its mean, std, share positive, quantiles "
                    "and a histogram. Streamed, resumable, and optionally on Ray.",
        epilog=cli_help.EXAMPLES_NOTES + "\n" + cli_help.EXAMPLES_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_option(examples)
    examples.add_argument("-l", "--layer", required=True, action=_Once,
                          help="the layer (0-based; negative counts from the end)")
    examples.add_argument("--corpus", required=True, metavar="FILE",
                          help="a .txt (one document per line), .jsonl or .parquet file, or "
                               "hf:org/name[:file] for a dataset in the local Hugging Face "
                               "cache")
    examples.add_argument("--text-field", default="text", metavar="NAME",
                          help="the text field of a .jsonl or column of a .parquet corpus "
                               "(default: text)")
    examples.add_argument("-n", "--neurons", action=_Once,
                          help="neuron ids, comma-separated (default: every neuron of the site)")
    examples.add_argument("--from-direction", metavar="FILE",
                          help="take the --top-k neurons of a probe's direction .npz")
    examples.add_argument("--top-k", type=int, default=None,
                          help="how many neurons of --from-direction (default 10)")
    examples.add_argument("--site", choices=tuple(SITE_HELP), default="resid_post",
                          action=_Once, help="what to read (default resid_post)")
    examples.add_argument("--examples", type=int, default=10, metavar="N",
                          help="top and bottom tokens kept per neuron (default 10)")
    examples.add_argument("--window", type=int, default=64, metavar="W",
                          help="tokens per window (default 64)")
    examples.add_argument("--stride", type=int, default=None, metavar="S",
                          help="tokens between window starts (default: --window)")
    examples.add_argument("-o", "--output", metavar="FILE",
                          help="also save: FILE.json (everything), FILE.parquet (one row "
                               "per example with its neuron's summary; needs pyarrow), or "
                               "FILE.html (a self-contained page)")
    examples.add_argument("--work-dir", metavar="DIR",
                          help="where shard summaries are kept for resuming (default: "
                               "<cache folder>/examples)")
    examples.add_argument("--shard-windows", type=int, default=256, metavar="N",
                          help="windows per shard, the unit of work and of resume (default 256)")
    examples.add_argument("--ray", action="store_true",
                          help="run the shards on local Ray actors (pip install 'lazarus[ray]')")
    examples.add_argument("--ray-workers", type=int, metavar="N",
                          help="model actors with --ray (default: one per GPU of the cluster, "
                               "or its CPUs / torch threads)")
    examples.add_argument("--ray-address", metavar="ADDR",
                          help="run the shards on the Ray cluster at ADDR instead (its workers "
                               "must see --work-dir and the model at the same paths)")
    examples.add_argument("--color", action="store_true",
                          help="mark the tokens in colour when standard output is a colour "
                               "terminal (else in brackets)")
    _add_model_options(examples)
    examples.set_defaults(run=run_examples)
