"""What `lazarus cache info` and `lazarus cache clear` do: the activation cache's folder and
size, or emptying it."""

from __future__ import annotations

import argparse

from lazarus.cli_output import out
from lazarus.errors import LazarusError
from lazarus.text import plural


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def run_cache_info(args: argparse.Namespace) -> int:
    from lazarus import cache

    summary = cache.describe()
    lines = [f"cache folder: {summary.folder}",
             f"{plural(summary.rows, 'cached row')}, {_size(summary.bytes)}"]
    lines += [f"  {model.model_id}: {plural(model.rows, 'row')}, {_size(model.bytes)} "
              f"({model.source}; {model.folder.name})" for model in summary.models]
    from lazarus.shards import work_folders

    root, count, size = work_folders()
    lines.append(f"corpus scans (introspect examples): {plural(count, 'work folder')}, "
                 f"{_size(size)} in {root} (not cleared by 'lazarus cache clear': delete the "
                 "folder to reclaim the space)")
    out("\n".join(lines))
    return 0


def run_cache_clear(args: argparse.Namespace) -> int:
    from lazarus import cache

    removed = cache.clear()
    out(f"removed {plural(removed.rows, 'cached row')} ({_size(removed.bytes)}) from "
        f"{removed.folder}")
    if removed.left:
        raise LazarusError(f"{plural(removed.left, 'file')} under {removed.folder} could not "
                           "be removed (check their permissions, then run 'lazarus cache "
                           "clear' again)")
    return 0
