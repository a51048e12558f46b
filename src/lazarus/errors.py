"""The one user-facing error type, and the one place where a failure inside code lazarus does not
own (transformers, a model's own forward) becomes such an error."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

from lazarus.text import shorten

# The transformers release the test suite passed with (the constraints file's): what a user is
# told to try when model code fails inside another one.
TESTED_TRANSFORMERS = "5.25.0"
_OWN_CODE = Path(__file__).resolve().parent


class LazarusError(Exception):
    """A mistake the user can fix: the message names the problem and the fix, on one line.

    The CLI prints it to stderr without a traceback and exits with status 2.
    """


class PromptError(LazarusError):
    """A LazarusError about one prompt, named by its text; it keeps the prompt and the rest of
    the message (`problem`), so that the CLI can name the prompt by its place instead (the
    list, its number there, the file and line it was read from)."""

    def __init__(self, prompt: str, problem: str) -> None:
        super().__init__(f"prompt {shorten(prompt, mark='…')!r} {problem}")
        self.prompt, self.problem = prompt, problem


def is_out_of_memory(err: BaseException) -> bool:
    """True for the allocation failures of CUDA, MPS and the CPU allocator (torch's
    OutOfMemoryError is a RuntimeError saying "out of memory"), and Python's MemoryError."""
    text = str(err).lower()
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and ("out of memory" in text or "not enough memory" in text))


@contextlib.contextmanager
def upstream(family: str, action: str, advice: str = "",
             explain: Callable[[BaseException], str | None] | None = None,
             pass_out_of_memory: bool = False) -> Iterator[None]:
    """Run a call into transformers (`from_pretrained`, a model's forward): an exception raised
    there becomes one `LazarusError` naming what failed (`action`, e.g. "cannot load org/name"),
    the family (config.json's model_type), the transformers version, the exception's type and
    first line, and what to do: `advice` first if given, then report it or try another
    transformers version.

    Passed through unchanged: a LazarusError (already one line), an exception raised by
    lazarus's own code (a bug of ours keeps its traceback; so does the hooks' early stop), and
    what is not an Exception (Ctrl-C, SIGTERM). Running out of memory is said as such, or
    passed through with `pass_out_of_memory` (the batch loop halves its batches instead).
    `explain(err)` may give a better line for failures a caller knows (None: the generic one).
    """
    try:
        yield
    except LazarusError:
        raise
    except Exception as err:
        cause = innermost(err)
        if is_out_of_memory(err) or is_out_of_memory(cause):
            if pass_out_of_memory:
                raise
            raise LazarusError(f"{action}: out of memory (use --dtype bfloat16, --device-map "
                               "auto to spread the model, or a machine with more memory)"
                               ) from None
        if _raised_by_lazarus(cause):
            raise
        better = explain(err) if explain is not None else None
        raise LazarusError(better or _upstream_message(family, action, err, advice)) from None


def _upstream_message(family: str, action: str, err: BaseException, advice: str = "") -> str:
    """The one line for `upstream`: "<action>: <Type>: <first line> (raised inside transformers
    <version> by this <family> model; <advice>report it ... or try ...)"."""
    cause = innermost(err)
    return (f"{action}: {type(cause).__name__}: {first_line(cause)} (raised inside "
            f"transformers {transformers_version()} by this {family} model; {advice}report it "
            f"to lazarus with this line, or {other_transformers()})")


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-blank line of an exception's message (its type's name when it has none),
    cut to `limit` characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    return shorten(first, limit)


def other_transformers() -> str:
    """What to install instead of the transformers in use: the tested release, or a newer one
    when the tested release is the one in use."""
    if transformers_version() == TESTED_TRANSFORMERS:
        return "try a newer transformers: pip install -U transformers"
    return ("try the release lazarus is tested with: "
            f"pip install 'transformers=={TESTED_TRANSFORMERS}'")


def transformers_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def innermost(err: BaseException) -> BaseException:
    """The exception a chain of `raise ... from` started with: what failed first."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _raised_by_lazarus(err: BaseException) -> bool:
    """Whether the deepest Python frame of the exception's traceback is lazarus's own code."""
    trace = err.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    return _is_own_file(trace.tb_frame.f_code.co_filename)


@functools.lru_cache(maxsize=256)
def _is_own_file(filename: str) -> bool:
    """Cached: the hooks' early stop comes through `upstream` at every batch, and resolving the
    path (system calls) each time cost a scan about 3% of its time."""
    return Path(filename).resolve().is_relative_to(_OWN_CODE)
