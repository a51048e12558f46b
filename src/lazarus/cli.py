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

from lazarus import __version__
from lazarus.collect import ModelSettings
from lazarus.errors import LazarusError
from lazarus.loading import DEMO_MODEL, DEVICES, DTYPES
from lazarus.signals import Terminated, sigterm_raises
from lazarus.text import escape, terminal_safe

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
  accuracy   mean ± std over stratified folds (as many as the smaller class holds, at most 5;
             one prompt of the smaller class held out per fold for tiny sets)
  baseline   the same cross-validation on 20 shuffled labellings: accuracy that means nothing
  best layer highest mean accuracy; ties go to the larger held-out separation, then the earlier
             layer
  direction  unit length in raw activation coordinates, positive = more like class A;
             logistic: L2-penalised logistic regression on centred raw activations;
             difference: mean(A) - mean(B)
  separation Cohen's d of the prompts' projections on the direction
  ranking    top neurons are ranked by the separation lost when the neuron is left out of the
             direction (stored in the file as 'importance')
"""


EXIT_STATUS = """\
exit status:
  0    done
  2    a mistake in the input: one line on stderr says what and how to fix it
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM; no temporary file is left
  141  the reader of stdout went away (e.g. '| head'): the run ends quietly, output files
       already written
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one stderr line, like every other user error."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        # `-l -1,-2` is a value, not an option: let argparse read lists of negative numbers.
        self._negative_number_matcher = re.compile(r"^-\d[\d,\-]*$")

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


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True,
                        help=f"Hugging Face model ID, local folder, or {DEMO_MODEL}")
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


def _settings(args: argparse.Namespace) -> ModelSettings:
    return ModelSettings(device=args.device, dtype=args.dtype,
                         trust_remote_code=args.trust_remote_code,
                         device_map=args.device_map, use_cache=not args.no_cache)


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
        epilog=DEFINITIONS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(neurons)
    neurons.add_argument("-l", "--layer", required=True, action=_Once,
                         help="layer(s) to analyze: one (0-based; negative counts from the "
                              "end), a list and ranges (0,2,5-7), or all; several layers are "
                              "read in one pass")
    _add_site_options(neurons)
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
    neurons.add_argument("-o", "--output", metavar="FILE", help="also save the results as JSON")
    neurons.set_defaults(run=run_neurons)

    probe = commands.add_parser(
        "probe",
        help="find where two classes of prompts separate, and save the direction",
        description="Train cross-validated linear probes between two classes of prompts at "
                    "each layer, compare them with a shuffled-label baseline, and save the "
                    "separating direction of the best layer for 'introspect neurons "
                    "--from-direction'.",
        epilog=PROBE_NOTES + "\n" + DEFINITIONS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(probe)
    probe.add_argument("--class-a", required=True,
                       help="class A prompts, pipe-separated or @file.txt (positive class)")
    probe.add_argument("--class-b", required=True,
                       help="class B prompts, pipe-separated or @file.txt")
    probe.add_argument("--label-a", default="class_a", help="name of class A (default: class_a)")
    probe.add_argument("--label-b", default="class_b", help="name of class B (default: class_b)")
    probe.add_argument("-l", "--layer", action=_Once,
                       help="probe only these layers (one, a list and ranges such as 0,2,5-7, "
                            "or all; default: every layer, and pick the best)")
    _add_site_options(probe, probe=True)
    probe.add_argument("--method", choices=("logistic", "difference"), default="logistic",
                       help="how the direction is fitted (default: logistic)")
    probe.add_argument("--save-direction", metavar="FILE.npz",
                       help="save the best layer's direction for 'neurons --from-direction'")
    probe.add_argument("-t", "--test", metavar="PROMPTS",
                       help="prompts to classify with the fitted probe (pipe-separated or @file)")
    probe.add_argument("-o", "--output", metavar="FILE.json", help="also save the results as JSON")
    probe.set_defaults(run=run_probe)

    cache = groups.add_parser(
        "cache", help="the activation cache: what it holds, and clearing it",
        description="Captured rows are cached per model (identified by its files on disk), "
                    "layer, site, token position, dtype, device type and prompt, so re-runs on "
                    "the same prompts load no model. Folder: $LAZARUS_CACHE_DIR, else "
                    "$XDG_CACHE_HOME/lazarus, else ~/.cache/lazarus. Skip it with --no-cache.")
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True,
                                   parser_class=_Parser)
    actions.add_parser("info", help="show the cache folder and what it holds"
                       ).set_defaults(run=run_cache_info)
    actions.add_parser("clear", help="delete every cached row"
                       ).set_defaults(run=run_cache_clear)
    return parser


