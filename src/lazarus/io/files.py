"""Reading `@file` lists and writing output files atomically, never over one of the run's inputs."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from lazarus.errors import LazarusError

STALE_AFTER = 60.0  # seconds without a write before a dead process's temporary file is stale
ABANDONED_AFTER = 24 * 3600.0  # seconds after which any of our temporary files is stale


def read_lines(path: str, after: str = "'@'") -> list[tuple[int, str]]:
    """(line number, line) of a text file (or a pipe, /dev/stdin), blank lines skipped, a UTF-8
    BOM and CRs removed.

    Read a piece at a time, so that what can never be a list of prompts is refused early and in
    bounded memory: a device (/dev/zero never ends), binary data (a NUL byte, or not UTF-8:
    found in the first piece), more than MAX_LIST_BYTES (a pipe that never ends, say). `after`:
    what the path was given after, for the messages (an option such as --pairs).
    """
    file = Path(path)
    if file.is_dir():
        raise LazarusError(f"{path} is a folder, not a file (give a text file after {after})")
    if not file.exists():
        raise LazarusError(f"file not found: {path} (check the path after {after})")
    try:
        with open(file, "rb") as handle:  # also reads pipes and /dev/stdin
            text = _read_text(path, handle)
    except OSError as err:
        raise LazarusError(f"cannot read {path}: {err.strerror} (check its permissions)") from None
    return [(number, line.rstrip("\r")) for number, line in enumerate(text.split("\n"), start=1)
            if line.strip()]


MAX_LIST_BYTES = 64 << 20  # an @file list is refused past this: far more than any run's prompts
_PIECE_BYTES = 1 << 20


def _read_text(path: str, handle: BinaryIO) -> str:
    import codecs
    import stat

    status = os.fstat(handle.fileno())
    device = stat.S_ISBLK(status.st_mode) or stat.S_ISCHR(status.st_mode)
    if device and not os.isatty(handle.fileno()):  # a terminal is typed into, and ends
        if _is_stdin(path, status):  # piping in is what the user did: name what came in
            raise LazarusError(f"standard input is a device ({os.path.realpath(path)}), not "
                               "text: redirect a text file into it or pipe text in")
        raise LazarusError(f"{path} is a device, not a text file (give a text file after '@', "
                           "or pipe the text in with @/dev/stdin)")
    too_long = (f"{path} is longer than {MAX_LIST_BYTES >> 20} MiB, the most an @file list may "
                "hold (give fewer items, one per line, or split the run)")
    if stat.S_ISREG(status.st_mode) and status.st_size > MAX_LIST_BYTES:
        raise LazarusError(too_long)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    parts, size = [], 0
    try:
        while piece := handle.read(_PIECE_BYTES):
            nul = piece.find(b"\0")
            if nul >= 0:
                raise LazarusError(f"{path} holds a NUL byte (byte {size + nul + 1}): binary "
                                   "data, not text (give a UTF-8 text file, one item per line)")
            size += len(piece)
            if size > MAX_LIST_BYTES:
                raise LazarusError(too_long)
            parts.append(decoder.decode(piece))
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError:
        raise LazarusError(
            f"{path} is not UTF-8 text (save it as UTF-8, one item per line)"
        ) from None
    return "".join(parts)


def _is_stdin(path: str, status: os.stat_result) -> bool:
    """Whether `path` is standard input: by its name, or as the file fd 0 is open on."""
    if path in ("/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"):
        return True
    try:
        stdin = os.fstat(0)
    except OSError:  # fd 0 is closed
        return False
    return (stdin.st_dev, stdin.st_ino) == (status.st_dev, status.st_ino)


def check_writable(path: str) -> None:
    """Fail now, before any model loads, if `path` could not be written later."""
    if not path:
        raise LazarusError("the output path is empty (give a file name)")
    target = Path(os.path.realpath(path))  # a symlink is written through, to its target
    if target.is_dir():
        raise LazarusError(f"output path {path} is a folder (give a file name)")
    if target.exists() and not target.is_file():
        raise LazarusError(f"output path {path} is not a regular file (give a file name)")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise LazarusError(f"cannot write {path}: {existing} is a file, not a folder (give "
                               "a path inside a folder)")
        raise LazarusError(f"cannot write {path}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK):
        raise LazarusError(f"cannot write {path}: folder {folder} is not writable (choose another)")
    if target.exists() and not os.access(target, os.W_OK):
        raise LazarusError(f"cannot write {path}: the file is read-only (choose another path)")
    # The file is written beside itself and renamed (`replace_atomically`): try that now, under
    # the same name (a kill in between leaves what the next write cleans). os.access says yes
    # to root where the file system still refuses (sysfs, for one).
    try:
        handle, probe = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.",
                                         suffix=".tmp", dir=folder)
    except OSError as err:
        raise LazarusError(f"cannot write {path}: no file can be made in {folder} "
                           f"({err.strerror or err}; choose another folder)") from None
    os.close(handle)
    os.unlink(probe)


def same_file(first: str, second: str) -> bool:
    """Whether two paths name one file: the same resolved path (symlinks followed), or the same
    device and inode (hard links, bind mounts)."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samestat(os.stat(first), os.stat(second))
    except (OSError, ValueError):
        return False  # one of them does not exist yet, so they cannot share an inode


