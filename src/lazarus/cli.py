"""`lazarus introspect …`: argv → library calls → rendered text on stdout.

The only module that prints or exits. User mistakes (`LazarusError`, bad arguments) become one
line on stderr and exit status 2, with no traceback. torch and transformers are imported only
once a command needs a model, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lazarus import __version__
from lazarus.errors import LazarusError
from lazarus.loading import DEMO_MODEL
from lazarus.placement import DEVICES, DTYPES
from lazarus.signals import Terminated, sigterm_raises
from lazarus.text import escape, terminal_safe

if TYPE_CHECKING:
    from lazarus.api import Model

DEFINITIONS = f"""\
definitions:
  neuron   one coordinate of a site of decoder block L at one token position; by default the
           residual stream output by the block (resid_post) at the prompt's last token, before
           the final norm. At MoE layers, mlp_post neuron e*I+u is unit u of expert e, with a
           value only for tokens routed to that expert
  layer    0 is the first block's output (not the embeddings); layer L equals Hugging Face's
           output_hidden_states[L + 1], except that for the last block HF applies the final
           norm and lazarus does not; negative layers count from the end (-1 = last block)
  prompts  tokenized as the model's tokenizer does by default (its own special tokens, no chat
           template)
  std      population standard deviation (ddof=0)

models:
  a Hugging Face Hub ID (org/name; the local cache is used first, so cached models work
  offline), a local folder saved with save_pretrained, or '{DEMO_MODEL}', the small arithmetic
  model that ships with lazarus
"""


PROBE_NOTES = """\
statistics:
  accuracy   held out: mean ± std over stratified folds (as many as the smaller class holds,
             at most 5; one prompt of the smaller class held out per fold for tiny sets)
  baseline   the same cross-validation on shuffled labellings (--permutations, default 200),
             per layer: accuracy that means nothing
  p          permutation test of the whole layer search: the share of shuffled labellings
             whose best layer did at least as well as the real labels' best layer,
             (1 + count) / (1 + shuffles)
  best layer highest mean accuracy (ties go to the larger held-out separation, then the
             earlier layer), marked only when p < --alpha (default 0.05); otherwise no layer
             beats chance, no direction is saved without --force-save, and the exit status is 3
  direction  unit length in raw activation coordinates, positive = more like class A;
             logistic: L2-penalised logistic regression on centred raw activations;
             difference: mean(A) - mean(B)
  separation in-sample: Cohen's d of the training prompts' projections on the direction
  ranking    top neurons are ranked by the separation lost when the neuron is left out of the
             direction (stored in the file as 'importance')
"""


NEURONS_EXAMPLES = f"""\
examples:
  lazarus introspect neurons -m {DEMO_MODEL} -l 0 -p "2+3=|45*45=|58*67=" -n 78,191
  lazarus introspect neurons -m {DEMO_MODEL} -l 0,-1 -p @prompts.txt --labels @labels.txt -o out.csv
  lazarus introspect neurons -m {DEMO_MODEL} -l 0 -p "2+3=|45*45=" \\
      --from-direction difficulty.npz --top-k 6
"""


PROBE_EXAMPLES = f"""\
examples:
  lazarus introspect probe -m {DEMO_MODEL} --class-a "47*47=|67*83=|53*59=" --label-a hard \\
      --class-b "20+30=|10*10=|11+11=" --label-b easy --save-direction difficulty.npz
  lazarus introspect probe -m {DEMO_MODEL} --class-a @hard.txt --class-b @easy.txt -l 0-2 \\
      -t "58*67=|2+2=" -o probe.json
"""


EXIT_STATUS = """\
exit status:
  0    done
  2    a mistake in the input: one line on stderr says what and how to fix it
  3    ran fine, found nothing: probe found no layer that beats chance (p >= --alpha); the
       report says why, and no direction was saved unless --force-save
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM; no temporary file is left
  141  the reader of stdout went away (e.g. '| head'): the run ends quietly, output files
       already written
