"""`io.folder_walk.entries` on real folders: every entry once, a folder after its contents, links
seen as entries and never followed, and no descriptor left open however the walk ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lazarus.io.folder_walk import entries


@pytest.fixture
def tree(tmp_path) -> Path:
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "deep.txt").write_text("deep")
    (top / "a" / "one.txt").write_text("1")
    (top / "empty").mkdir()
    (top / "root.txt").write_text("root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("never listed")
    (top / "a" / "to-outside").symlink_to(outside)
    (top / "dangling").symlink_to(tmp_path / "nothing")
    return top


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_every_entry_once_with_its_depth_and_kind(tree):
    seen = {os.path.relpath(e.path, tree): (e.depth, e.is_folder, e.is_link)
            for e in entries(tree)}
    expected = {}
    for root, folders, files in os.walk(tree):  # os.walk does not follow links by default
        for name in folders + files:
            path = Path(root, name)
            relative = str(path.relative_to(tree))
            expected[relative] = (relative.count(os.sep) + 1, path.is_dir() and not
                                  path.is_symlink(), path.is_symlink())
    assert seen == expected
    assert "a/to-outside/precious.txt" not in seen


def test_a_folder_comes_after_everything_in_it(tree):
    order = [os.path.relpath(e.path, tree) for e in entries(tree)]
    assert len(order) == len(set(order))
    for index, path in enumerate(order):
        inside = [p for p in order if p.startswith(path + os.sep)]
        assert all(order.index(p) < index for p in inside), path


def test_entries_can_be_removed_through_their_parent_descriptor(tree, tmp_path):
    """What `cache clear` does: the tree goes, the link's target stays."""
    for entry in entries(tree):
        if entry.is_folder:
            os.rmdir(entry.name, dir_fd=entry.parent)
        else:
            os.unlink(entry.name, dir_fd=entry.parent)
    assert list(tree.iterdir()) == []
    assert (tmp_path / "outside" / "precious.txt").read_text() == "never listed"


def test_a_missing_top_a_file_or_a_link_yields_nothing(tree, tmp_path):
    link = tmp_path / "link-to-top"
    link.symlink_to(tree)
    for top in (tmp_path / "missing", tree / "root.txt", link):
        assert list(entries(top)) == []


def test_no_descriptor_is_left_open_when_the_walk_stops_early(tree):
    before = open_descriptors()
    walk = entries(tree)
    deepest = next(e for e in walk if e.depth == 3)
    assert deepest.path == str(tree / "a" / "b" / "deep.txt")
    assert len(open_descriptors() - before) == 3  # top, a and b, open while b is read
    walk.close()
    assert open_descriptors() == before
    list(entries(tree))
    assert open_descriptors() == before
