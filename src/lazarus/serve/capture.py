"""What a computation says on stderr, on the server, goes to its client's stderr, as the run in
process would have said it.

Two routes cover what upstream libraries say while lazarus computes:
- Text written to `sys.stderr` (transformers' and huggingface_hub's log lines, whose handlers
  write there as "[transformers] ..."; anything printed there): the server's `sys.stderr` is a
  `Router`, which sends what a thread computing a request writes to that request's client,
  where it is written as it is. Other threads write to the server's own stderr, its log.
- Python warnings: sent as their parts (text, category, file, line, module), and raised again
  in the client with `warnings.warn_explicit`, so that the client's filters decide as they do in
  process (once per place, `-W`, PYTHONWARNINGS) and Python formats them as in process
  ("file:line: Category: text" and the source line). The server shows every warning that its
  filters do not ignore ("always" in front of Python's defaults): which ones are repeats is the
  client's business, which a warm server's long life would otherwise decide. Filters that
  lazarus's own code installs (e.g. for torch's weights-only unpickler, in `engine.loading`)
  run where that code runs, on the server, as in process.

Threads: the server runs one thread per request, and at most one computation per model, but
models may compute at once; routes are kept per thread, so each request hears its own. What a
thread that a computation starts says (a prefetch thread, a Ray worker) goes to the log, as
does what is written to the file descriptor directly (C code). Python's warning filters are
one per process (3.11 has no per-thread ones): a `catch_warnings` in one computation changes
them for the others while it lasts.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TextIO

Sink = Callable[[str, Any], None]  # ("stderr", text) or ("warning", parts)


class Router:
    """Stands in for `sys.stderr` on the server: a routed thread's writes go to its sink."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self._sinks: dict[int, Sink] = {}

    def write(self, text: str) -> int:
        sink = self._sinks.get(threading.get_ident())
        if sink is None:
            return self.real.write(text)
        if text:
            sink("stderr", str(text))
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() not in self._sinks:
            self.real.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ...
        return getattr(self.real, name)


_router: Router | None = None
_modules: dict[str, str] = {}  # a source file -> the module it is (for the client's filters)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """While the server serves: `sys.stderr` is a `Router` (log handlers made before, which hold
    the real stderr, write to it too), and warnings go through `_show`."""
    global _router
    real = sys.stderr
    _router = Router(real)
    handlers = [handler for handler in _stream_handlers() if handler.stream is real]
    saved = warnings.filters[:], warnings.showwarning
    sys.stderr = _router  # type: ignore[assignment]
    for handler in handlers:
        handler.setStream(_router)  # type: ignore[arg-type]
    warnings.simplefilter("always")
    warnings.showwarning = _show
    try:
        yield
    finally:
        warnings.filters[:], warnings.showwarning = saved
        warnings._filters_mutated()  # type: ignore[attr-defined]
        for handler in handlers:
            if handler.stream is _router:
                handler.setStream(real)
        if sys.stderr is _router:
            sys.stderr = real
        _router = None


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(logger for logger in
                                      logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers
            if isinstance(handler, logging.StreamHandler)]


@contextlib.contextmanager
def routed(sink: Sink) -> Iterator[None]:
    """What this thread says on stderr, and its warnings, go to `sink` meanwhile."""
    if _router is None:
        yield
        return
    ident = threading.get_ident()
    _router._sinks[ident] = sink
    try:
        yield
    finally:
        _router._sinks.pop(ident, None)


@contextlib.contextmanager
def unrouted() -> Iterator[None]:
    """The server's own log lines, written from a routed thread, go to the log."""
    sink = None if _router is None else _router._sinks.pop(threading.get_ident(), None)
    try:
        yield
    finally:
        if sink is not None and _router is not None:
            _router._sinks[threading.get_ident()] = sink


_default_show = warnings.showwarning


def _show(message: Any, category: type[Warning], filename: str, lineno: int,
          file: Any = None, line: str | None = None) -> None:
    sink = None if _router is None else _router._sinks.get(threading.get_ident())
    if sink is None or file is not None:
        _default_show(message, category, filename, lineno, file, line)
        return
    sink("warning", {"message": str(message), "category": _lineage(category),
                     "filename": filename, "lineno": lineno, "module": _module_of(filename)})


def _lineage(category: type[Warning]) -> list[str]:
    """The category and its ancestors up to `Warning`, as "module:name"."""
    return [f"{cls.__module__}:{cls.__qualname__}" for cls in category.__mro__
            if isinstance(cls, type) and issubclass(cls, Warning)]


def _module_of(filename: str) -> str:
    """The module whose file raised it, as `warnings.warn` names it for the filters."""
    if filename not in _modules:
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                _modules.setdefault(path, name)
    return _modules.get(filename) or (filename[:-3] if filename.endswith(".py") else filename)


# The client's side: once per process, as the registries of a run in process.
_registries: dict[str, dict] = {}
_categories: dict[str, type[Warning]] = {}


def warn_again(parts: dict[str, Any]) -> None:
    """Raise a warning the server sent as the code that raised it would have, in process."""
    message, filename = parts.get("message"), parts.get("filename")
    lineno, module, lineage = parts.get("lineno"), parts.get("module"), parts.get("category")
    if not (isinstance(message, str) and isinstance(filename, str) and isinstance(module, str)
            and isinstance(lineno, int) and isinstance(lineage, list) and lineage
            and all(isinstance(name, str) for name in lineage)):
        raise ValueError("a bad warning")
    warnings.warn_explicit(message, _category(lineage), filename, lineno, module=module,
                           registry=_registries.setdefault(module, {}))


def _category(lineage: list[str]) -> type[Warning]:
    """The warning class named first in `lineage`: a built-in one, or one already imported
    here; else a stand-in of that name under its nearest known ancestor (importing nothing)."""
    name = lineage[0]
    if name not in _categories:
        module, _, qualname = name.partition(":")
        found = getattr(builtins if module == "builtins" else sys.modules.get(module),
                        qualname, None)
        if isinstance(found, type) and issubclass(found, Warning):
            _categories[name] = found
        else:
            base = _category(lineage[1:]) if len(lineage) > 1 else Warning
            _categories[name] = type(qualname.rsplit(".", 1)[-1], (base,),
                                     {"__module__": module, "__qualname__": qualname})
    return _categories[name]
