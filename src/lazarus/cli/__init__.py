"""The command line, the top layer: the argument tree, one run function per command (argv ->
options -> library -> render -> write), stdout, stderr and exit codes; the only code that
prints. May import every layer below (`api`, `render`, `analyses`, `results`, ...). The argument
tree names each run function as a "module:function" string, imported only when that command
runs, so that `lazarus --help` imports neither numpy nor torch."""

import atexit
import gc
import importlib
import os
import sys

# At exit the interpreter's last garbage collections walk every object that importing torch and
# transformers made: about a second of a 4-second command on a 2-core machine. Frozen (moved
# to the collector's permanent generation) just before, they are skipped; nothing else of the
# exit changes (files are closed, atexit handlers run, memory is returned with the process).
atexit.register(gc.freeze)


def entry() -> None:
    """The `lazarus` console command (and `python -m lazarus`): `main.main`, then a quick exit
    (`quick_exit`: the exit handlers run, the interpreter's teardown is skipped). Defined here,
    where importing it costs nothing, so that Ctrl-C while the CLI's modules are still being
    imported ends as it does later: one line and status 130, not a traceback."""
    try:  # named as strings, as the argument tree names the commands (`main.command`)
        main = importlib.import_module("lazarus.cli.main").main
        quick_exit = importlib.import_module("lazarus.cli.quick_exit").quick_exit
    except KeyboardInterrupt:
        sys.stderr.write("lazarus: interrupted\n")
        sys.stderr.flush()
        os._exit(130)  # 128 + SIGINT, as cli.output's EXIT_INTERRUPTED
    quick_exit(main())
