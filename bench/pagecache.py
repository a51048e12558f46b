"""How many bytes of a file the kernel has read: its pages in the page cache (Linux).

`evict` drops a file's pages from the page cache (`posix_fadvise(DONTNEED)`, no root needed);
after a load, `resident_bytes` counts the pages that were read back (`mincore`). The count
includes the kernel's read-ahead around each read: it is what the disk really delivered, not
only what the program asked for.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")


def available() -> bool:
    return hasattr(os, "posix_fadvise") and os.uname().sysname == "Linux"


def evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_bytes(path: str) -> int:
    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    with open(path, "rb") as file:
        mapping = mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ)
    view = np.frombuffer(mapping, dtype=np.uint8)  # only for its address; never read
    try:
        pages = (size + PAGE - 1) // PAGE
        flags = (ctypes.c_ubyte * pages)()
        if libc.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size), flags) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return sum(flag & 1 for flag in flags) * PAGE
    finally:
        del view
        mapping.close()
