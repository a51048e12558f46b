"""The `lazarus` command's exit, without the interpreter's teardown.

After torch and transformers are imported, Python's finalization (clearing every module and
freeing, one reference at a time, the millions of objects they made) takes 0.2-0.5 s on a
2-core machine: a tenth of a short command. Nothing in it matters to a command that has
finished: its files are written and closed, and the exit handlers that do matter (temporary
folders, logging, Ray, the collector's freeze) are `atexit` handlers, which still run. So the
command runs them, flushes its streams, and ends the process with its status at once, as a
forked child does. Where a thread that Python would wait for is still running, the normal exit
is taken instead.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def quick_exit(status: int) -> NoReturn:
    """End the process with `status`, after the exit handlers and a flush of stdout/stderr."""
    waited_for = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if waited_for:
        sys.exit(status)
    atexit._run_exitfuncs()  # the same handlers, in the same order, as a normal exit
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a reader gone, or the stream closed: nothing to add
            pass
    os._exit(status)