def check_outputs_apart(outputs: Mapping[str, str | None],
                        inputs: Iterable[tuple[str, str]]) -> None:
    """Refuse a run whose output would replace one of its own inputs, or another output.

    Outputs map options as the user typed them (`--output`) to paths (None: not asked for);
    inputs are (option, path) pairs. Called before any work, so that nothing is lost.
    """
    inputs = list(inputs)
    written = [(option, path) for option, path in outputs.items() if path]
    for i, (option, path) in enumerate(written):
        for source, read in inputs:
            if read and same_file(path, read):
                raise LazarusError(f"{option} {path} is the same file as the {source} input; "
                                   f"writing it would destroy that input (give {option} "
                                   "another path)")
        for other, other_path in written[i + 1:]:
            if same_file(path, other_path):
                raise LazarusError(f"{option} and {other} name the same file "
                                   "(give them different names)")


def write_atomically(path: str, write: Callable[[Path], None]) -> None:
    """Check `path` as the user gave it, then `replace_atomically` (through a symlink).

    A full disk or another failure to write is a one-line `LazarusError`; no file is left.
    """
    check_writable(path)
    try:
        replace_atomically(Path(os.path.realpath(path)), write)
    except OSError as err:
        reason = err.strerror or str(err)
        fix = ("free some space or choose another folder"
               if err.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another path")
        raise LazarusError(f"cannot write {path}: {reason} (nothing was written; {fix})") from None


def replace_atomically(target: Path, write: Callable[[Path], None],
                       clean_stale: bool = True) -> None:
    """Let `write` fill a temporary file beside `target`, then rename it into place.

    A crash or an error mid-write leaves no half-written file behind. The file keeps its
    permissions, or gets the usual ones (0666 less the umask). OSError when it cannot be done.
    The temporary file's name carries our process id, so that a later write can tell the
    leftovers of a killed run from a concurrent run's file in progress (`remove_stale_temps`).
    """
    if clean_stale:  # callers writing many files to one folder clean it once instead
        remove_stale_temps(target)
    fd, temp_name = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.",
                                     suffix=".tmp", dir=target.parent)
    temp = Path(temp_name)
    try:
        os.close(fd)
        write(temp)
        os.chmod(temp, _mode_for(target))
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_stale_temps(target: Path, now: float | None = None,
                       any_target: bool = False) -> list[Path]:
    """Delete the temporary files that killed runs left beside `target`; return them.

    A run killed outright (SIGKILL, power loss) cannot clean up after itself, so the next write
    to the same target does it. Only our own names for this target are touched
    (`.NAME.PID.XXXXXXXX.tmp`), and only stale ones: the process that made the file is gone and
    the file has not changed for `STALE_AFTER` seconds (a writer in another PID namespace
    sharing the folder is still writing), or nobody has touched it for `ABANDONED_AFTER`
    (the PID may have been reused). A file that vanishes meanwhile was another cleaner's.
    `any_target=True` cleans the leftovers of every target in `target`'s folder.
    """
    now = time.time() if now is None else now
    prefix = r"\..+\." if any_target else re.escape(_temp_prefix(target))
    pattern = re.compile(prefix + r"(\d+)\.[A-Za-z0-9_]{8}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        dead = not _alive(int(match.group(1)))
        if (dead and age >= STALE_AFTER) or age >= ABANDONED_AFTER:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or a number we cannot ask about: assume alive
    return True


def write_text_atomically(path: str, text: str) -> None:
    write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def _mode_for(target: Path) -> int:
    if target.exists():
        return target.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
