"""The activation cache survives whatever it finds on disk: forged, hostile or broken entries are
recomputed, never trusted, never hang the run, and `cache info`/`cache clear` always work.

Oracle: a run without the cache (`use_cache=False`), and the files on disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lazarus.engine import cache
from lazarus.engine.cache import ActivationCache
from lazarus.engine.collect import ModelSettings, collect
from lazarus.engine.model_info import read_model_info
from lazarus.engine.placement import Target
from lazarus.engine.trace import CaptureRequest

PROMPTS = ["2+2=", "47*47="]
REQUEST = CaptureRequest(layers=(1,))
CPU = Target("cpu", "float32")
CACHED = ModelSettings()


def run(folder: Path, settings: ModelSettings = CACHED):
    result = collect(read_model_info(str(folder)), PROMPTS, REQUEST, settings)
    return result, {result.computed} - {0}


def close(actual: np.ndarray, expected: np.ndarray) -> bool:
    worst = float(np.max(np.abs(actual - expected)))
    print(f"max |difference| {worst:.2g}")
    return worst <= 1e-5  # one prompt alone vs two in a batch: float32 rounding


def entry(folder: Path, prompt: str) -> Path:
    return ActivationCache(read_model_info(str(folder)), "resid_post").path(CPU, 1, prompt)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A valid .npy version 1.0 magic and header declaring `shape`, as numpy writes it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_an_entry_declaring_a_huge_shape_is_recomputed_without_allocating_it(llama_dir):
    fresh, _ = run(llama_dir, ModelSettings(use_cache=False))
    run(llama_dir)
    forged = entry(llama_dir, PROMPTS[0])
    # 2**40 float32 values declared, 64 present: numpy would try to allocate 4 TiB.
    forged.write_bytes(npy_header((1 << 40,)) + np.ones(64, np.float32).tobytes())
    again, totals = run(llama_dir)
    assert totals == {1}, "only the forged prompt is computed"
    assert close(again.rows[1], fresh.rows[1])


@pytest.mark.parametrize("spoil", ["nan", "big-endian", "float64", "2-D", "pickle"])
def test_rows_that_are_not_finite_float32_vectors_are_recomputed(llama_dir, spoil):
    fresh, _ = run(llama_dir, ModelSettings(use_cache=False))
    run(llama_dir)
    path = entry(llama_dir, PROMPTS[1])
    good = np.load(path, allow_pickle=False)
    bad = {"nan": np.where(np.arange(64) == 3, np.nan, good).astype(np.float32),
           "big-endian": good.astype(">f4"),
           "float64": good.astype(np.float64),
           "2-D": good.reshape(8, 8),
           "pickle": np.array([good], dtype=object)}[spoil]
    with open(path, "wb") as file:
        np.save(file, bad, allow_pickle=True)
    again, totals = run(llama_dir)
    assert totals == {1}
    assert close(again.rows[1], fresh.rows[1])
    assert close(np.load(path, allow_pickle=False), fresh.rows[1][1])


def test_a_fifo_in_place_of_an_entry_does_not_hang_the_run(llama_dir):
    run(llama_dir)
    path = entry(llama_dir, PROMPTS[0])
    path.unlink()
    os.mkfifo(path)
    finished: list[object] = []
    worker = threading.Thread(target=lambda: finished.append(run(llama_dir)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(path, "wb"):
            pass
    assert finished, "the run hung on the FIFO"
    _, totals = finished[0]
    assert totals == {1}


@pytest.mark.integration
@pytest.mark.parametrize("index", ["[1, 2, 3]", '"text"', "null", "{broken", ""])
def test_cache_info_and_clear_survive_any_index_file(llama_dir, index):
    run(llama_dir)
    store = ActivationCache(read_model_info(str(llama_dir)), "resid_post")
    for name in ("model.json",):
        (store.folder / name).write_text(index)
    env = {**os.environ}
    info = subprocess.run([sys.executable, "-m", "lazarus.cli.main", "cache", "info"],
                          capture_output=True, text=True, env=env)
    assert info.returncode == 0, info.stderr
    assert "2 cached rows" in info.stdout
    again, totals = run(llama_dir)
    assert again.prompts_from_cache == 2
    assert totals == set()
    cleared = subprocess.run([sys.executable, "-m", "lazarus.cli.main", "cache", "clear"],
                             capture_output=True, text=True, env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith("removed 2 cached rows")
    assert list(cache.cache_dir().rglob("*.npy")) == []


@contextlib.contextmanager
def undeletable(path: Path):
    """`path` cannot be removed while inside: immutable for root, a read-only folder else."""
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make a file immutable here: {made.stderr.decode().strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield
        finally:
            path.parent.chmod(stat.S_IRWXU)


@pytest.mark.integration
def test_clear_reports_what_it_really_removed(llama_dir):
    run(llama_dir)
    kept = entry(llama_dir, PROMPTS[0])
    with undeletable(kept):
        removed = cache.clear()
        result = subprocess.run([sys.executable, "-m", "lazarus.cli.main", "cache", "clear"],
                                capture_output=True, text=True)
    assert (removed.rows, removed.left) == (1, 1)
    assert kept.exists()
    assert result.stdout == ""  # a clear that fails claims no success
    assert result.returncode == 2
    assert result.stderr.startswith("lazarus: error: 1 file under ")
    assert len(result.stderr.splitlines()) == 1


def test_clear_counts_only_what_it_removed_and_never_follows_links(llama_dir, tmp_path):
    run(llama_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.npy").write_bytes(b"not ours")
    store = ActivationCache(read_model_info(str(llama_dir)), "resid_post")
    (store.folder / "link").symlink_to(outside, target_is_directory=True)
    removed = cache.clear()
    assert (removed.rows, removed.left) == (2, 0)
    assert (outside / "precious.npy").read_bytes() == b"not ours"
    assert not store.folder.exists()


THREE = ["2+2=", "47*47=", "x"]  # a majority of sound rows


@pytest.mark.parametrize("position", ["last", "all"])
def test_a_damaged_first_row_cannot_set_the_width(llama_dir, position):
    """At a site whose width lazarus cannot know in advance, the first row read must not decide
    it; and per token, a row must have one value per token of its prompt."""
    from lazarus.engine.positions import parse_position

    request = CaptureRequest(layers=(1,), site="mlp_post", position=parse_position(position))
    info = read_model_info(str(llama_dir))
    fresh = collect(info, THREE, request, ModelSettings(use_cache=False)).rows[1]
    collect(info, THREE, request)
    store = ActivationCache(info, "mlp_post", position=position)
    first = store.path(CPU, 1, THREE[0])
    good = np.load(first, allow_pickle=False)
    damaged = good[..., :7] if position == "last" else good[:2]  # other width / fewer tokens
    with open(first, "wb") as file:
        np.save(file, np.ascontiguousarray(damaged))
    again = collect(info, THREE, request)
    assert again.computed == 1, "only the damaged prompt is computed again"
    for index in range(len(THREE)):
        assert close(again.rows[1][index], fresh[index])


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lazarus.cli.main", *args], capture_output=True,
                          text=True)


def precious(folder: Path) -> dict[str, bytes]:
    """A folder of someone else's files (rows among them), and what they hold."""
    files = {"notes.txt": b"keep me", "sub/row.npy": b"not ours", "v1/m/layer-1/x.npy": b"!"}
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return files


