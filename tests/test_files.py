"""`io.files` in this process: `@file` lists read from real files and devices, and the
leftovers of killed writers cleaned by the next write (the same through the real CLI in a child
process are integration tests)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lazarus.errors import LazarusError
from lazarus.io.files import (
    ABANDONED_AFTER,
    STALE_AFTER,
    read_lines,
    remove_stale_temps,
    replace_atomically,
)


def test_a_list_keeps_its_line_numbers_and_drops_blank_lines_a_bom_and_crs(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes("\ufeff2+2=\r\n\r\n  \nhello wörld\n".encode())
    assert read_lines(str(path)) == [(1, "2+2="), (4, "hello wörld")]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_unread(device):
    with pytest.raises(LazarusError) as refused:
        read_lines(device)
    assert str(refused.value) == (f"{device} is a device, not a text file (give a text file "
                                  "after '@', or pipe the text in with @/dev/stdin)")


@pytest.mark.parametrize(("content", "message"), [
    (b"fine\n\0binary", "holds a NUL byte (byte 6): binary data, not text (give a UTF-8 text "
                          "file, one item per line)"),
    (b"caf\xe9\n", "is not UTF-8 text (save it as UTF-8, one item per line)"),
])
def test_binary_or_other_encodings_are_one_line(tmp_path, content, message):
    path = tmp_path / "list.txt"
    path.write_bytes(content)
    with pytest.raises(LazarusError) as refused:
        read_lines(str(path))
    assert str(refused.value) == f"{path} {message}"


def test_a_folder_or_a_missing_file_is_named(tmp_path):
    with pytest.raises(LazarusError, match="is a folder, not a file"):
        read_lines(str(tmp_path))
    with pytest.raises(LazarusError, match="file not found: .*missing.txt"):
        read_lines(str(tmp_path / "missing.txt"))


def dead_pid() -> int:
    """A process id no process can have: one past the kernel's largest."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def leftover(folder: Path, name: str, age: float) -> Path:
    path = folder / name
    path.write_text("half")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_only_stale_leftovers_of_this_target_are_removed(tmp_path):
    target = tmp_path / "out.json"
    dead, live = dead_pid(), os.getpid()
    stale = leftover(tmp_path, f".out.json.{dead}.abcdefgh.tmp", STALE_AFTER + 5)
    fresh = leftover(tmp_path, f".out.json.{dead}.ijklmnop.tmp", 1)  # still being written?
    ours = leftover(tmp_path, f".out.json.{live}.qrstuvwx.tmp", STALE_AFTER + 5)
    abandoned = leftover(tmp_path, f".out.json.{live}.yzabcdef.tmp", ABANDONED_AFTER + 5)
    other = leftover(tmp_path, f".other.json.{dead}.abcdefgh.tmp", STALE_AFTER + 5)
    not_ours = leftover(tmp_path, f".out.json.{dead}.short.tmp", STALE_AFTER + 5)
    assert sorted(remove_stale_temps(target)) == sorted([stale, abandoned])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (fresh, ours, other, not_ours))
    assert remove_stale_temps(target, any_target=True) == [other]


def test_a_write_cleans_its_target_s_leftovers_and_leaves_the_file_whole(tmp_path):
    target = tmp_path / "out.json"
    leftover(tmp_path, f".out.json.{dead_pid()}.abcdefgh.tmp", STALE_AFTER + 5)
    replace_atomically(target, lambda temp: temp.write_text("{}"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert target.read_text() == "{}"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def fail(temp: Path) -> None:
        temp.write_text("half")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        replace_atomically(target, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert target.read_text() == "old"
