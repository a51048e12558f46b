"""`lazarus introspect …`: argv → library calls → rendered text on stdout.

The entry point. With `parser`, `causal_args`, `examples_args` and `options` (the argument
tree, which imports no numpy), one module per command saying what it does (`neurons`, `probe`,
`ablate`, `steer`, `examples`, `cache`: argv -> the command's options -> the analysis -> the
report; `common` what they share), `output` (stdout, stderr, progress) and `help`, the only
code that prints or exits; the library never does. User
mistakes (`LazarusError`, bad arguments) become one line on stderr and exit status 2, with no
traceback. torch and transformers are imported only once a command needs a model, so `--help`
and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from lazarus.cli.output import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    StdoutFailed,
    error,
    flush_stdout,
    note,
    silence_stdout,
)
from lazarus.cli.parser import build_parser
from lazarus.cli.signals import Terminated, sigterm_raises
from lazarus.engine import collector
from lazarus.errors import LazarusError
from lazarus.io.inputs import check_utf8


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
        except StdoutFailed as err:
            silence_stdout()
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


def command(name: str) -> Callable[[argparse.Namespace], int]:
    """The run function the argument tree names as "module:function": only the command that
    runs is imported, so that `--help` stays light (no numpy, no torch). Imported with the
    collector paused, as the model's libraries are (`lazarus.engine.collector`)."""
    module, function = name.split(":")
    with collector.paused():
        return getattr(importlib.import_module(module), function)


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        flush_stdout()
        return int(stop.code or 0)
    except OSError as err:  # parse_args reads no file: it failed to print --help
        raise StdoutFailed(err) from None

    for name, value in vars(args).items():
        if isinstance(value, str):
            check_utf8(value, f"--{name.replace('_', '-')}")
    code = command(args.run)(args)
    flush_stdout()
    return code


if __name__ == "__main__":
    from lazarus.cli import entry

    entry()