"""


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
            _write_stdout(message)
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
    """`ablate` and `steer` (help texts in `causal_help`)."""
    from lazarus import causal_help
    from lazarus.sites import SITE_HELP

    ablate = commands.add_parser(
        "ablate", help="knock neurons or components out and measure the loss, against chance",
        description="Ablate neurons (by id or a direction's top-k) or whole components at one "
                    "or more layers, measure what each prompt loses, and compare with as many "
                    "random neurons.",
        epilog=causal_help.ABLATE_NOTES + "\n" + causal_help.ABLATE_EXAMPLES,
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
        epilog=causal_help.STEER_NOTES + "\n" + causal_help.STEER_EXAMPLES,
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
    steer.add_argument("--absolute", action="store_true",
                       help="scale 1 instead of the mean activation norm")
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


class _StdoutFailed(Exception):
    """Standard output cannot take the report: a closed pipe, a full disk."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))
        self.broken_pipe = isinstance(err, BrokenPipeError)


EXIT_USER_ERROR = 2
EXIT_NOTHING_FOUND = 3  # ran fine, but found nothing (probe: no layer beats chance)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head -1`'s cat
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors are one stderr line and exit status 2.

    A reader that goes away (`lazarus … | head -1`) ends the run quietly with status 141, as
    SIGPIPE ends other Unix tools; output files are written before the report is printed, so
    they are complete all the same. Ctrl-C exits 130 and SIGTERM 143, with one line on stderr
    and no temporary files left.
    """
    if sys.stdout is None:  # started with `>&-`: nowhere to put the report
        error("standard output is closed (run with it open, e.g. > /dev/null)")
        return EXIT_USER_ERROR
    with sigterm_raises():
        try:
            return _run(argv)
        except LazarusError as err:
            error(str(err))
            return EXIT_USER_ERROR
        except _StdoutFailed as err:
            _silence_stdout()
            if err.broken_pipe:
                return EXIT_BROKEN_PIPE
            error(f"cannot write to standard output: {err} (free some space, or send the "
                  "output elsewhere)")
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            note("interrupted")
            return EXIT_INTERRUPTED
        except Terminated:
            note("interrupted")
            return EXIT_TERMINATED


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        _flush_stdout()
        return int(stop.code or 0)
    except OSError as err:  # parse_args reads no file: it failed to print --help
        raise _StdoutFailed(err) from None
    from lazarus.inputs import check_utf8

    for name, value in vars(args).items():
        if isinstance(value, str):
            check_utf8(value, f"--{name.replace('_', '-')}")
    code = args.run(args)
    _flush_stdout()
    return code


def out(text: str, keep_color: bool = False) -> None:
    """Print `text` (control characters escaped; with `keep_color`, except colour codes) and a
    newline on stdout, now."""
    _write_stdout(terminal_safe(text, keep_color) + "\n")


def _write_stdout(text: str) -> None:
    """All of `text` on stdout, or `_StdoutFailed`: a large report is written in a loop on the
    file descriptor, since one write to a pipe or a nearly full disk may take only part of it."""
    stream = sys.stdout
    if stream is None:
        raise _StdoutFailed(OSError(errno.EBADF, "standard output is closed"))
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        fd = None  # not a file (captured in tests): its own write is all there is
    try:
        if fd is None:
            stream.write(text)
            stream.flush()
            return
        stream.flush()
        encoding = getattr(stream, "encoding", None) or "utf-8"
        view = memoryview(text.encode(encoding, errors="backslashreplace"))
        while view:
            view = view[os.write(fd, view):]
    except OSError as err:
        raise _StdoutFailed(err) from None


def _flush_stdout() -> None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as err:
        raise _StdoutFailed(err) from None


def _silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that the interpreter's final flush of the
    output that could not be written neither fails nor prints "Exception ignored"."""
    if sys.stdout is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (captured in tests): nothing will flush it at exit


def _stderr(line: str) -> None:
    """One line on stderr, control characters escaped, so a message is always one line."""
    with contextlib.suppress(OSError):  # else there is nowhere left to report to
        print(escape(line), file=sys.stderr, flush=True)


def error(message: str) -> None:
    _stderr(f"lazarus: error: {message}")


def warn(message: str) -> None:
    _stderr(f"lazarus: warning: {message}")


def note(message: str) -> None:
    _stderr(f"lazarus: {message}")


# What a Hugging Face model folder's loader may read; other files there (a results.json from a
# previous run, say) are not inputs.
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
               "merges.txt", "chat_template.json", "*.jinja", "*.index.json", "*.safetensors",
               "*.bin", "*.pt", "*.pth", "*.gguf", "*.model", "*.tiktoken", "*.py")


