"""What each command does, between the parsed arguments and the rendered report: cheap
checks first, then one library call (`lazarus.api.Model`), files written before the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING

from lazarus.cli_help import MAX_ROWS
from lazarus.cli_output import EXIT_NOTHING_FOUND, ProgressBar, note, out, warn
from lazarus.errors import LazarusError
from lazarus.text import agree, plural

if TYPE_CHECKING:
    from lazarus.api import Model


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


def _max_rows(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise LazarusError(f"--max-rows must be 0 (no limit) or more (got {value})")
    return MAX_ROWS if value is None else value or None


def _color(args: argparse.Namespace) -> bool:
    """--color: only on a terminal that shows colour, and not against NO_COLOR."""
    if not args.color:
        return False
    why = ("standard output is not a terminal" if not sys.stdout.isatty() else
           "NO_COLOR is set" if os.environ.get("NO_COLOR") else
           "TERM is dumb" if os.environ.get("TERM") == "dumb" else None)
    if why is not None:
        note(f"--color: {why}, so the heatmap is plain")
    return why is None


def _model(args: argparse.Namespace) -> Model:
    """A handle for this run: only the blocks the run needs are loaded."""
    from lazarus.api import Model

    return Model(args.model, device=args.device, dtype=args.dtype,
                 trust_remote_code=args.trust_remote_code, device_map=args.device_map,
                 use_cache=not args.no_cache, whole=False, notify=note, warn=warn)


def _report(text: str, *saved: str | None, keep_color: bool = False) -> None:
    """The report on stdout, then a note for each file written (files come first, so that a
    closed pipe cannot lose them)."""
    out(text, keep_color=keep_color)
    for path in saved:
        if path is not None:
            note(f"saved {path}")


def _check_extension(option: str, path: str | None, *allowed: str) -> None:
    """A file's kind comes from its name: refuse one this option does not write."""
    if path is not None and not path.lower().endswith(allowed):
        raise LazarusError(f"{option} {path}: the name must end in {' or '.join(allowed)} (it "
                           "says what is written)")


def _write_output(path: str | None, document: dict, table: str | None = None) -> None:
    """`-o`: JSON, or the tidy CSV table when the name ends in .csv."""
    from lazarus.files import write_text_atomically

    if path is None:
        return
    if path.lower().endswith(".csv"):
        assert table is not None, "checked by _check_extension"
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
    _check_extension("--output", args.output, ".json", ".csv")
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
    _report(report, args.output, args.plot, keep_color=color)
    found_nothing = any(layer.discovery is not None and layer.discovery.survivors == 0
                        for layer in result.layers)
    return EXIT_NOTHING_FOUND if found_nothing else 0


def run_probe(args: argparse.Namespace) -> int:
    from lazarus import inputs
    from lazarus.files import check_outputs_apart, check_writable
    from lazarus.plot import check_plot_path, plot_probe
    from lazarus.probe import (
        MAX_PERMUTATIONS,
        PERMUTATIONS,
        check_settings,
        check_test_labels,
    )
    from lazarus.probing import check_inputs
    from lazarus.render_probe import hopeless_warning, render_probe_report

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
    if args.permutations == 0:  # the library allows 0 (no test); a user asking for it errs
        raise LazarusError("--permutations must be a whole number from 1 to "
                           f"{MAX_PERMUTATIONS}, got 0 (e.g. {PERMUTATIONS})")
    check_settings(args.method, **settings)
    for path in (args.save_direction, args.output):
        if path is not None:
            check_writable(path)
    if args.plot is not None:
        check_plot_path(args.plot)
    check_outputs_apart({"--save-direction": args.save_direction, "--output": args.output,
                         "--plot": args.plot},
                        _inputs_of(args, "class_a", "class_b", "test", "test_labels"))
    _check_extension("--output", args.output, ".json")
    _check_extension("--save-direction", args.save_direction, ".npz")
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
    warning = hopeless_warning(report)
    if warning is not None:
        warn(warning.removeprefix("Warning: ").rstrip("."))
    if save:
        note(f"saved the layer {report.top_layer} direction to {args.save_direction}"
             + ("" if report.significant else " (forced: no layer beats chance)"))
    elif not report.significant:
        note(f"no layer beats chance (p = {report.p_value:.2g} >= {report.alpha:g}): exit "
             f"status {EXIT_NOTHING_FOUND}" + ("" if args.save_direction is None else
                                              f"; {args.save_direction} was not written (add "
                                              "--force-save to write it anyway)"))
    for path in (args.output, args.plot):
        if path is not None:
            note(f"saved {path}")
    return 0 if report.significant else EXIT_NOTHING_FOUND


