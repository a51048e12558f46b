"""Where a command's time goes: named spans, recorded as they happen, read by bench/bench.py.

The library only records (a few clock reads per command, in a bounded buffer, so a long-lived
process does not grow); it never prints them. `bench/bench.py` runs a command in a child process
and reads `spans()` after it to print its start-up breakdown (imports, config, weights,
tokenizer, forward). Spans may overlap: work done in a background thread has its own span.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    name: str
    start: float  # time.perf_counter() seconds
    end: float
    thread: str  # the thread's name: "MainThread", or a background thread's


_SPANS: deque[Span] = deque(maxlen=256)


@contextmanager
def span(name: str) -> Iterator[None]:
    """Record how long the block takes, under `name` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _SPANS.append(Span(name, start, time.perf_counter(), threading.current_thread().name))


def spans(since: float = float("-inf")) -> list[Span]:
    """The spans recorded that started at or after `since` (a time.perf_counter() value)."""
    return [s for s in list(_SPANS) if s.start >= since]
