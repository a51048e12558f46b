"""The keep-alive server from the shell (subprocesses): a command prints, writes and exits the
same with the server as in process, for every command it serves (a corpus and a work folder
named relative to the command's folder); a server killed mid-request costs the command one line
and it runs in process; the socket a killed server leaves is removed (by that command, else by
the next command or `serve --status`, which say so once); a server folder open to others is not
used; a client that goes away (Ctrl-C) has its computation stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
EXIT_STATUS = {"neurons": 0, "probe": 3, "ablate": 0, "steer": 0, "patch": 0, "attribute": 0,
               "examples": 0, "examples-html": 0, "card": 0}
CORPUS = "the cat sat on the mat\nhello world, one two three\nab cd ef gh ij kl mn\n" * 3


@pytest.fixture
def env(monkeypatch):
    """The environment of the commands: a server folder of this test's own (short: a socket's
    path has at most 107 bytes), and no LAZARUS_KEEP_ALIVE from outside; the server stopped
    and killed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="lzs-")) / "serve"
    monkeypatch.setenv("LAZARUS_SERVE_DIR", str(folder))
    monkeypatch.delenv("LAZARUS_KEEP_ALIVE", raising=False)
    environment = dict(os.environ)
    yield environment
    subprocess.run([sys.executable, "-m", "lazarus", "serve", "--stop"], env=environment,
                   capture_output=True, timeout=60)
    for pid in _pids(folder):
        with _gone():
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder.parent, ignore_errors=True)


def _pids(folder: Path) -> list[int]:
    log = folder / "server.log"
    if not log.exists():
        return []
    return [int(line.rsplit("pid ", 1)[1].rstrip(")\n")) for line in log.read_text().splitlines()
            if "serving at" in line]


class _gone:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is ProcessLookupError


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lazarus", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def commands(model: Path) -> dict[str, list[str]]:
    m = ["-m", str(model), "--no-cache"]  # else later runs note rows from the cache
    return {
        "neurons": ["introspect", "neurons", *m, "-l", "0,1", "-p", "ab|hello|cd|world",
                    "--labels", "x|y|x|y", "-o", "out.json"],
        "probe": ["introspect", "probe", *m, "--class-a", "ab|cd|ef|gh|ij",
                  "--class-b", "hello|world|foo|bar|baz", "--permutations", "19", "-o",
                  "out.json", "--save-direction", "d.npz", "--force-save"],
        "ablate": ["introspect", "ablate", *m, "-l", "1", "-p", "ab:c|hello:d|cd:e", "-n",
                   "3,40", "--controls", "5", "-o", "out.json"],
        "steer": ["introspect", "steer", *m, "-p", "ab|hello", "-l", "1", "-n", "3:2.5,9:-1",
                  "--compare", "0,1,2", "--max-tokens", "3", "-o", "out.json"],
        "patch": ["introspect", "patch", *m, "--clean", "a b c|d e f", "--corrupt",
                  "a b d|d e g", "--answer", "x", "--wrong", "y", "-l", "0,1", "-o", "out.csv"],
        "attribute": ["introspect", "attribute", *m, "--clean", "a b c|d e f", "--corrupt",
                      "a b d|d e g", "--answer", "x", "--wrong", "y", "--check", "3",
                      "-o", "out.json"],
        "examples": [*scan("examples", m), "-o", "out.json"],
        "examples-html": [*scan("examples", m), "-n", "3,9", "-o", "out.html"],
        "card": [*scan("card", m), "--causal", "--controls", "2", "-o", "out.json"],
    }


def scan(command: str, model: list[str]) -> list[str]:
    """A corpus command's arguments, its corpus and work folder named relative."""
    return ["introspect", command, *model, "-l", "1", "--corpus", "c.txt", "--window", "8",
            "--examples", "2", "--work-dir", "work", *(["-n", "3,9"] if command == "card" else [])]


