"""Reading chosen arrays from an untrusted `.npz` file with bounded memory and no pickle.

`numpy.load` inflates a member before anything checks its size, so a small file can hold a
"zip bomb" that takes gigabytes. Here only the asked-for members are opened, and each is
refused unless its declared size (from the zip directory, then from the `.npy` header) is
within a cap the caller chooses; the inflater never produces more than the declared size (a
member that holds more fails its CRC check). Every way the file can be broken is one
`NpzError` with a short reason; the caller adds the file name and the fix.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from lazarus.errors import first_line

MAX_DIRECTORY = 1 << 20  # bytes of zip central directory: thousands of members, a few MB parsed
_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_SEARCH = _EOCD_SIZE + 0xFFFF  # the end record sits within this many bytes of the end
_BROKEN = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
           EOFError, OSError, ValueError, struct.error, zlib.error)


class NpzError(Exception):
    """The archive or one of its members cannot be read safely; the message says why."""


def read_arrays(path: Path, caps: dict[str, int]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The members named in `caps` that the file holds, and every key it holds.

    `caps[key]` is the most data bytes (elements × item size) accepted for that key.
    Raises `NpzError`; never reads a member that was not asked for.
    """
    _check_directory_size(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {_key(info.filename): info for info in archive.infolist()}
            arrays = {key: _read_member(archive, members[key], key, cap)
                      for key, cap in caps.items() if key in members}
    except NpzError:
        raise
    except _BROKEN as err:
        raise NpzError(f"not a readable .npz file ({first_line(err)})") from None
    return arrays, list(members)


def _key(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name


def _check_directory_size(path: Path) -> None:
    """Refuse an archive whose member list alone would take a lot of memory to parse."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _SEARCH))
            tail = handle.read()
    except OSError as err:
        raise NpzError(f"cannot read it ({first_line(err)})") from None
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise NpzError("not a readable .npz file (no zip directory at its end)")
    entries, directory = struct.unpack("<HI", tail[at + 10:at + 16])
    if entries == 0xFFFF or directory > MAX_DIRECTORY:
        raise NpzError(f"its zip directory is larger than {MAX_DIRECTORY} bytes, far more than "
                       "a direction needs")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
                 cap: int) -> np.ndarray:
    if info.flag_bits & 0x1:
        raise NpzError(f"'{key}' is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise NpzError(f"'{key}' uses zip compression method {info.compress_type}, which "
                       "lazarus does not read (numpy writes stored or deflated members)")
    if info.file_size > cap + 2 * npy_format.ARRAY_ALIGN + 10_000:  # data + the .npy header
        raise NpzError(f"'{key}' declares {info.file_size} bytes, more than the {cap} bytes "
                       "it may hold")
    with archive.open(info) as member:
        try:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(member)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy_format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except (ValueError, EOFError, SyntaxError, TypeError) as err:
            raise NpzError(f"'{key}' is not a valid .npy array ({first_line(err)})") from None
        if any(length < 0 for length in shape):
            raise NpzError(f"'{key}' declares a negative length in its shape {shape}")
        if dtype.hasobject:
            raise NpzError(f"'{key}' holds pickled objects, which lazarus never loads")
        size = math.prod(shape) * dtype.itemsize
        if size > cap:
            raise NpzError(f"'{key}' declares {size} bytes of data, more than the {cap} bytes "
                           "it may hold")
        data = member.read(size)
        if len(data) != size or member.read(1):
            raise NpzError(f"'{key}' does not hold the {size} bytes its header declares")
    if dtype.itemsize == 0:
        return np.empty(shape, dtype)
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


