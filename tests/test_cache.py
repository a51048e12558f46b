"""The activation cache returns exactly what a capture computes, and only for the same files.

Oracle: the values of a run without the cache (`use_cache=False`), and the files on disk.
Every test has a private cache folder (conftest's `private_cache` sets LAZARUS_CACHE_DIR).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from lazarus.engine import cache
from lazarus.engine.cache import ActivationCache
from lazarus.engine.collect import ModelSettings, collect
from lazarus.engine.model_info import read_model_info
from lazarus.engine.placement import Target, resolve
from lazarus.engine.trace import CaptureRequest

PROMPTS = ["2+2=", "47*47=", "The capital of France is", "x"]
REQUEST = CaptureRequest(layers=(1, 3))
NO_CACHE = ModelSettings(use_cache=False)
CACHED = ModelSettings()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(folder: Path, prompts=PROMPTS, settings=CACHED, request=REQUEST):
    """collect(), with {how many distinct prompts it computed} (empty: none) and its notes."""
    notes: list[str] = []
    result = collect(read_model_info(str(folder)), prompts, request, settings,
                     notify=notes.append)
    return result, {result.computed} - {0}, notes


def close(actual: np.ndarray, expected: np.ndarray) -> bool:
    worst = float(np.max(np.abs(actual - expected)))
    print(f"max |difference| {worst:.2g}")
    return worst <= 1e-5  # as tests/test_capture.py: float32 rounding of other batchings


def cached_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy"))


@pytest.fixture
def model_copy(llama_dir, tmp_path) -> Path:
    """A copy of the tiny Llama that a test may change."""
    return Path(shutil.copytree(llama_dir, tmp_path / "llama", copy_function=shutil.copy2))


@pytest.fixture
def cache_root() -> Path:
    return cache.cache_dir()


def test_the_folder_is_lazarus_cache_dir_else_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path / "a"))
    assert cache.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LAZARUS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "lazarus"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "lazarus"


def test_a_second_run_reads_identical_rows_from_the_cache(llama_dir, cache_root):
    fresh, _, _ = run(llama_dir, settings=NO_CACHE)
    first, first_totals, first_notes = run(llama_dir)
    second, second_totals, second_notes = run(llama_dir)
    assert first.prompts_from_cache == 0
    assert first_totals == {len(PROMPTS)}
    assert first_notes == []
    assert len(cached_files(cache_root)) == len(PROMPTS) * len(REQUEST.layers)
    assert second.prompts_from_cache == len(PROMPTS)
    assert second_totals == set(), "nothing was computed"
    assert second_notes == [f"4 of 4 prompts from the activation cache ({cache_root})"]
    assert (second.device, second.dtype) == (fresh.device, fresh.dtype) == ("cpu", "float32")
    for layer in REQUEST.layers:
        assert second.rows[layer].dtype == np.float32
        assert np.array_equal(first.rows[layer], fresh.rows[layer])
        assert np.array_equal(second.rows[layer], fresh.rows[layer])


def test_other_neurons_and_a_subset_of_layers_hit_the_full_width_rows(llama_dir):
    run(llama_dir)
    again, totals, _ = run(llama_dir, request=CaptureRequest(layers=(3,)))
    assert again.prompts_from_cache == len(PROMPTS)
    assert totals == set()
    assert again.rows[3].shape == (len(PROMPTS), 64)


def test_only_the_missing_prompts_are_computed(llama_dir):
    run(llama_dir, prompts=PROMPTS[:2])
    more = PROMPTS + ["2+2=", "new prompt"]  # a repeat, and a fifth distinct prompt
    mixed, totals, notes = run(llama_dir, prompts=more)
    fresh, _, _ = run(llama_dir, prompts=more, settings=NO_CACHE)
    assert totals == {3}, "the three prompts not cached, each once"
    assert mixed.prompts_from_cache == 3  # "2+2=" twice and "47*47="
    assert notes == [f"3 of 6 prompts from the activation cache ({cache.cache_dir()})"]
    for layer in REQUEST.layers:  # batched otherwise, so equal to float32 rounding
        assert close(mixed.rows[layer], fresh.rows[layer])


def test_no_cache_neither_reads_nor_writes(llama_dir, cache_root):
    fresh, _, _ = run(llama_dir, settings=NO_CACHE)
    assert not cache_root.exists() or cached_files(cache_root) == []
    # Plant wrong rows: a run with the cache returns them, one without does not.
    store = ActivationCache(read_model_info(str(llama_dir)), "resid_post")
    for layer in REQUEST.layers:
        for prompt in PROMPTS:
            store.put(Target("cpu", "float32"), layer, prompt, np.full(64, 7.0, np.float32))
    planted = sorted((p, p.stat().st_mtime_ns) for p in cached_files(cache_root))
    with_cache, _, _ = run(llama_dir)
    without, totals, notes = run(llama_dir, settings=NO_CACHE)
    assert np.all(with_cache.rows[1] == 7.0)
    assert without.prompts_from_cache == 0
    assert totals == {len(PROMPTS)}
    assert notes == []
    assert np.array_equal(without.rows[1], fresh.rows[1])
    assert sorted((p, p.stat().st_mtime_ns) for p in cached_files(cache_root)) == planted


def other_weights_same_size_and_times(folder: Path) -> None:
    """Replace the weights with different values of the same shapes (so the same file size),
    then put the old modification time back, as `cp -p`, `rsync -a` or unpacking would."""
    weights = folder / "model.safetensors"
    before = weights.stat()
    state = load_file(weights)
    save_file({name: tensor + 0.5 for name, tensor in state.items()}, weights,
              metadata={"format": "pt"})
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("route", ["content hash", "change time"])
def test_new_weights_with_the_old_name_size_and_time_are_a_miss(model_copy, route, monkeypatch):
    if route == "change time":  # weights larger than HASHED_BYTES are identified by stat
        monkeypatch.setattr(cache, "HASHED_BYTES", 0)
    before, _, _ = run(model_copy)
    other_weights_same_size_and_times(model_copy)
    after, totals, _ = run(model_copy)
    fresh, _, _ = run(model_copy, settings=NO_CACHE)
    assert after.prompts_from_cache == 0
    assert totals == {len(PROMPTS)}
    assert np.array_equal(after.rows[3], fresh.rows[3])
    assert not np.allclose(after.rows[3], before.rows[3], atol=1e-3)


def test_a_config_edited_in_place_with_the_old_size_and_time_is_a_miss(model_copy):
    before, _, _ = run(model_copy)
    config_file = model_copy / "config.json"
    stat = config_file.stat()
    text = config_file.read_text()
    assert text.count('"rms_norm_eps": 1e-06') == 1
    edited = text.replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 0.100')  # same length
    assert len(edited) == len(text)
    config_file.write_text(edited)
    os.utime(config_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after, totals, _ = run(model_copy)
    fresh, _, _ = run(model_copy, settings=NO_CACHE)
    assert totals == {len(PROMPTS)}
    assert np.array_equal(after.rows[3], fresh.rows[3])
    assert not np.allclose(after.rows[3], before.rows[3], atol=1e-4)


def test_settings_that_change_what_runs_are_part_of_the_key(llama_dir):
    run(llama_dir)
    remote, totals, _ = run(llama_dir, settings=ModelSettings(trust_remote_code=True))
    assert remote.prompts_from_cache == 0
    assert totals == {len(PROMPTS)}
    again, totals, _ = run(llama_dir, settings=ModelSettings(trust_remote_code=True))
    assert again.prompts_from_cache == len(PROMPTS)


def test_a_corrupt_entry_is_ignored_and_rewritten(llama_dir, cache_root):
    fresh, _, _ = run(llama_dir, settings=NO_CACHE)
    run(llama_dir)
    store = ActivationCache(read_model_info(str(llama_dir)), "resid_post")
    spoilt = [store.path(Target("cpu", "float32"), 1, PROMPTS[0]),
              store.path(Target("cpu", "float32"), 3, PROMPTS[2])]
    spoilt[0].write_bytes(b"\x93NUMPY garbage")
    spoilt[1].write_bytes(b"")
    again, totals, _ = run(llama_dir)
    assert totals == {2}, "the two prompts whose rows were spoilt"
    for layer in REQUEST.layers:
        assert close(again.rows[layer], fresh.rows[layer])
    for path in spoilt:
        assert np.load(path, allow_pickle=False).shape == (64,)
    assert [p for p in cache_root.rglob("*") if p.name.startswith(".tmp")] == []


@pytest.mark.integration
def test_a_warm_run_imports_neither_torch_nor_transformers(llama_dir, cache_root):
    fresh, _, _ = run(llama_dir)
    np.save(cache_root.parent / "expected.npy", fresh.rows[3])
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from lazarus.engine.capture import CaptureRequest
        from lazarus.engine.collect import collect
        from lazarus.engine.model_info import read_model_info
        got = collect(read_model_info({str(llama_dir)!r}), {PROMPTS!r},
                      CaptureRequest(layers=(1, 3)))
        expected = np.load({str(cache_root.parent / "expected.npy")!r})
        print(got.prompts_from_cache, np.array_equal(got.rows[3], expected),
              "torch" in sys.modules, "transformers" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["4", "True", "False", "False"]


@pytest.mark.integration
def test_a_warm_cli_run_writes_the_same_json_without_torch(llama_dir, cache_root, tmp_path):
    args = ["introspect", "neurons", "-m", str(llama_dir), "-l", "2", "-p", "2+2=|47*47=",
            "-n", "1,5"]
    script = textwrap.dedent("""
        import sys
        from lazarus.cli.main import main
        status = main(sys.argv[1:])
        print("torch" in sys.modules, file=sys.stderr)
        sys.exit(status)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    runs = []
    for name in ("cold.json", "warm.json", "none.json"):
        extra = ["--no-cache"] if name == "none.json" else []
        done = subprocess.run([sys.executable, "-c", script, *args, *extra, "-o",
                               str(tmp_path / name)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        runs.append(done.stderr.splitlines())
    assert runs[0][-1] == "True"
    assert runs[1][-1] == "False", "the warm run did not import torch"
    assert f"lazarus: 2 of 2 prompts from the activation cache ({cache_root})" in runs[1]
    assert not any("activation cache" in line for line in runs[2])
    cold, warm, none = (json.loads((tmp_path / n).read_text())
                        for n in ("cold.json", "warm.json", "none.json"))
    assert warm == cold == none


def test_hub_models_are_told_apart_by_their_snapshot_revision(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    repo = hub / "models--org--tiny"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    config = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8,
              "dtype": "bfloat16"}
    folders = []
    for revision in ("a" * 40, "b" * 40):
        (repo / "snapshots" / revision).mkdir(parents=True)
        (repo / "snapshots" / revision / "config.json").write_text(json.dumps(config))
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        info = read_model_info("org/tiny")
        identity = cache.model_identity(info)
        assert (identity["hub"], identity["revision"]) == ("org/tiny", revision)
        assert [name for name, *_ in identity["files"]] == ["config.json"]
        folders.append(ActivationCache(info, "resid_post").folder)
    assert folders[0] != folders[1]
    assert resolve(info.config, "cuda", "auto") == Target("cuda", "bfloat16")


def test_auto_resolves_without_torch_as_load_model_does(llama_dir):
    info = read_model_info(str(llama_dir))
    assert resolve(info.config, "cpu", "auto") == Target("cpu", "float32")
    assert resolve(info.config, "cuda", "float16") == Target("cuda", "float16")
    fresh, _, _ = run(llama_dir)
    assert resolve(info.config) == Target(fresh.device, fresh.dtype)


def test_describe_and_clear(llama_dir, cache_root, tmp_path):
    assert cache.describe().rows == 0
    run(llama_dir)
    (cache_root / "not-ours.txt").write_text("kept")
    summary = cache.describe()
    assert summary.folder == cache_root
    assert summary.rows == len(PROMPTS) * len(REQUEST.layers)
    assert summary.bytes > summary.rows * 64 * 4
    assert [m.model_id for m in summary.models] == [str(llama_dir)]
    assert summary.models[0].rows == summary.rows
    removed = cache.clear()
    assert removed.rows == summary.rows
    assert cached_files(cache_root) == []
    assert (cache_root / "not-ours.txt").read_text() == "kept"
    assert cache.describe().rows == 0
    again, _, _ = run(llama_dir)
    assert again.prompts_from_cache == 0


def test_an_unwritable_cache_is_reported_once_and_the_run_goes_on(llama_dir, monkeypatch,
                                                                   tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(blocker))
    result, totals, notes = run(llama_dir)
    fresh, _, _ = run(llama_dir, settings=NO_CACHE)
    assert np.array_equal(result.rows[3], fresh.rows[3])
    assert len(notes) == 1
    assert notes[0].startswith(f"cannot write the activation cache in {blocker}")
