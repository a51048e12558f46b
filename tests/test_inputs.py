"""Parsing prompts, labels and neuron ids, and writing files atomically."""

from __future__ import annotations

import pytest

from lazarus.errors import LazarusError
from lazarus.io.files import check_writable, write_text_atomically
from lazarus.io.inputs import parse_labels, parse_neurons, parse_prompts, resolve_layer


def test_pipe_separated_prompts_keep_their_spaces():
    assert parse_prompts("2+2=| hello |x") == ["2+2=", " hello ", "x"]


def test_prompt_file_skips_blank_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("2+2=\r\n\n   \n47*47=\nlast line without newline")
    assert parse_prompts(f"@{path}") == ["2+2=", "47*47=", "last line without newline"]


def test_labels_must_match_prompt_count():
    assert parse_labels("a| b", 2) == ["a", "b"]
    with pytest.raises(LazarusError, match="3 labels for 2 prompts"):
        parse_labels("a|b|c", 2)


def test_neuron_ids():
    assert parse_neurons("808, 1190") == [808, 1190]
    with pytest.raises(LazarusError, match="twice"):
        parse_neurons("1,1")


@pytest.mark.parametrize("layer,expected", [(0, 0), (3, 3), (-1, 3), (-4, 0)])
def test_layers_resolve_from_either_end(layer, expected):
    assert resolve_layer(layer, 4) == expected


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "out.json"
    write_text_atomically(str(path), "first")
    assert path.read_text() == "first"

    def failing(temp):
        temp.write_text("half")
        raise RuntimeError("disk full")

    from lazarus.io.files import write_atomically

    with pytest.raises(RuntimeError):
        write_atomically(str(path), failing)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    check_writable(str(path))  # an existing writable file is fine


def test_bom_and_folders_and_literal_at(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff2+2=\r\n10*10=\r\n".encode())
    assert parse_prompts(f"@{path}") == ["2+2=", "10*10="]
    with pytest.raises(LazarusError, match="is a folder"):
        parse_prompts(f"@{tmp_path}")
    assert parse_prompts("@@home|x") == ["@home", "x"]


def test_neuron_ids_are_ascii_digits():
    with pytest.raises(LazarusError, match="whole number"):
        parse_neurons("\u0663")  # an Arabic-Indic three


def test_writes_go_through_symlinks_and_keep_permissions(tmp_path):
    import os
    import stat

    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text_atomically(str(link), "new")
    assert link.is_symlink()
    assert real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.json"
    write_text_atomically(str(fresh), "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_special_files_are_refused(tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(LazarusError, match="not a regular file"):
        check_writable(str(fifo))
    with pytest.raises(LazarusError, match="empty"):
        check_writable("")