def files_of(folder: Path) -> dict[str, object]:
    """Each file's bytes; an .npz's arrays (a zip's entries carry the time they were made)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_dir():
            found[name] = "folder"
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                found[name] = {k: arrays[k].tolist() for k in arrays.files}
        else:
            found[name] = path.read_bytes()
    return found


@pytest.mark.parametrize("command", list(EXIT_STATUS))
def test_same_output_files_and_status_with_and_without_the_server(command, env, tmp_path,
                                                                   tiny_model_dirs):
    args = commands(tiny_model_dirs["llama"])[command]
    runs = {}
    for name, extra in (("in process", []), ("starting the server", ["--keep-alive", "5m"]),
                        ("warm server", [])):
        folder = tmp_path / "run"  # one folder, emptied: a work folder names the corpus' path
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "c.txt").write_text(CORPUS)
        done = cli(args + extra, env, folder)
        runs[name] = (done.returncode, done.stdout, done.stderr, files_of(folder))
    served = [line for line in (Path(env["LAZARUS_SERVE_DIR"]) / "server.log").read_text()
              .splitlines() if line.startswith(f"lazarus: {command.split('-')[0]} on ")]
    assert len(served) == 2  # both later runs were computed by the server
    code, stdout, stderr, files = runs["in process"]
    assert code == EXIT_STATUS[command], stderr  # probe: this random model separates nothing
    assert {"out.json", "out.csv", "out.html"} & set(files)
    for name in ("starting the server", "warm server"):
        assert runs[name][0] == code
        assert runs[name][1] == stdout
        assert runs[name][3] == files
        assert runs[name][2] == stderr, name


def said_model(case: str, dirs: dict[str, Path], folder: Path) -> Path:
    """A tiny model that makes upstream or lazarus say something on stderr as it computes."""
    import json

    model = folder / case
    if case == "generation config":  # a key transformers deprecated: a FutureWarning at load
        shutil.copytree(dirs["llama"], model)
        path = model / "generation_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()),
                                    "continuous_batching_config": {}}))
    elif case == "no pad token":  # a log line of transformers' at each batch padded
        shutil.copytree(dirs["gpt2"], model)
        path = model / "tokenizer_config.json"
        config = {k: v for k, v in json.loads(path.read_text()).items() if k != "pad_token"}
        path.write_text(json.dumps({**config, "verbose": True}))
    else:  # a pickle checkpoint: lazarus notes that it loads the whole model
        import torch
        from safetensors.torch import load_file
        shutil.copytree(dirs["llama"], model)
        torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
        (model / "model.safetensors").unlink()
    return model


SAID = {  # case -> (command, a line of what it says, in process)
    "generation config": ("steer", "FutureWarning: Passing ContinuousBatchingConfig through "
                                   "GenerationConfig is deprecated"),
    "no pad token": ("probe", "[transformers] Using pad_token_id, but it is not set yet."),
    "pickle checkpoint": ("neurons", "lazarus: loading the whole model (its weights are "
                                     "pickle (.bin) files"),
}


@pytest.mark.parametrize("case", list(SAID))
def test_what_upstream_and_lazarus_say_on_stderr_is_the_same_with_the_server(
        case, env, tmp_path, tiny_model_dirs):
    """Python warnings, transformers' log lines and lazarus's notes said while the server
    computes reach the command's stderr as in process: the same text, order and count (a
    warm server too, whose model is loaded already)."""
    command, line = SAID[case]
    model = said_model(case, tiny_model_dirs, tmp_path)
    args = commands(model)[command]
    runs = {}
    for name, extra in (("in process", []), ("starting the server", ["--keep-alive", "5m"]),
                        ("warm server", [])):
        folder = tmp_path / "run"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        done = cli(args + extra, env, folder)
        runs[name] = (done.returncode, done.stdout, done.stderr, files_of(folder))
    log = (Path(env["LAZARUS_SERVE_DIR"]) / "server.log").read_text()
    assert log.count(f"lazarus: {command} on ") == 2
    code, stdout, stderr, files = runs["in process"]
    assert code == EXIT_STATUS[command], stderr
    assert line in stderr
    if case == "no pad token":  # upstream's lines among lazarus's own, in their order
        assert "lazarus: warning: " in stderr
    for name in ("starting the server", "warm server"):
        assert runs[name] == (code, stdout, stderr, files), name
    assert line not in log  # said to the command, not to the server's log


def test_warnings_made_errors_keep_the_run_in_process(env, tmp_path, tiny_model_dirs):
    """With -W error::FutureWarning the run in process stops at the warning with one line and
    status 2; the server cannot stop where that run would, so the command says it does not use
    it and runs in process: the same error line, status and (no) files."""
    model = said_model("generation config", tiny_model_dirs, tmp_path)
    args = commands(model)["steer"]
    runs = {}
    for name, extra in (("in process", []), ("with the server", ["--keep-alive", "5m"])):
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        done = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-m", "lazarus",
                               *args, *extra], env=env, cwd=folder, capture_output=True,
                              text=True, timeout=600)
        runs[name] = (done.returncode, done.stdout, done.stderr.splitlines(), files_of(folder))
    code, stdout, stderr, files = runs["in process"]
    assert code == 2
    assert len(stderr) == 1
    assert "FutureWarning" in stderr[0]
    assert runs["with the server"][:2] == (code, stdout)
    assert runs["with the server"][3] == files
    assert runs["with the server"][2] == [
        "lazarus: keep-alive server: not using it: warnings are turned into errors here "
        "(-W error or PYTHONWARNINGS); running in process", *stderr]


def test_starting_the_server_leaves_no_resource_warning(env, tmp_path, llama_dir):
    """The server is started detached and outlives the command: with every warning shown
    (-W default), the command's stderr is the same as in process."""
    args = commands(llama_dir)["neurons"]
    runs = {}
    for name, extra in (("in process", []), ("starting the server", ["--keep-alive", "5m"])):
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        done = subprocess.run([sys.executable, "-W", "default", "-m", "lazarus", *args, *extra],
                              env=env, cwd=folder, capture_output=True, text=True, timeout=600)
        runs[name] = (done.returncode, done.stdout, done.stderr)
    assert runs["starting the server"] == runs["in process"]
    assert "lazarus: neurons on " in (Path(env["LAZARUS_SERVE_DIR"]) / "server.log").read_text()


