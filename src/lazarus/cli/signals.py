"""SIGTERM as an exception, so that a terminated run cleans up like an interrupted one.

Python turns Ctrl-C (SIGINT) into KeyboardInterrupt, which unwinds the stack: `finally` blocks
run and the atomic writer removes its temporary file. SIGTERM (what `kill`, systemd and job
schedulers send) would end the process on the spot instead; raising `Terminated` gives it the
same unwinding.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that `finally`
    blocks and the atomic writer remove their temporary files (a BaseException, so that no
    `except Exception` swallows it)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while a command runs (only the main thread can)."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