def _json_output(args: argparse.Namespace, inputs: list[tuple[str, str]]) -> None:
    """Cheap checks of -o for the JSON-only commands, before anything loads."""
    from lazarus.files import check_outputs_apart, check_writable

    if args.output is None:
        return
    check_writable(args.output)
    check_outputs_apart({"--output": args.output}, inputs)
    _check_extension("--output", args.output, ".json")


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
    _report(report, args.output)
    return 0


def run_examples(args: argparse.Namespace) -> int:
    from lazarus import inputs
    from lazarus.corpus import check_corpus, check_window, resolve_corpus
    from lazarus.files import check_outputs_apart, check_writable
    from lazarus.render_examples import render_examples

    if args.neurons is not None and args.from_direction is not None:
        raise LazarusError("--neurons and --from-direction were both given (choose one)")
    neurons = None if args.neurons is None else inputs.parse_neurons(args.neurons)
    if args.top_k is not None and args.from_direction is None:
        warn("--top-k is ignored without --from-direction")
    check_window(args.window, args.stride)
    for name in ("examples", "shard_windows", "ray_workers", "top_k"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LazarusError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    if args.work_dir is not None:  # before the model loads
        from pathlib import Path

        from lazarus.shards import check_work_dir

        check_work_dir(Path(args.work_dir))
    corpus = resolve_corpus(args.corpus)
    check_corpus(corpus, args.text_field)
    output = args.output
    if output is not None:
        _check_extension("--output", output, ".json", ".parquet", ".html")
        if output.lower().endswith(".parquet"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise LazarusError("--output .parquet needs pyarrow (pip install pyarrow), or "
                                   "give a .json name") from None
        check_writable(output)
    check_outputs_apart({"--output": output},
                        [("--corpus", corpus), *_inputs_of(args, "from_direction")])
    direction = None
    if args.from_direction is not None:
        from lazarus.directions import load_direction

        direction = load_direction(args.from_direction)
    model = _model(args)
    bar = ProgressBar("scanning windows")
    result = model.examples(corpus, model.layers(args.layer), site=args.site,
                            neurons=neurons, direction=direction,
                            top_k=10 if args.top_k is None else args.top_k,
                            examples=args.examples, window=args.window, stride=args.stride,
                            text_field=args.text_field, work_dir=args.work_dir,
                            shard_windows=args.shard_windows, ray=args.ray,
                            ray_workers=args.ray_workers, ray_address=args.ray_address,
                            progress=lambda done, total: bar(done, total))
    color = _color(args)
    report = render_examples(result, color=color)
    if output is not None:  # files before the report, so that a closed pipe cannot lose them
        if output.lower().endswith(".parquet"):
            result.write_parquet(output)
        elif output.lower().endswith(".html"):
            from lazarus.files import write_text_atomically
            from lazarus.render_examples import render_html

            write_text_atomically(output, render_html(result))
        else:
            _write_output(output, result.to_json())
    out(report, keep_color=color)
    if result.resumed_shards:
        note(f"resumed: {result.resumed_shards} of {plural(result.shards, 'shard')} "
             f"{agree(result.resumed_shards, 'was', 'were')} already in {result.work_dir}")
    if output is not None:
        note(f"saved {output}")
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
                         temperature=args.temperature, seed=args.seed, clamp=args.clamp)
    report = render_steer(result)
    _write_output(args.output, result.to_json())
    _report(report, args.output)
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
             f"{plural(summary.rows, 'cached row')}, {_size(summary.bytes)}"]
    lines += [f"  {model.model_id}: {plural(model.rows, 'row')}, {_size(model.bytes)} "
              f"({model.source}; {model.folder.name})" for model in summary.models]
    out("\n".join(lines))
    return 0


def run_cache_clear(args: argparse.Namespace) -> int:
    from lazarus import cache

    removed = cache.clear()
    out(f"removed {plural(removed.rows, 'cached row')} ({_size(removed.bytes)}) from "
        f"{removed.folder}")
    if removed.left:
        raise LazarusError(f"{plural(removed.left, 'file')} under {removed.folder} could not "
                           "be removed (check their permissions, then run 'lazarus cache "
                           "clear' again)")
    return 0
