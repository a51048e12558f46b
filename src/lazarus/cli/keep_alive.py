"""Where a command computes: on the keep-alive server when it is asked for (--keep-alive,
LAZARUS_KEEP_ALIVE) or already running, else in process. The command's own code parses,
checks, renders and writes either way, so output, files and exit status are the same; a server
that is gone or broken costs one line on stderr, and the command runs in process."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from lazarus.cli.common import open_model
from lazarus.cli.options import parse_duration
from lazarus.cli.output import echo, note, warn
from lazarus.engine.model_info import read_model_info
from lazarus.errors import LazarusError
from lazarus.serve.client import ServerUnavailable, compute, server_present
from lazarus.serve.commands import analysis_of


def keep_alive(args: argparse.Namespace) -> float | None:
    """Seconds to keep the server after this command (0: never use one; None: use one only if
    it runs), from --keep-alive, else LAZARUS_KEEP_ALIVE."""
    if args.keep_alive is not None:
        return args.keep_alive
    value = os.environ.get("LAZARUS_KEEP_ALIVE")
    if not value:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise LazarusError(f"LAZARUS_KEEP_ALIVE={value!r} is not a duration (e.g. 15m, 30s, "
                           "or off)") from None


def run_analysis(args: argparse.Namespace, command: str, *inputs: Any,
                 progress: Callable[..., None] | None = None, model: Any = None,
                 served: bool = True) -> Any:
    """`command`'s analysis of `inputs`, on the server or in process (on `model`, when the
    command has opened it already; always, when not `served`)."""
    seconds = keep_alive(args)
    if seconds != 0 and (seconds is not None or server_present()) and served:
        info = read_model_info(args.model)  # the messages of a bad model, as in process
        source = os.path.abspath(info.source) if os.path.isdir(info.source) else info.source
        spec = {"model_id": args.model, "source": source, "device": args.device,
                "dtype": args.dtype, "trust_remote_code": args.trust_remote_code,
                "device_map": args.device_map, "use_cache": not args.no_cache}
        try:
            return compute(spec, command, list(inputs), keep_alive=seconds, progress=progress,
                           notify=note, warn=warn, echo=echo)
        except ServerUnavailable as err:
            note(f"keep-alive server: {err}; running in process")
    analysis, takes_progress = analysis_of(command)
    model = open_model(args) if model is None else model
    return analysis(model, *inputs, *([progress] if takes_progress else []))
