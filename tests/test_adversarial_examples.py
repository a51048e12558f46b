"""`introspect examples` against what an adversarial run found: a work folder resumed by a run
whose options compute other values, shards on disk that are damaged or forged (merged as they
were: a NaN mean, an IndexError), a full disk or a folder in a shard's place (tracebacks), and a
Ray cluster that asks for a token (70 lines of retries and tracebacks).

Oracle: the same scan in a fresh work folder; the options' own argparse tree and signatures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import lazarus
from lazarus import LazarusWarning
from lazarus.analyses.examples_plan import NOT_IN_KEY, plan_examples
from lazarus.analyses.options import ExamplesOptions
from lazarus.api import Model
from lazarus.cli.main import main
from lazarus.cli.parser import build_parser
from lazarus.io.directions import Direction

CORPUS = Path(__file__).parent / "data" / "corpus.txt"
SRC = Path(__file__).parent.parent / "src"
RUN = {"neurons": [1, 2], "examples": 4, "window": 10, "shard_windows": 10}
SHARDS = 5  # of RUN over the corpus below


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text("\n".join(CORPUS.read_text().splitlines()[:36]) + "\n")
    return path


@pytest.fixture(scope="module")
def model(llama_dir) -> Model:
    return lazarus.load(str(llama_dir))


def comparable(document) -> dict:
    """A result's JSON document (or the result), less where its shards were found."""
    if not isinstance(document, dict):
        document = json.loads(json.dumps(document.to_json()))
    return {k: v for k, v in document.items() if k not in ("work_dir", "resumed_shards")}


@pytest.fixture(scope="module")
def fresh(model, corpus, tmp_path_factory) -> tuple[dict, Path]:
    """The scan in a fresh work folder (the oracle), and that folder, kept pristine."""
    result = model.examples(str(corpus), 1, work_dir=str(tmp_path_factory.mktemp("w")), **RUN)
    assert result.shards == SHARDS
    return comparable(result), Path(result.work_dir)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """A copy of the work folder, where the same scan finds it (--work-dir tmp_path/w)."""
    target = tmp_path / "w" / folder.name
    shutil.copytree(folder, target)
    return target


# 1. The work folder's key holds every option that changes a computed value.

def examples_options() -> set[str]:
    """Every option of `examples`: the CLI's arguments and the API's keywords."""
    def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        return next(a.choices[name] for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction) and name in a.choices)

    examples = subcommand(subcommand(build_parser(), "introspect"), "examples")
    cli = {a.dest for a in examples._actions if a.dest != "help"}
    api = {field.name for field in dataclasses.fields(ExamplesOptions)}
    for function in (Model.examples, Model.__init__, lazarus.load):
        api |= set(inspect.signature(function).parameters) - {"self"}
    return cli | api


CLI_NAMES = {"from_direction": "direction"}  # the CLI's name -> the API keyword it becomes


