"""Python's garbage collector kept out of start-up.

Importing torch and transformers creates a few million objects; every 700 allocations the
collector runs, and as the heap grows its full passes walk all of them again: measured here as
0.3-0.8 s of a 3.5 s import on a 2-core machine. Nothing made while importing or loading is
garbage that needs the collector (reference counting still frees what is dropped), so the
collector is paused for that time, and the modules imported are frozen (moved to the permanent
generation, as `gc.freeze` is meant for after start-up) so that later collections do not walk
them again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No collection inside the block; the collector's state before is restored after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def freeze_imports() -> None:
    """Move every object tracked now to the permanent generation: called once, right after
    the heavy imports, when what exists is nearly all modules, classes and functions that live
    as long as the process. (Objects the caller already held are frozen too: their cycles, if
    they become garbage later, are not collected; acyclic ones are still freed by reference
    counting.)"""
    gc.freeze()
