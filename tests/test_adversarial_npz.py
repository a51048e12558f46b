"""Hostile direction files cost no memory and fail in one line (issue 8).

A small `.npz` can declare gigabytes ("zip bomb"), hide them in a key nobody uses, or be broken
at the zip level in many ways; each must be refused before anything is inflated, through the
real entry point, with one line on stderr.
"""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format
from test_adversarial_io import fail_in_process

from lazarus.errors import LazarusError
from lazarus.io.directions import load_direction

MISSING_MODEL = "/nonexistent/model"  # a check that fires before loading never names it

def _zero_member(archive: zipfile.ZipFile, name: str, data_bytes: int) -> None:
    """A deflated .npy member of `data_bytes` zero bytes that compresses to ~1/1000 of that."""
    with archive.open(name, "w", force_zip64=True) as member:
        npy_format.write_array_header_1_0(
            member, {"descr": "<f4", "fortran_order": False, "shape": (data_bytes // 4,)})
        chunk = bytes(1 << 20)
        for _ in range(data_bytes // len(chunk)):
            member.write(chunk)


def _bomb(path: Path, key: str, data_bytes: int = 1 << 28) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        if key != "direction":
            with archive.open("direction.npy", "w") as member:
                np.save(member, np.linspace(-1, 1, 64).astype(np.float32))
        _zero_member(archive, f"{key}.npy", data_bytes)
    return path


def _peak_bytes(action) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_direction_bomb_is_refused_before_it_is_inflated(tmp_path):
    path = _bomb(tmp_path / "bomb.npz", "direction")
    assert path.stat().st_size < 2 << 20  # 256 MB of zeros in a file of about 1 MB

    def load():
        with pytest.raises(LazarusError, match="'direction' declares 268435584 bytes, more than "
                           "the 134217728 bytes it may hold"):
            load_direction(str(path))

    peak = _peak_bytes(load)
    print(f"peak {peak / 2**20:.1f} MiB")
    assert peak < 16 << 20


def test_a_bomb_in_an_unused_key_is_never_opened(tmp_path):
    path = _bomb(tmp_path / "bomb.npz", "unused_notes")
    loaded = []
    peak = _peak_bytes(lambda: loaded.append(load_direction(str(path))))
    print(f"peak {peak / 2**20:.1f} MiB")
    assert peak < 16 << 20
    np.testing.assert_array_equal(loaded[0].direction, np.linspace(-1, 1, 64).astype(np.float32))


def _patched(path: Path, old: bytes, new: bytes, count: int) -> None:
    data = path.read_bytes()
    assert data.count(old) == count
    path.write_bytes(data.replace(old, new))


def _stored(path: Path, arrays: dict[str, np.ndarray], method=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.save(member, value, allow_pickle=False)
    return path


def _encrypted(path: Path) -> None:
    _stored(path, {"direction": np.ones(64, np.float32)})
    # The general-purpose flag's bit 0 ("encrypted") in the local and the central header.
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x1
    path.write_bytes(bytes(data))


def _bad_crc(path: Path) -> None:
    _stored(path, {"direction": np.full(64, 0.5, np.float32)})
    one = np.float32(0.5).tobytes()
    data = path.read_bytes()
    at = data.index(one * 64)
    path.write_bytes(data[:at] + np.float32(0.25).tobytes() + data[at + 4:])


def _header(path: Path, header: dict, data: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w") as archive, archive.open("direction.npy", "w") as member:
        npy_format.write_array_header_1_0(member, header)
        member.write(data)


def _many_members(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("direction.npy", b"")
        for i in range(13000):
            archive.writestr(f"padding-{i:06d}-{'x' * 60}", b"")


def _truncated(path: Path) -> None:
    _stored(path, {"direction": np.ones(64, np.float32)})
    path.write_bytes(path.read_bytes()[:-30])


HOSTILE = {
    "encrypted member": (_encrypted, "'direction' is encrypted"),
    "bzip2 member": (lambda p: _stored(p, {"direction": np.ones(64)}, zipfile.ZIP_BZIP2),
                     "'direction' uses zip compression method 12"),
    "lzma member": (lambda p: _stored(p, {"direction": np.ones(64)}, zipfile.ZIP_LZMA),
                    "'direction' uses zip compression method 14"),
    "CRC error": (_bad_crc, "Bad CRC-32"),
    "truncated archive": (_truncated, "is not an .npz file"),
    "huge shape in the header": (
        lambda p: _header(p, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)}),
        "'direction' declares 4398046511104 bytes of data"),
    "negative shape": (
        lambda p: _header(p, {"descr": "<f4", "fortran_order": False, "shape": (-4,)}),
        "negative length"),
    "object array": (
        lambda p: _header(p, {"descr": "|O", "fortran_order": False, "shape": (2,)}),
        "pickled objects"),
    "data shorter than the header says": (
        lambda p: _header(p, {"descr": "<f4", "fortran_order": False, "shape": (64,)},
                          bytes(100)),
        "does not hold the 256 bytes its header declares"),
    "thousands of members": (_many_members, "zip directory is larger than"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_direction_files_are_one_line_errors(capsys, tmp_path, case):
    make, words = HOSTILE[case]
    path = tmp_path / "hostile.npz"
    make(path)
    output = tmp_path / "out.json"
    message = fail_in_process(capsys, "introspect", "neurons", "-m", MISSING_MODEL, "-l", "0",
                              "-p", "x", "--from-direction", path, "-o", output)
    assert message.startswith(f"lazarus: error: {path}")
    assert words in message
    assert not output.exists()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_valid_files_written_by_plain_numpy_still_load(tmp_path, save):
    path = tmp_path / "d.npz"
    vector = np.linspace(-1, 1, 64)  # float64, as numpy makes it
    save(path, direction=vector, importance=np.asfortranarray(np.abs(vector)),
         label_positive=np.array("hard"), layer=np.array(2), accuracy=np.array(0.75),
         extra_notes=np.arange(10))
    loaded = load_direction(str(path))
    np.testing.assert_array_equal(loaded.direction, vector.astype(np.float32))
    np.testing.assert_array_equal(loaded.importance, np.abs(vector).astype(np.float32))
    assert (loaded.label_positive, loaded.layer, loaded.metrics) == ("hard", 2, {"accuracy": 0.75})
