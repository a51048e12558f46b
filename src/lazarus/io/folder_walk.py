"""Walking a folder of ours without ever following a symbolic link, for counting and deleting.

`cache clear` deletes what it walks, so a link anywhere under the folder (or put there while the
walk runs) must never lead it elsewhere: every folder is opened relative to its parent's open
descriptor with `O_NOFOLLOW`, and every file is removed through that descriptor, so no path is
resolved again after it was checked. A link is an entry like a file (removing it removes the
link, never its target). The folder given is itself refused when it is a link; the folders
above it are the user's choice (a cache folder that is a link to another disk is followed).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# One folder being walked: its descriptor, what is left of its listing (name, lstat), and the
# entry it is (None for the folder walked).
_Level = tuple[int, Iterator[tuple[str, os.stat_result]], "Entry | None"]


@dataclass(frozen=True)
class Entry:
    """One entry under the folder walked: `name` in the folder open as `parent` (a descriptor)."""

    parent: int
    name: str
    path: str  # for messages only: never opened
    depth: int  # 1 for an entry of the folder walked, 2 for one inside such a folder, ...
    info: os.stat_result  # the entry's own (lstat) information
    entered: bool = True  # False for a folder that could not be opened (its contents unseen)

    @property
    def is_folder(self) -> bool:
        return stat.S_ISDIR(self.info.st_mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.info.st_mode)


def entries(top: Path) -> Iterator[Entry]:
    """Every entry under `top`, a folder's contents before the folder (so it can be removed
    once emptied); nothing when `top` is missing, is not a folder or is a link. An entry's
    `parent` descriptor is open until the next entry is asked for. A folder that cannot be
    opened is yielded without its contents."""
    try:
        top_fd = os.open(top, _OPEN_FOLDER)
    except OSError:
        return
    stack: list[_Level] = []
    _push(stack, top_fd, None)
    try:
        yield from _walk(stack, top)
    finally:  # also when the caller stops early
        for fd, _, _ in stack:
            os.close(fd)


def _walk(stack: list[_Level], top: Path) -> Iterator[Entry]:
    while stack:
        fd, listing, folder = stack[-1]
        where = str(top) if folder is None else folder.path
        for name, info in listing:
            entry = Entry(fd, name, os.path.join(where, name), len(stack), info)
            if entry.is_folder:
                try:
                    child = os.open(name, _OPEN_FOLDER, dir_fd=fd)
                except OSError:  # unreadable, or replaced by a link since it was listed
                    yield replace(entry, entered=False)
                    continue
                _push(stack, child, entry)
                break
            yield entry
        else:
            stack.pop()
            os.close(fd)
            if folder is not None:
                yield folder  # its parent's descriptor is still open


def _push(stack: list[_Level], fd: int, entry: Entry | None) -> None:
    """List the folder open as `fd` (each entry's lstat taken now) onto the stack."""
    listing = []
    try:
        for item in os.scandir(fd):
            with contextlib.suppress(OSError):  # gone meanwhile
                listing.append((item.name, item.stat(follow_symlinks=False)))
    except OSError:
        pass  # an unreadable folder: as empty (removing it will fail)
    stack.append((fd, iter(listing), entry))

