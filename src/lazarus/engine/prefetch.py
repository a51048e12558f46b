"""Asking the kernel to read a model's first blocks while Python is still importing torch."""

from __future__ import annotations

import os
from pathlib import Path

from lazarus.engine.checkpoint import block_index, safetensors_header
from lazarus.engine.model_info import ModelInfo, local_files
from lazarus.errors import LazarusError

_PREFETCH_STEP = 2 << 20


def prefetch_blocks(info: ModelInfo, up_to_layer: int | None = None) -> int:
    """Ask the kernel to read the tensors of decoder blocks 0..up_to_layer (all blocks if None)
    from the safetensors files into the page cache, in the background (`posix_fadvise`
    WILLNEED), so that the disk works while Python imports torch. Only those byte ranges are
    asked for, so the kernel's read-ahead does not pull in the blocks around them. Returns the
    bytes asked for: 0 where this is not possible, or when they would fill half the free RAM.
    """
    if not hasattr(os, "posix_fadvise"):
        return 0
    try:
        ranges = [(path, start, end) for path in local_files(info, ".safetensors")
                  for start, end in _block_ranges(path, up_to_layer)]
        total = sum(end - start for _, start, end in ranges)
        if not ranges or total > available_ram_bytes() // 2:
            return 0
        for path in {path for path, _, _ in ranges}:
            fd = os.open(path, os.O_RDONLY)
            try:
                for _, start, end in (r for r in ranges if r[0] == path):
                    # Linux reads at most one read-ahead window per call: ask in steps.
                    for offset in range(start, end, _PREFETCH_STEP):
                        length = min(_PREFETCH_STEP, end - offset)
                        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)
        return total
    except (OSError, ValueError, KeyError, TypeError, IndexError, LazarusError):
        return 0  # only a head start: loading reads what it needs anyway


def _block_ranges(path: Path, up_to_layer: int | None) -> list[tuple[int, int]]:
    """Byte ranges in a safetensors file of the blocks' tensors, adjacent ones merged."""
    header, base = safetensors_header(path)
    spans = []
    for name, entry in header.items():
        index = block_index(name)
        if index is not None and (up_to_layer is None or index <= up_to_layer):
            start, end = entry["data_offsets"]
            spans.append((base + start, base + end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo on Linux; else the physical memory's size; else 4 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 << 30
