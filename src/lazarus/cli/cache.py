"""What `lazarus cache info` and `lazarus cache clear` do: the activation cache's folder and
size, or emptying it."""

from __future__ import annotations

import argparse
from pathlib import Path

from lazarus.analyses.shards import default_root
from lazarus.cli.output import note, out
from lazarus.engine import cache
from lazarus.errors import LazarusError
from lazarus.text import plural


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def run_cache_info(args: argparse.Namespace) -> int:
    summary = cache.describe()
    lines = [f"cache folder: {summary.folder}",
             f"{plural(summary.rows, 'cached row')}, {_size(summary.bytes)}"]
    lines += [f"  {model.model_id}: {plural(model.rows, 'row')}, {_size(model.bytes)} "
              f"({model.source}; {model.folder.name})" for model in summary.models]

    root = default_root()
    count, size = cache.usage(root)
    lines.append(f"corpus scans (introspect examples): {plural(count, 'work folder')}, "
                 f"{_size(size)} in {root} (not cleared by 'lazarus cache clear': delete the "
                 "folder to reclaim the space)")
    out("\n".join(lines))
    for link in (summary.skipped, root if root.is_symlink() else None):
        if link is not None:
            note(f"not counted: {_link(link)} ('cache info' never follows links)")
    return 0


def _link(path: Path) -> str:
    """`path` as a link and where it points, for a note."""
    try:
        return f"{path}, a symbolic link to {path.readlink()}"
    except OSError:
        return f"{path}, a symbolic link"


def run_cache_clear(args: argparse.Namespace) -> int:
    """Empty the cache; the success line only when all of it went (else one error line)."""
    removed = cache.clear()
    if removed.skipped is not None:
        note(f"skipped {_link(removed.skipped)}: 'cache clear' never follows links, so what it "
             "points to is left as it is (remove the link yourself if it should go)")
    if removed.links:
        note(f"removed {plural(removed.links, 'symbolic link')} from the cache without "
             "following them: what they point to is left as it is")
    if removed.left:
        raise LazarusError(f"{plural(removed.left, 'file')} under {removed.folder} could not "
                           "be removed (check their permissions, then run 'lazarus cache "
                           "clear' again)")
    out(f"removed {plural(removed.rows, 'cached row')} ({_size(removed.bytes)}) from "
        f"{removed.folder}")
    return 0