def untouched(folder: Path, files: dict[str, bytes]) -> bool:
    found = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return found == files


@pytest.mark.integration
def test_clear_leaves_the_target_of_a_link_in_place_of_its_folder_alone(tmp_path):
    outside = tmp_path / "outside"
    files = precious(outside)
    versioned = cache.cache_dir() / cache.FORMAT
    versioned.parent.mkdir(parents=True, exist_ok=True)
    versioned.symlink_to(outside, target_is_directory=True)
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert untouched(outside, files)
    assert versioned.is_symlink()
    assert cleared.stdout.startswith("removed 0 cached rows")
    assert cleared.stderr.splitlines() == [
        f"lazarus: skipped {versioned}, a symbolic link to {outside}: 'cache clear' never "
        "follows links, so what it points to is left as it is (remove the link yourself if it "
        "should go)"]


@pytest.mark.integration
def test_cache_info_counts_nothing_behind_a_link(tmp_path):
    outside = tmp_path / "outside"
    precious(outside)
    root = cache.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    (root / cache.FORMAT).symlink_to(outside, target_is_directory=True)
    (root / "examples").symlink_to(outside, target_is_directory=True)
    info = cli("cache", "info")
    assert info.returncode == 0, info.stderr
    assert "0 cached rows, 0 B" in info.stdout
    assert "0 work folders, 0 B" in info.stdout
    assert info.stderr.splitlines() == [
        f"lazarus: not counted: {root / name}, a symbolic link to {outside} ('cache info' "
        "never follows links)" for name in (cache.FORMAT, "examples")]


@pytest.mark.integration
def test_clear_removes_links_inside_the_cache_but_not_their_targets(llama_dir, tmp_path):
    run(llama_dir)
    outside = tmp_path / "outside"
    files = precious(outside)
    store = ActivationCache(read_model_info(str(llama_dir)), "resid_post")
    (store.folder / "folder-link").symlink_to(outside, target_is_directory=True)
    (store.folder / "file-link.npy").symlink_to(outside / "sub" / "row.npy")
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert untouched(outside, files)
    assert not store.folder.exists()
    assert cleared.stdout.startswith("removed 2 cached rows")
    assert cleared.stderr.splitlines() == [
        "lazarus: removed 2 symbolic links from the cache without following them: what they "
        "point to is left as it is"]


@pytest.mark.integration
def test_a_cache_folder_that_is_a_link_is_the_users_choice(llama_dir, tmp_path, monkeypatch):
    """The folder named by LAZARUS_CACHE_DIR is followed (the cache lives where the user put
    it); only lazarus's own subfolder in it is emptied."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "beside.txt").write_bytes(b"beside")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(link))
    run(llama_dir)
    assert len(list((real / cache.FORMAT).rglob("*.npy"))) == 2
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith("removed 2 cached rows")
    assert cleared.stderr == ""
    assert sorted(p.name for p in real.iterdir()) == ["beside.txt"]


def test_a_folder_swapped_for_a_link_during_the_walk_is_not_entered(tmp_path):
    """The walk opens each folder relative to its parent without following links, so a folder
    replaced by a link after it was listed is reported as not entered, never walked."""
    from lazarus.io.folder_walk import entries

    outside = tmp_path / "outside"
    precious(outside)
    top = tmp_path / "top"
    for name in ("a", "b"):
        (top / name).mkdir(parents=True)
        (top / name / "row.npy").write_bytes(b"ours")
    walk = entries(top)
    first = next(walk)  # a file in the folder entered first
    other = top / ({"a", "b"} - {Path(first.path).parent.name}).pop()
    for path in other.iterdir():
        path.unlink()
    other.rmdir()
    other.symlink_to(outside, target_is_directory=True)
    seen = [first, *walk]
    assert not any(str(outside) in entry.path for entry in seen)
    assert [(e.name, e.entered) for e in seen if e.path == str(other)] == [(other.name, False)]