def flips(tmp_path: Path, llama_dir: Path, corpus: Path,
          width: int) -> tuple[dict[str, tuple[dict, dict]], dict]:
    """For each option in the key: (model keywords, plan keywords) that differ from the base
    in that option alone, and so must name another work folder; and the base of the direction
    options' flips (a direction instead of neurons)."""
    other_model = tmp_path / "other-model"
    shutil.copytree(llama_dir, other_model)
    config = json.loads((other_model / "config.json").read_text())
    (other_model / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    other_corpus = tmp_path / "other.txt"
    other_corpus.write_text(corpus.read_text() + "one more line\n")
    one, two = np.zeros(width), np.zeros(width)
    one[[3, 5, 7]], two[[3, 5, 9]] = [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]
    by_one = {"neurons": None, "direction": Direction(one), "top_k": 3}
    return {
        "model": ({"model": str(other_model)}, {}),
        "device": ({"device": "cuda"}, {}),
        "dtype": ({"dtype": "bfloat16"}, {}),
        "trust_remote_code": ({"trust_remote_code": True}, {}),
        "device_map": ({"device_map": "auto"}, {}),
        "corpus": ({}, {"corpus": str(other_corpus)}),
        "layer": ({}, {"layer": 0}),
        "site": ({}, {"site": "mlp_out"}),
        "neurons": ({}, {"neurons": [1, 3]}),
        "direction": ({}, {**by_one, "direction": Direction(two)}),  # these two against
        "top_k": ({}, {**by_one, "top_k": 2}),  # by_one, the rest the base
        "projection": ({}, {**by_one, "top_k": None, "projection": True}),
        "examples": ({}, {"examples": 5}),
        "window": ({}, {"window": 12}),
        "stride": ({}, {"stride": 5}),
        "text_field": ({}, {"text_field": "body"}),
        "shard_windows": ({}, {"shard_windows": 7}),
    }, by_one


def test_every_option_is_in_the_work_folder_s_key_or_said_to_change_no_value(
        llama_dir, corpus, tmp_path):
    """A trusted run resumed an untrusted run's shards: --trust-remote-code and --device-map
    were not in the key. Now each option is either flipped here and seen to move the folder,
    or listed in NOT_IN_KEY with the reason it changes no value; a new option in neither fails."""
    base = {"corpus": str(corpus), "layer": 1, "work_dir": str(tmp_path / "w"), **RUN}

    def folder(model_options: dict, plan_options: dict) -> Path:
        model_options = {"model": str(llama_dir), **model_options}
        handle = Model(model_options.pop("model"), **model_options)
        options = {**base, **plan_options}
        return plan_examples(handle, options.pop("corpus"), ExamplesOptions(**options)).folder

    table, by_one = flips(tmp_path, llama_dir, corpus, Model(str(llama_dir)).hidden_size)
    options = {CLI_NAMES.get(name, name) for name in examples_options()}
    print("options:", sorted(options))
    assert set(NOT_IN_KEY) <= options  # no stale names in the list
    unaccounted = options - set(table) - set(NOT_IN_KEY)
    assert not unaccounted, (f"{sorted(unaccounted)}: put each in the work folder's key (and "
                             "a flip here) or in NOT_IN_KEY with why it changes no value")
    reference = folder({}, {})
    for name, (model_options, plan_options) in table.items():
        before = folder({}, by_one) if name in ("direction", "top_k", "projection") \
            else reference
        assert folder(model_options, plan_options) != before, name
    # the same values: the same folder
    assert folder({"whole": False, "use_cache": False}, {}) == reference
    assert folder({}, {"ray": True, "ray_workers": 3, "ray_address": "10.0.0.5:6379"}) \
        == reference


def test_a_trusted_run_does_not_resume_an_untrusted_run_s_shards(llama_dir, corpus, tmp_path,
                                                                  capsys):
    args = ["introspect", "examples", "-m", str(llama_dir), "-l", "1", "--corpus", str(corpus),
            "-n", "1,2", "--window", "10", "--work-dir", str(tmp_path / "w")]
    assert main(args) == 0
    assert "resumed" not in capsys.readouterr().err
    assert main([*args, "--trust-remote-code"]) == 0
    assert "resumed" not in capsys.readouterr().err
    assert len(list((tmp_path / "w").iterdir())) == 2


# 2. A damaged or forged shard is computed again, never merged.

def forge(path: Path, change) -> None:
    arrays = dict(np.load(path))
    change(arrays)
    with open(path, "wb") as file:
        np.savez_compressed(file, **arrays)


def set_in(key: str, where: tuple, value) -> object:
    return lambda arrays: arrays[key].__setitem__(where, value)


FORGERIES = {
    "a NaN mean": (set_in("mean", (0,), np.nan), "NaN or infinite"),
    "an infinite top value": (set_in("top", (1, 0), np.inf), "NaN or infinite"),
    "a forged count": (set_in("count", (0,), 500), "counts 500 tokens"),
    "a sketch that does not add up": (set_in("sketch", (0, 5), 7), "counts disagree"),
    "more positives than tokens": (set_in("positive", (1,), 10**6), "counts disagree"),
    "an example of another window": (set_in("top_ids", (0, 0, 1), 77), "do not score"),
    "top values out of order": (set_in("top", (0, 1), 1e6), "out of order"),
    "a float64 top": (lambda a: a.update(top=a["top"].astype(np.float64)), "top: expected"),
    "a neuron more": (lambda a: a.update({k: np.concatenate([v, v[:1]]) for k, v in a.items()
                                          if k != "count"}), "3 neurons where"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_npz_shard_is_computed_again(model, corpus, fresh, tmp_path, name):
    """Merged as it was, a NaN reached the report as a NaN mean and a count the sketch did not
    hold ended in an IndexError."""
    expected, pristine = fresh
    folder = copy_of(pristine, tmp_path)
    change, reason = FORGERIES[name]
    forge(folder / "shard-000002.npz", change)
    with pytest.warns(LazarusWarning) as caught:
        again = model.examples(str(corpus), 1, work_dir=str(tmp_path / "w"), **RUN)
    messages = [str(w.message) for w in caught if w.category is LazarusWarning]
    print(messages)
    assert len(messages) == 1
    assert f"{folder / 'shard-000002.npz'} is damaged (" in messages[0]
    assert reason in messages[0]
    assert again.resumed_shards == SHARDS - 1
    assert comparable(again) == expected


def test_the_warning_names_the_shard_on_stderr(llama_dir, corpus, fresh, tmp_path, capsys):
    expected, pristine = fresh
    folder = copy_of(pristine, tmp_path)
    forge(folder / "shard-000001.npz", set_in("count", (0,), 10**9))
    out = tmp_path / "out.json"
    assert main(["introspect", "examples", "-m", str(llama_dir), "-l", "1", "--corpus",
                 str(corpus), "-n", "1,2", "--examples", "4", "--window", "10",
                 "--shard-windows", "10", "--work-dir", str(tmp_path / "w"),
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"lazarus: warning: {folder / 'shard-000001.npz'} is damaged (it counts "
            "1000000000 tokens") in err
    assert comparable(json.loads(out.read_text())) == expected


def as_parquet(folder: Path) -> None:
    """The work folder's shards as Ray's actors write them (`write_shard(parquet=True)`)."""
    from lazarus.analyses.shards import ScanSettings, write_shard
    from lazarus.stats.sketch import Summary

    settings = json.loads((folder / "settings.json").read_text())
    settings = ScanSettings(**{k: v for k, v in settings.items()
                               if k not in ("windows", "shards")})
    for path in sorted(folder.glob("shard-*.npz")):
        summary = Summary.from_arrays(dict(np.load(path)), settings.examples)
        write_shard(folder, int(path.stem.split("-")[1]), summary, settings, parquet=True)
        path.unlink()


def damage_page(path: Path, column: str, header: bool) -> None:
    """Flip three bytes of a column's data page (at its end), or of its page header."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(metadata.column(i) for i in range(metadata.num_columns)
                 if metadata.column(i).path_in_schema == column)
    at = chunk.data_page_offset + (1 if header else chunk.total_compressed_size - 4)
    data = bytearray(path.read_bytes())
    for k in range(3):
        data[at + k] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    ("data page", "CRC checksum verification failed"),
    ("page header", "thrift"),
    ("count", "it counts 999 tokens where its windows score"),
])
def test_a_damaged_parquet_shard_is_computed_again(model, corpus, fresh, tmp_path, damage,
                                                   reason):
    """A damaged page read back without a word (no checksums were written), a damaged page
    header was an OSError; both now read as damaged, and the shard is computed again."""
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    expected, pristine = fresh
    folder = copy_of(pristine, tmp_path)
    as_parquet(folder)
    path = folder / "shard-000003.parquet"
    if damage == "count":
        table = pq.read_table(path)
        counts = pa.array(np.full(table.num_rows, 999, np.int64))
        pq.write_table(table.set_column(table.schema.get_field_index("count"), "count",
                                        counts), path)
    else:
        damage_page(path, "mean", header=damage == "page header")
    with pytest.warns(LazarusWarning) as caught:
        again = model.examples(str(corpus), 1, work_dir=str(tmp_path / "w"), **RUN)
    messages = [str(w.message) for w in caught if w.category is LazarusWarning]
    print(messages)
    assert len(messages) == 1
    assert f"{path} is damaged (" in messages[0]
    assert reason in messages[0]
    assert again.resumed_shards == SHARDS - 1
    assert comparable(again) == expected


# 3. A work folder that cannot take a shard: one line, exit 2.

def fails(capsys, argv: list[str], output: Path) -> str:
    code = main([*argv, "-o", str(output)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    print(captured.err)
    assert code == 2
    assert len(lines) == 1
    assert "Traceback" not in captured.err
    assert not output.exists()
    return lines[0]


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (as root), or None where mounting is not allowed."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    yield where if mounted else None
    if mounted:
        subprocess.run(["umount", str(where)], check=True)


def test_a_full_disk_is_one_line(llama_dir, corpus, tmp_path, capsys, small_disk, monkeypatch):
    """ENOSPC from write_shard was a traceback. On a real small disk where it can be mounted,
    else with the error raised where the OS raises it, at the rename into place."""
    work = small_disk if small_disk is not None else tmp_path / "w"
    if small_disk is None:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(os, "replace", full)
    line = fails(capsys, ["introspect", "examples", "-m", str(llama_dir), "-l", "1",
                          "--corpus", str(corpus), "--window", "10", "--shard-windows", "10",
                          "--work-dir", str(work)], tmp_path / "out.json")
    assert line.startswith(f"lazarus: error: cannot write {work}/")
    assert "No space left on device (free some space, or give --work-dir a folder" in line


def test_a_disk_full_before_the_first_file_leaves_no_work_folder(llama_dir, corpus, tmp_path,
                                                                 capsys, small_disk):
    """The work folder is made, then its settings.json cannot be written: one line, and the
    empty folder is taken away again."""
    if small_disk is None:
        pytest.skip("needs a small tmpfs (root)")
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as file:
        while True:
            file.write(b"x" * 4096)
            file.flush()
    line = fails(capsys, ["introspect", "examples", "-m", str(llama_dir), "-l", "1",
                          "--corpus", str(corpus), "--window", "10", "--shard-windows", "10",
                          "--work-dir", str(small_disk)], tmp_path / "out.json")
    assert line.startswith(f"lazarus: error: cannot write {small_disk}/")
    assert line.endswith("settings.json: No space left on device (free some space, or give "
                         "--work-dir a folder on a disk with room)")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_folder_where_a_shard_should_be_is_one_line(llama_dir, corpus, fresh, tmp_path,
                                                      capsys):
    _, pristine = fresh
    folder = copy_of(pristine, tmp_path)
    (folder / "shard-000001.npz").unlink()
    (folder / "shard-000001.npz").mkdir()
    line = fails(capsys, ["introspect", "examples", "-m", str(llama_dir), "-l", "1",
                          "--corpus", str(corpus), "-n", "1,2", "--examples", "4",
                          "--window", "10", "--shard-windows", "10",
                          "--work-dir", str(tmp_path / "w")], tmp_path / "out.json")
    assert line == (f"lazarus: error: cannot write {folder / 'shard-000001.npz'}: Is a "
                    "directory (remove what is in its way, or give another --work-dir)")


# 4. A Ray cluster that asks for a token.

def cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    environment.update({"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **env})
    return subprocess.run([sys.executable, "-m", "lazarus.cli.main", *args], env=environment,
                          capture_output=True, text=True, timeout=timeout)


def examples_on_ray(llama_dir: Path, corpus: Path, work: Path, address: str) -> list[str]:
    return ["introspect", "examples", "-m", str(llama_dir), "-l", "1", "--corpus", str(corpus),
            "-n", "1,2", "--examples", "4", "--window", "10", "--shard-windows", "10",
            "--work-dir", str(work), "--ray-address", address]


@pytest.mark.integration
def test_ray_token_mode_without_a_token_is_one_line(llama_dir, corpus, tmp_path):
    """RAY_AUTH_MODE=token and no token anywhere: Ray raises before it connects (a real
    `ray.init`, at an address where something listens)."""
    pytest.importorskip("ray.data")
    home = tmp_path / "home"
    home.mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        done = cli(examples_on_ray(llama_dir, corpus, tmp_path / "w", address),
                   {"RAY_AUTH_MODE": "token", "HOME": str(home)})
    print(done.stderr)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "lazarus: error: RAY_AUTH_MODE=token but no token was found (give the cluster's token, "
        "which `ray get-auth-token` prints on its head node, in ~/.ray/auth_token, in a file "
        "named by RAY_AUTH_TOKEN_PATH, or in RAY_AUTH_TOKEN)"]


@pytest.mark.slow  # a Ray head of its own: about 30 s on 2 cores
def test_a_ray_cluster_started_with_a_token_needs_ray_auth_mode(llama_dir, corpus, tmp_path):
    """`ray start --head` turns token authentication on when ~/.ray/auth_token exists (any
    earlier local Ray run writes one). Connecting by address without RAY_AUTH_MODE=token was
    70 lines (AuthenticationError, then ConnectionError); with it, the result is the
    single-process one."""
    pytest.importorskip("ray.data")
    ray = str(Path(sys.executable).parent / "ray")
    home = tmp_path / "home"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
           "HOME": str(home), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    short = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # its socket paths must be short
    head = subprocess.Popen([ray, "start", "--head", "--port", str(port), "--num-cpus", "1",
                             "--include-dashboard=false", "--temp-dir", short, "--block"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert head.poll() is None, head.stderr.read()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        address = f"127.0.0.1:{port}"
        refused = cli(examples_on_ray(llama_dir, corpus, tmp_path / "a", address),
                      {"HOME": str(home), "RAY_gcs_server_port_wait_time_s": "2"})
        print(refused.stderr)
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [
            f"lazarus: error: the Ray cluster at {address} asks for a token (Ray's token "
            "authentication): export RAY_AUTH_MODE=token, and give the cluster's token, which "
            "`ray get-auth-token` prints on its head node, in ~/.ray/auth_token, in a file "
            "named by RAY_AUTH_TOKEN_PATH, or in RAY_AUTH_TOKEN"]
        out = tmp_path / "ray.json"
        done = cli([*examples_on_ray(llama_dir, corpus, tmp_path / "b", address), "-o",
                    str(out)], {"HOME": str(home), "RAY_AUTH_MODE": "token"})
        assert done.returncode == 0, done.stderr
        alone = cli([*examples_on_ray(llama_dir, corpus, tmp_path / "c", address)[:-2], "-o",
                     str(tmp_path / "alone.json")], {"HOME": str(home)})  # the same threads
        assert alone.returncode == 0, alone.stderr
        assert comparable(json.loads(out.read_text())) \
            == comparable(json.loads((tmp_path / "alone.json").read_text()))
    finally:
        head.terminate()  # `ray start --block` stops the head's processes as it exits
        head.wait(timeout=120)
        shutil.rmtree(short, ignore_errors=True)
