"""What every command's run shares, between the parsed arguments and the report: the options
given, the model handle, the files a run reads (so outputs never overwrite them), the checks
and writing of `-o`, and the report on stdout with a note per file saved."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from fnmatch import fnmatch

from lazarus.cli.help import MAX_ROWS
from lazarus.cli.output import note, out, warn
from lazarus.engine.handle import Handle
from lazarus.errors import LazarusError
from lazarus.io.files import check_outputs_apart, check_writable, write_text_atomically
from lazarus.io.inputs import file_of
from lazarus.results.plot_common import check_plot_path

# What a Hugging Face model folder's loader may read; other files there (a results.json from a
# previous run, say) are not inputs.
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
               "merges.txt", "chat_template.json", "*.jinja", "*.index.json", "*.safetensors",
               "*.bin", "*.pt", "*.pth", "*.gguf", "*.model", "*.tiktoken", "*.py")


# Options whose value is a file's path (the others read a file only as `@file`).
PATH_OPTIONS = ("from_direction", "direction", "pairs")


def inputs_of(args: argparse.Namespace, *names: str) -> list[tuple[str, str]]:
    """(option, path) of every file this run reads: `@file` lists, a direction file, and a local
    model folder's config, tokenizer and weights (`MODEL_FILES`)."""
    found = []
    for name in names:
        value = getattr(args, name)
        path = value if name in PATH_OPTIONS else (value and file_of(value))
        if path:
            found.append((f"--{name.replace('_', '-')}", path))
    if os.path.isdir(args.model):
        with contextlib.suppress(OSError):
            found += [("--model", entry.path) for entry in os.scandir(args.model)
                      if entry.is_file() and any(fnmatch(entry.name, p) for p in MODEL_FILES)]
    return found


def given(**values: object) -> dict[str, object]:
    """The options given on the command line (None: left out), so that what was not given takes
    its default from the command's options type, where every default is written."""
    return {name: value for name, value in values.items() if value is not None}


def row_limit(value: int | None) -> int | None:
    """--max-rows as a limit: MAX_ROWS when not given, None (every row) for 0."""
    if value is not None and value < 0:
        raise LazarusError(f"--max-rows must be 0 (no limit) or more (got {value})")
    return MAX_ROWS if value is None else value or None


def use_color(args: argparse.Namespace) -> bool:
    """--color: only on a terminal that shows colour, and not against NO_COLOR."""
    if not args.color:
        return False
    why = ("standard output is not a terminal" if not sys.stdout.isatty() else
           "NO_COLOR is set" if os.environ.get("NO_COLOR") else
           "TERM is dumb" if os.environ.get("TERM") == "dumb" else None)
    if why is not None:
        note(f"--color: {why}, so the heatmap is plain")
    return why is None


def open_model(args: argparse.Namespace) -> Handle:
    """A handle for this run: only the blocks the run needs are loaded."""
    return Handle(args.model, device=args.device, dtype=args.dtype,
                  trust_remote_code=args.trust_remote_code, device_map=args.device_map,
                  use_cache=not args.no_cache, whole=False, notify=note, warn=warn)


def show_report(text: str, *saved: str | None, keep_color: bool = False) -> None:
    """The report on stdout, then a note for each file written (files come first, so that a
    closed pipe cannot lose them)."""
    out(text, keep_color=keep_color)
    for path in saved:
        if path is not None:
            note(f"saved {path}")


def check_extension(option: str, path: str | None, *allowed: str) -> None:
    """A file's kind comes from its name: refuse one this option does not write."""
    if path is not None and not path.lower().endswith(allowed):
        raise LazarusError(f"{option} {path}: the name must end in {' or '.join(allowed)} (it "
                           "says what is written)")


def write_output(path: str | None, document: dict, table: str | None = None) -> None:
    """`-o`: JSON, or the tidy CSV table when the name ends in .csv."""
    if path is None:
        return
    if path.lower().endswith(".csv"):
        assert table is not None, "checked by check_extension"
        write_text_atomically(path, table)
    else:
        write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def check_outputs(outputs: dict[str, str | None], inputs: list[tuple[str, str]]) -> None:
    """Cheap checks of a run's output files (option -> path, None: not asked for), before
    anything loads: each can be written (`--plot`: also drawn), and none would replace an input
    or another output."""
    for option, path in outputs.items():
        if path is not None:
            (check_plot_path if option == "--plot" else check_writable)(path)
    check_outputs_apart(outputs, inputs)