class _StdoutFailed(Exception):
    """Standard output cannot take the report: a closed pipe, a full disk."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))
        self.broken_pipe = isinstance(err, BrokenPipeError)


EXIT_USER_ERROR = 2
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


def out(text: str) -> None:
    """Print `text` (control characters escaped) and a newline on stdout, now."""
    _write_stdout(terminal_safe(text) + "\n")


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


def _same_model(recorded: str, given: str) -> bool:
    """Equal IDs, or two spellings of the same local folder."""
    if recorded == given:
        return True
    return os.path.isdir(given) and os.path.realpath(recorded) == os.path.realpath(given)


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
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        filled = int(30 * done / max(total, 1))
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"\r{self.what} [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{done}/{total} {elapsed:.1f}s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run_neurons(args: argparse.Namespace) -> int:
    from lazarus import inputs
    from lazarus.directions import load_direction
    from lazarus.discover import PERMUTATIONS
    from lazarus.files import check_outputs_apart, check_writable, write_text_atomically
    from lazarus.loading import read_model_info
    from lazarus.neurons import analyse_neurons
    from lazarus.positions import parse_position, same_token
    from lazarus.render_layers import render_result, result_json

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
    top_k = 10 if args.top_k is None else args.top_k
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
    check_outputs_apart({"--output": args.output},
                        _inputs_of(args, "prompts", "labels", "from_direction"))
    direction = None if args.from_direction is None else load_direction(args.from_direction)

    position = parse_position(args.position)
    info = read_model_info(args.model)
    layers = inputs.parse_layers(args.layer, info.layer_count)
    if direction is not None:
        made_site = direction.site or "resid_post"
        if made_site != args.site:  # other neurons, even where the widths agree
            raise LazarusError(f"{args.from_direction} was made at site {made_site}, not "
                               f"{args.site} (add --site {made_site})")
        if direction.layer is not None and layers != (direction.layer,):
            warn(f"{args.from_direction} was made at layer {direction.layer}, "
                 f"you are analysing layer {', '.join(map(str, layers))}")
        if direction.model_id and not _same_model(direction.model_id, args.model):
            warn(f"{args.from_direction} was made for {direction.model_id}, "
                 f"you are analysing {args.model}")
        made_position = parse_position(direction.position or "last")
        if same_token(made_position) != same_token(position):
            warn(f"{args.from_direction} was made at position {made_position}, you are reading "
                 f"position {position} (add --position {made_position} to match)")

    result = analyse_neurons(
        info, prompts, layers, site=args.site, position=position, neurons=neurons,
        direction=direction, direction_name=args.from_direction or "", top_k=top_k,
        labels=labels, settings=_settings(args), progress=ProgressBar("capturing"), notify=note,
        auto_discover=args.auto_discover, permutations=(PERMUTATIONS if args.permutations is None
                                                    else args.permutations))
    report = render_result(result)
    if args.output is not None:  # before the report, so that a closed pipe cannot lose it
        collected = result.collected
        extra = {
            "lazarus_version": __version__,
            "site": args.site,
            "position": position,
            "layer_count": info.layer_count,
            "hidden_size": info.hidden_size,
            "dtype": collected.dtype,
            "device": collected.device,
            "neuron_selection": result.selection or "--neurons",
        }
        document = result_json(result, extra)
        write_text_atomically(args.output, json.dumps(document, indent=2) + "\n")
    out(report)
    if args.output is not None:
        note(f"saved {args.output}")
    return 0


def run_probe(args: argparse.Namespace) -> int:
    import numpy as np

    from lazarus import inputs, probe
    from lazarus.capture import CaptureRequest
    from lazarus.collect import collect
    from lazarus.directions import save_direction
    from lazarus.files import check_outputs_apart, check_writable, write_text_atomically
    from lazarus.loading import read_model_info
    from lazarus.positions import parse_position
    from lazarus.render_probe import probe_json, render_probe_report

    class_a = inputs.parse_prompts(args.class_a, "class-a")
    class_b = inputs.parse_prompts(args.class_b, "class-b")
    for option, label in (("--label-a", args.label_a), ("--label-b", args.label_b)):
        if not label.strip():
            raise LazarusError(f"{option} is empty (give the class a name)")
    probe.check_classes(len(class_a), len(class_b), args.label_a, args.label_b)
    if args.label_a == args.label_b:
        raise LazarusError(f"both classes are labelled {args.label_a!r} "
                           "(give --label-a and --label-b different names)")
    shared = sorted(set(class_a) & set(class_b))
    if shared:
        warn(f"{len(shared)} prompt(s) are in both classes, e.g. {shared[0]!r}; "
             "no probe can tell those apart")
    tests = [] if args.test is None else inputs.parse_prompts(args.test, "test")
    outputs = [path for path in (args.save_direction, args.output) if path is not None]
    for path in outputs:
        check_writable(path)
    check_outputs_apart({"--save-direction": args.save_direction, "--output": args.output},
                        _inputs_of(args, "class_a", "class_b", "test"))

    position = parse_position(args.position, allow_all=False)
    info = read_model_info(args.model)
    if args.layer is None:
        layers = tuple(range(info.layer_count))
    else:
        layers = inputs.parse_layers(args.layer, info.layer_count)
    prompts = class_a + class_b + tests  # one pass for everything
    collected = collect(info, prompts, CaptureRequest(layers, args.site, position),
                        _settings(args), progress=ProgressBar("capturing"), notify=note)
    if any(np.isnan(rows).any() for rows in collected.rows.values()):
        raise LazarusError(f"the {args.site} values of this MoE model exist only for the experts "
                           "each token was routed to, so a probe cannot use them (probe "
                           "--site router, resid_post or mlp_out)")
    trained = len(class_a) + len(class_b)
    report = probe.probe_layers(
        {layer: rows[:trained] for layer, rows in collected.rows.items()}, len(class_a),
        method=args.method, label_a=args.label_a, label_b=args.label_b)
    predictions = probe.predict_rows(report.fit, collected.rows[report.best_layer][trained:])
    # Files first, so that a closed pipe on stdout cannot lose them.
    if args.save_direction is not None:
        save_direction(args.save_direction, probe.to_direction(report, args.model, args.site,
                                                               str(position)))
    if args.output is not None:
        document = probe_json(report, model_id=args.model, test_prompts=tests,
                              predictions=predictions)
        document.update(lazarus_version=__version__, dtype=collected.dtype,
                        device=collected.device, site=args.site, position=position)
        write_text_atomically(args.output, json.dumps(document, indent=2) + "\n")
    text = render_probe_report(report, test_prompts=tests, predictions=predictions).rstrip("\n")
    if (args.site, position) != ("resid_post", "last"):
        text = f"(site: {args.site}, position: {position})\n{text}"
    out(text)
    if args.save_direction is not None:
        note(f"saved the layer {report.best_layer} direction to {args.save_direction}")
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