def _inputs_of(args: argparse.Namespace, *names: str) -> list[tuple[str, str]]:
    """(option, path) of every file this run reads: `@file` lists, a direction file, and a local
    model folder's config, tokenizer and weights (`MODEL_FILES`)."""
    from fnmatch import fnmatch

    from lazarus.inputs import file_of

    found = []
    for name in names:
        value = getattr(args, name)
        path = value if name == "from_direction" else (value and file_of(value))
        if path:
            found.append((f"--{name.replace('_', '-')}", path))
    if os.path.isdir(args.model):
        with contextlib.suppress(OSError):
            found += [("--model", entry.path) for entry in os.scandir(args.model)
                      if entry.is_file() and any(fnmatch(entry.name, p) for p in MODEL_FILES)]
    return found


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal: prompts done of
    the prompts given, and what is going on (loading, how many came from the cache)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()
        self.finished = False

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        if not self.enabled or self.finished:
            return
        filled = int(30 * done / max(total, 1))
        elapsed = time.monotonic() - self.started
        extra = f" ({detail})" if detail else ""
        with contextlib.suppress(OSError):
            sys.stderr.write(f"\r\x1b[K{self.what} [{'#' * filled}{'.' * (30 - filled)}] "
                             f"{done}/{total} {elapsed:.1f}s{escape(extra)}")
            if done >= total:
                sys.stderr.write("\n")
                self.finished = True
            sys.stderr.flush()


MAX_ROWS = 50  # default row limit of the map and heatmap, beyond which a summary row stands in


