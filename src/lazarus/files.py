"""Reading `@file` lists and writing output files atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lazarus.errors import LazarusError


def read_lines(path: str) -> list[str]:
    """Lines of a text file (or a pipe), blank lines skipped, a UTF-8 BOM and CRs removed."""
    file = Path(path)
    if file.is_dir():
        raise LazarusError(f"{path} is a folder, not a file (give a text file after '@')")
    if not file.exists():
        raise LazarusError(f"file not found: {path} (check the path after '@')")
    try:
        with open(file, encoding="utf-8-sig") as handle:  # also reads pipes and /dev/stdin
            text = handle.read()
    except UnicodeDecodeError:
        raise LazarusError(
            f"{path} is not UTF-8 text (save it as UTF-8, one item per line)"
        ) from None
    except OSError as err:
        raise LazarusError(f"cannot read {path}: {err.strerror} (check its permissions)") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


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
        raise LazarusError(f"cannot write {path}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK):
        raise LazarusError(f"cannot write {path}: folder {folder} is not writable (choose another)")
    if target.exists() and not os.access(target, os.W_OK):
        raise LazarusError(f"cannot write {path}: the file is read-only (choose another path)")


def write_atomically(path: str, write: Callable[[Path], None]) -> None:
    """Check `path` as the user gave it, then `replace_atomically` (through a symlink)."""
    check_writable(path)
    replace_atomically(Path(os.path.realpath(path)), write)


def replace_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Let `write` fill a temporary file beside `target`, then rename it into place.

    A crash or an error mid-write leaves no half-written file behind. The file keeps its
    permissions, or gets the usual ones (0666 less the umask). OSError when it cannot be done.
    """
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        write(temp)
        os.chmod(temp, _mode_for(target))
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str, text: str) -> None:
    write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def _mode_for(target: Path) -> int:
    if target.exists():
        return target.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
