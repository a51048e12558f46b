"""The argument tree of `lazarus serve`: the keep-alive server, in the foreground, or asked how
it is (--status) or to stop (--stop)."""

from __future__ import annotations

import argparse

from lazarus.cli.options import duration, size

SERVE_EPILOG = """\
The server keeps models loaded so that a command on one pays neither the imports nor the load:
neurons, probe, ablate, steer, patch, attribute, examples and card use it when it runs, or
start it in the background with --keep-alive DURATION (or LAZARUS_KEEP_ALIVE=DURATION). What
they print, write and exit with is the same as in process (upstream's warnings and log lines
said while the server computes included); the server only computes. Its socket
is in a folder only you can enter ($XDG_RUNTIME_DIR/lazarus, else /tmp/lazarus-UID;
LAZARUS_SERVE_DIR overrides), and it serves no other user. If it is gone or broken, a command
says so in one line and runs in process.

examples:
  lazarus serve                        # in the foreground; Ctrl-C stops it
  lazarus introspect neurons -m lazarus:demo -l 0 -p '2+3=|45*45=' --keep-alive 15m
  lazarus serve --status
  lazarus serve --stop
"""


def add_serve_command(groups: argparse._SubParsersAction) -> None:
    serve = groups.add_parser(
        "serve", help="the keep-alive server: keep models warm for the commands",
        description="Keep loaded models warm for the introspect commands.",
        epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = serve.add_mutually_exclusive_group()
    which.add_argument("--status", action="store_true",
                       help="show the running server: its models, their size and last use "
                            "(exit status 3 when none runs)")
    which.add_argument("--stop", action="store_true", help="stop the running server")
    serve.add_argument("--idle-timeout", type=duration, default=None, metavar="DURATION",
                       help="stop after this long without a request (default 15m; a command's "
                            "--keep-alive sets it anew)")
    serve.add_argument("--max-memory", type=size, default=None, metavar="SIZE",
                       help="keep the weights held under SIZE, e.g. 8G: before a model "
                            "loads, the least recently used idle ones are evicted to make room "
                            "(a model over SIZE alone is loaded all the same, said in the "
                            "server's log; default: $LAZARUS_SERVE_MAX_MEMORY, else half the "
                            "machine's memory)")
    serve.set_defaults(run="lazarus.cli.serve:run_serve")