def _max_rows(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise LazarusError(f"--max-rows must be 0 (no limit) or more (got {value})")
    return MAX_ROWS if value is None else value or None


def _color(args: argparse.Namespace) -> bool:
    """--color: only on a terminal that shows colour."""
    if not args.color:
        return False
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        note("--color: standard output is not a colour terminal, so the heatmap is plain")
        return False
    return True


def _model(args: argparse.Namespace) -> Model:
    """A handle for this run: only the blocks the run needs are loaded."""
    from lazarus.api import Model

    return Model(args.model, device=args.device, dtype=args.dtype,
                 trust_remote_code=args.trust_remote_code, device_map=args.device_map,
                 use_cache=not args.no_cache, whole=False, notify=note, warn=warn)


def _write_output(path: str | None, document: dict, table: str | None = None) -> None:
    """`-o`: JSON, or the tidy CSV table when the name ends in .csv."""
    from lazarus.files import write_text_atomically

    if path is None:
        return
    if path.lower().endswith(".csv"):
        if table is None:
            raise LazarusError(f"{path}: this command writes JSON only (use a .json name)")
        write_text_atomically(path, table)
    else:
        write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def run_neurons(args: argparse.Namespace) -> int:
    from lazarus import inputs
    from lazarus.files import check_outputs_apart, check_writable
    from lazarus.plot import check_plot_path, plot_neurons
    from lazarus.render_layers import render_result

    # Cheap checks first: nothing heavy has happened yet.
    if args.neurons is not None and args.from_direction is not None:
        raise LazarusError("--neurons and --from-direction were both given (choose one)")
    prompts = inputs.parse_prompts(args.prompts)
    labels = None if args.labels is None else inputs.parse_labels(args.labels, len(prompts))
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    if args.top_k is not None and args.top_k < 1:
        raise LazarusError(f"--top-k must be at least 1 (got {args.top_k})")
    if args.top_k is not None and neurons is not None:
        warn("--top-k is ignored with --neurons (it applies to --from-direction, or to the "
             "default choice of neurons)")
    max_rows = _max_rows(args.max_rows)
    if args.permutations is not None and not args.auto_discover:
        warn("--permutations is ignored without --auto-discover")
    if args.auto_discover and labels is None:
        raise LazarusError("--auto-discover needs --labels (a label per prompt) to test "
                           "neurons against")
    if args.auto_discover and (neurons is not None or args.from_direction is not None):
        raise LazarusError("--auto-discover chooses the neurons itself: leave out "
                           f"{'--neurons' if neurons is not None else '--from-direction'}")
    if args.output is not None:
        check_writable(args.output)
    if args.plot is not None:
        check_plot_path(args.plot)
    check_outputs_apart({"--output": args.output, "--plot": args.plot},
                        _inputs_of(args, "prompts", "labels", "from_direction"))
    direction = None
    if args.from_direction is not None:
        from lazarus.directions import load_direction

        direction = load_direction(args.from_direction)
    model = _model(args)
    result = model.neurons(
        prompts, model.layers(args.layer), site=args.site, position=args.position,
        neurons=neurons, direction=direction,
        top_k=10 if args.top_k is None else args.top_k, labels=labels,
        progress=ProgressBar("capturing"), auto_discover=args.auto_discover,
        **({} if args.permutations is None else {"permutations": args.permutations}))
    color = _color(args)
    report = render_result(result, max_rows=max_rows, color=color)
    # Files before the report, so that a closed pipe cannot lose them.
    _write_output(args.output, result.to_json(), result.to_csv())
    if args.plot is not None:
        plot_neurons(result, args.plot)
    out(report, keep_color=color)
    for path in (args.output, args.plot):
        if path is not None:
            note(f"saved {path}")
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from lazarus import inputs
    from lazarus.files import check_outputs_apart, check_writable
    from lazarus.plot import check_plot_path, plot_probe
    from lazarus.probe import check_settings, check_test_labels
    from lazarus.probing import check_inputs
    from lazarus.render_probe import render_probe_report

    class_a = inputs.parse_prompts(args.class_a, "class-a")
    class_b = inputs.parse_prompts(args.class_b, "class-b")
    check_inputs(len(class_a), len(class_b), args.label_a, args.label_b, args.method)
    tests = [] if args.test is None else inputs.parse_prompts(args.test, "test")
    test_labels = None
    if args.test_labels is not None:
        if not tests:
            raise LazarusError("--test-labels needs --test (the prompts they label)")
        test_labels = inputs.parse_labels(args.test_labels, len(tests), "test-labels")
        check_test_labels(test_labels, args.label_a, args.label_b)
    settings = {key: value for key, value in (("permutations", args.permutations),
                                              ("alpha", args.alpha)) if value is not None}
    check_settings(args.method, **settings)
    for path in (args.save_direction, args.output):
        if path is not None:
            check_writable(path)
    if args.plot is not None:
        check_plot_path(args.plot)
    check_outputs_apart({"--save-direction": args.save_direction, "--output": args.output,
                         "--plot": args.plot},
                        _inputs_of(args, "class_a", "class_b", "test", "test_labels"))
    if args.output is not None and args.output.lower().endswith(".csv"):
        raise LazarusError(f"--output {args.output}: probe writes JSON only (use a .json name)")
    model = _model(args)
    result = model.probe(class_a, class_b, label_a=args.label_a, label_b=args.label_b,
                         layers=None if args.layer is None else model.layers(args.layer),
                         site=args.site, position=args.position, method=args.method,
                         test=tests, test_labels=test_labels, progress=ProgressBar("capturing"),
                         **settings)
    report = result.report
    save = args.save_direction is not None and (report.significant or args.force_save)
    # Files first, so that a closed pipe on stdout cannot lose them.
    if save:
        result.save_direction(args.save_direction, force=args.force_save)
    _write_output(args.output, result.to_json())
    if args.plot is not None:
        plot_probe(report, args.plot)
    text = render_probe_report(report, test_prompts=tests, test=result.test).rstrip("\n")
    if (result.site, result.position) != ("resid_post", "last"):
        text = f"(site: {result.site}, position: {result.position})\n{text}"
    out(text)
    if report.hopeless:
        warn(f"with {report.count_a} and {report.count_b} prompts and {report.permutations} "
             f"shuffles no result can reach p < {report.alpha:g} (smallest possible p = "
             f"{report.smallest_p:.2g}); add prompts")
    if save:
        note(f"saved the layer {report.top_layer} direction to {args.save_direction}"
             + ("" if report.significant else " (forced: no layer beats chance)"))
    elif args.save_direction is not None:
        note(f"no layer beats chance (p = {report.p_value:.2g} >= {report.alpha:g}), so "
             f"{args.save_direction} was not written (add --force-save to write it anyway)")
    for path in (args.output, args.plot):
        if path is not None:
            note(f"saved {path}")
    return 0 if report.significant else EXIT_NOTHING_FOUND


def _json_output(args: argparse.Namespace, inputs: list[tuple[str, str]]) -> None:
    """Cheap checks of -o for the JSON-only commands, before anything loads."""
    from lazarus.files import check_outputs_apart, check_writable

    if args.output is None:
        return
    if args.output.lower().endswith(".csv"):
        raise LazarusError(f"--output {args.output}: this command writes JSON only (use a .json "
                           "name)")
    check_writable(args.output)
    check_outputs_apart({"--output": args.output}, inputs)


def run_ablate(args: argparse.Namespace) -> int:
    from lazarus import inputs
    from lazarus.ablate import split_answers
    from lazarus.render_causal import render_ablation

    chosen = [name for name, value in (("--neurons", args.neurons),
                                       ("--from-direction", args.from_direction),
                                       ("--component", args.component)) if value is not None]
    if len(chosen) != 1:
        raise LazarusError("say what to ablate: one of --neurons, --from-direction or "
                           "--component" + (f" (not {' and '.join(chosen)})" if chosen else ""))
    prompts, answers = split_answers(inputs.parse_prompts(args.prompts))
    labels = None if args.labels is None else inputs.parse_labels(args.labels, len(prompts))
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    reference = None if args.reference is None else inputs.parse_prompts(args.reference,
                                                                         "reference")
    _json_output(args, _inputs_of(args, "prompts", "labels", "reference", "from_direction"))
    direction = None
    if args.from_direction is not None:
        from lazarus.directions import load_direction

        direction = load_direction(args.from_direction)
    model = _model(args)
    bar = ProgressBar("ablating")
    result = model.ablate(prompts, model.layers(args.layer), answers=answers, labels=labels,
                          neurons=neurons, direction=direction, top_k=args.top_k,
                          component=args.component, site=args.site, method=args.method,
                          reference=reference, controls=args.controls, seed=args.seed,
                          sweep=args.sweep, max_tokens=args.max_tokens,
                          progress=lambda done, total: bar(done, total))
    report = render_ablation(result)
    _write_output(args.output, result.to_json())
    out(report)
    if args.output is not None:
        note(f"saved {args.output}")
    return 0


def run_steer(args: argparse.Namespace) -> int:
    from lazarus import inputs
    from lazarus.render_causal import render_steer
    from lazarus.steer import parse_coefficients, parse_neuron_values

    if args.coefficient is not None and args.compare is not None:
        raise LazarusError("--coefficient and --compare were both given (choose one)")
    coefficients = parse_coefficients(args.compare) if args.compare is not None else \
        parse_coefficients(args.coefficient or "1", "--coefficient")
    prompts = inputs.parse_prompts(args.prompts)
    positive = None if args.positive is None else inputs.parse_prompts(args.positive, "positive")
    negative = None if args.negative is None else inputs.parse_prompts(args.negative, "negative")
    neurons = None if args.neurons is None else parse_neuron_values(args.neurons)
    tokens = [] if args.tokens is None else [t.strip() for t in
                                             inputs.parse_list(args.tokens, "tokens", "word")]
    read = _inputs_of(args, "prompts", "positive", "negative", "tokens")
    _json_output(args, read + ([("--direction", args.direction)] if args.direction else []))
    direction = None
    if args.direction is not None:
        from lazarus.directions import load_direction

        direction = load_direction(args.direction)
    model = _model(args)
    layers = None if args.layer is None else model.layers(args.layer)
    if layers is not None and len(layers) > 1:
        raise LazarusError(f"steer adds at one layer; -l {args.layer} names {len(layers)} "
                           "(give one)")
    result = model.steer(prompts, None if layers is None else layers[0],
                         direction=direction, positive=positive, negative=negative,
                         neurons=neurons, coefficients=coefficients, absolute=args.absolute,
                         site=args.site, tokens=tokens, max_tokens=args.max_tokens,
                         temperature=args.temperature, seed=args.seed)
    report = render_steer(result)
    _write_output(args.output, result.to_json())
    out(report)
    if args.output is not None:
        note(f"saved {args.output}")
    return 0


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def run_cache_info(args: argparse.Namespace) -> int:
    from lazarus import cache

    summary = cache.describe()
    lines = [f"cache folder: {summary.folder}",
             f"{summary.rows} cached rows, {_size(summary.bytes)}"]
    lines += [f"  {model.model_id}: {model.rows} rows, {_size(model.bytes)} ({model.source}; "
              f"{model.folder.name})" for model in summary.models]
    out("\n".join(lines))
    return 0


def run_cache_clear(args: argparse.Namespace) -> int:
    from lazarus import cache

    removed = cache.clear()
    out(f"removed {removed.rows} cached rows ({_size(removed.bytes)}) from {removed.folder}")
    if removed.left:
        raise LazarusError(f"{removed.left} file(s) under {removed.folder} could not be removed "
                           "(check their permissions, then run 'lazarus cache clear' again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