def test_a_server_killed_mid_request_costs_one_line_and_the_command_runs_in_process(
        env, tmp_path, tiny_model_dirs):
    args = commands(tiny_model_dirs["llama"])["neurons"]
    alone = tmp_path / "alone"
    alone.mkdir()
    expected = cli(args, env, alone)
    assert expected.returncode == 0, expected.stderr
    folder = Path(env["LAZARUS_SERVE_DIR"])
    server = subprocess.Popen([sys.executable, "-m", "lazarus", "serve"], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "serving at" in server.stderr.readline()
        work = tmp_path / "killed"
        work.mkdir()
        client = subprocess.Popen([sys.executable, "-m", "lazarus", *args], env=env, cwd=work,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = server.stderr.readline()  # the request arrived: it now imports torch and loads
        assert line.startswith("lazarus: neurons on "), line
        assert not (work / "out.json").exists()
        server.kill()
        stdout, stderr = client.communicate(timeout=600)
    finally:
        server.kill()
        server.wait()
    assert client.returncode == expected.returncode
    assert stdout == expected.stdout
    # The socket the killed server left, certainly stale (nothing listens, no lock held):
    # removed at once, said on that one line; the next commands run as without a server.
    assert stderr == ("lazarus: keep-alive server: the server went away mid-request (removed "
                      "its stale socket); running in process\n" + expected.stderr)
    assert files_of(work) == files_of(alone)
    assert not (folder / "server.sock").exists()
    again = [cli(args, env, work) for _ in range(2)]
    assert [done.stderr for done in again] == [expected.stderr] * 2
    assert [done.stdout for done in again] == [expected.stdout] * 2
    # A socket left all the same (a server killed while idle): the next command says so once
    # and removes it.
    sock = folder / "server.sock"
    server = subprocess.Popen([sys.executable, "-m", "lazarus", "serve"], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "serving at" in server.stderr.readline()
    finally:
        server.kill()
        server.wait()
    assert sock.exists()
    again = [cli(args, env, work) for _ in range(2)]
    assert again[0].stderr == (f"lazarus: keep-alive server: no server answers at {sock} "
                               "(Connection refused; removed it); running in process\n"
                               + expected.stderr)
    assert again[1].stderr == expected.stderr
    assert [done.stdout for done in again] == [expected.stdout] * 2
    assert not sock.exists()


@pytest.mark.parametrize("what", ["folder", "socket"])
def test_a_server_folder_or_socket_open_to_others_is_not_used(what, env, tmp_path,
                                                               tiny_model_dirs):
    args = commands(tiny_model_dirs["llama"])["steer"]
    first = tmp_path / "first"
    first.mkdir()
    started = cli(args + ["--keep-alive", "5m"], env, first)
    assert started.returncode == 0, started.stderr
    folder = Path(env["LAZARUS_SERVE_DIR"])
    path = folder if what == "folder" else folder / "server.sock"
    path.chmod(0o755 if what == "folder" else 0o666)
    work = tmp_path / "second"
    work.mkdir()
    done = cli(args, env, work)
    path.chmod(0o700 if what == "folder" else 0o600)
    mode = "0755" if what == "folder" else "0666"
    wanted = "0700" if what == "folder" else "0600"
    kind = "" if what == "folder" else "/server.sock"
    assert done.stderr.splitlines()[0] == (
        f"lazarus: keep-alive server: not using it: {folder}{kind} has mode {mode}, open to "
        f"others (it must be {wanted}); running in process")
    assert done.returncode == 0
    assert done.stdout == started.stdout
    assert files_of(work) == files_of(first)
    log = (folder / "server.log").read_text()
    assert log.count("lazarus: steer on ") == 1  # the second run never reached it


def test_ctrl_c_in_the_client_stops_its_computation(env, tmp_path, tiny_model_dirs):
    args = commands(tiny_model_dirs["llama"])["neurons"]
    server = subprocess.Popen([sys.executable, "-m", "lazarus", "serve"], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "serving at" in server.stderr.readline()
        client = subprocess.Popen([sys.executable, "-m", "lazarus", *args], env=env,
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        assert server.stderr.readline().startswith("lazarus: neurons on ")
        client.send_signal(signal.SIGINT)
        _, stderr = client.communicate(timeout=120)
        assert client.returncode == 130
        assert stderr == "lazarus: interrupted\n"
        assert server.stderr.readline() == "lazarus: neurons: the client went away; stopped\n"
        assert not (tmp_path / "out.json").exists()
        status = cli(["serve", "--status"], env, tmp_path)  # still serving
        assert status.returncode == 0
        assert status.stdout.startswith("keep-alive server: pid ")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert server.returncode == 130
    assert not (Path(env["LAZARUS_SERVE_DIR"]) / "server.sock").exists()
    time.sleep(0)


def test_status_after_a_server_killed_says_none_runs_and_removes_its_socket(env, tmp_path):
    folder = Path(env["LAZARUS_SERVE_DIR"])
    server = subprocess.Popen([sys.executable, "-m", "lazarus", "serve"], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "serving at" in server.stderr.readline()
    finally:
        server.kill()  # kill -9: its socket stays
        server.wait()
    assert (folder / "server.sock").exists()
    status = [cli(["serve", "--status"], env, tmp_path) for _ in range(2)]
    none = f"no keep-alive server is running (folder {folder})\n"
    assert [(done.returncode, done.stdout) for done in status] == [(3, none)] * 2
    assert [done.stderr for done in status] == [
        f"lazarus: removed the stale socket {folder / 'server.sock'} (its server is gone)\n", ""]
    assert not (folder / "server.sock").exists()
