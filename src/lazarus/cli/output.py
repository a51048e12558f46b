"""How the CLI talks to the terminal and the shell: the report on stdout (written whole, or a
clean failure), one-line notes, warnings and errors on stderr, the progress bar, exit codes."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import sys
import time

from lazarus.text import escape, terminal_safe

EXIT_USER_ERROR = 2
EXIT_NOTHING_FOUND = 3  # ran fine, but found nothing (probe: no layer beats chance)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head -1`'s cat
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class StdoutFailed(Exception):
    """Standard output cannot take the report: a closed pipe, a full disk."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))
        self.broken_pipe = isinstance(err, BrokenPipeError)


def out(text: str, keep_color: bool = False) -> None:
    """Print `text` (control characters escaped; with `keep_color`, except colour codes) and a
    newline on stdout, now."""
    write_stdout(terminal_safe(text, keep_color) + "\n")


def write_stdout(text: str) -> None:
    """All of `text` on stdout, or `StdoutFailed`: a large report is written in a loop on the
    file descriptor, since one write to a pipe or a nearly full disk may take only part of it."""
    stream = sys.stdout
    if stream is None:
        raise StdoutFailed(OSError(errno.EBADF, "standard output is closed"))
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        fd = None  # not a file (captured in tests): its own write is all there is
    try:
        if fd is None:
            stream.write(text)
            stream.flush()
            return
        stream.flush()
        encoding = getattr(stream, "encoding", None) or "utf-8"
        view = memoryview(text.encode(encoding, errors="backslashreplace"))
        while view:
            view = view[os.write(fd, view):]
    except OSError as err:
        raise StdoutFailed(err) from None


def flush_stdout() -> None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as err:
        raise StdoutFailed(err) from None


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that the interpreter's final flush of the
    output that could not be written neither fails nor prints "Exception ignored"."""
    if sys.stdout is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (captured in tests): nothing will flush it at exit


def _stderr(line: str) -> None:
    """One line on stderr, control characters escaped, so a message is always one line; on a
    line of its own, after a progress bar left unfinished (an interrupt, an error)."""
    global _bar_open
    with contextlib.suppress(OSError):  # else there is nowhere left to report to
        if _bar_open:
            sys.stderr.write("\n")
            _bar_open = False
        sys.stderr.write(escape(line) + "\n")  # one write: threads' lines never interleave
        sys.stderr.flush()


def error(message: str) -> None:
    _stderr(f"lazarus: error: {message}")


def warn(message: str) -> None:
    _stderr(f"lazarus: warning: {message}")


def note(message: str) -> None:
    _stderr(f"lazarus: {message}")


def echo(text: str) -> None:
    """Text that upstream code wrote to stderr on the keep-alive server (transformers' log
    lines, say), written as it is, as it would have been in process."""
    with contextlib.suppress(OSError):
        sys.stderr.write(text)
        sys.stderr.flush()


_bar_open = False  # a progress bar's line is on the terminal, unfinished


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal: prompts done of
    the prompts given, and what is going on (loading, how many came from the cache)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()
        self.finished = False

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        global _bar_open
        if not self.enabled or self.finished:
            return
        filled = int(30 * done / max(total, 1))
        elapsed = time.monotonic() - self.started
        extra = f" ({detail})" if detail else ""
        line = (f"{self.what} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                f"{elapsed:.1f}s{escape(extra)}")
        columns = shutil.get_terminal_size((80, 24)).columns - 1  # a full line would wrap
        line = line if len(line) <= columns else line[:max(columns - 1, 0)] + "…"
        # Clear what the last line left: with the terminal's own code where it has one.
        clear = "" if os.environ.get("TERM") == "dumb" else "\x1b[K"
        with contextlib.suppress(OSError):
            sys.stderr.write(f"\r{clear}{line}{' ' * (columns - len(line)) if not clear else ''}")
            _bar_open = True
            if done >= total:
                sys.stderr.write("\n")
                self.finished = True
                _bar_open = False
            sys.stderr.flush()
