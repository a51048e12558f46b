"""The keep-alive server's parts, in one process: the codec (results through JSON and back,
anything else refused), a server thread answering garbage with an error and serving on, its
idle timeout, and its memory cap evicting the least recently used model (sizes checked against
the parameters of the model as Hugging Face loads it)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lazarus
from lazarus.analyses.attribute_options import AttributeOptions
from lazarus.analyses.card_options import CardOptions
from lazarus.analyses.contexts import shaded_contexts
from lazarus.analyses.options import ExamplesOptions, NeuronsOptions
from lazarus.analyses.patch_options import PatchOptions
from lazarus.render.attribute import render_attribution
from lazarus.render.card import render_card
from lazarus.render.card_html import render_card_html
from lazarus.render.causal import render_ablation, render_steer
from lazarus.render.examples import render_examples, render_html
from lazarus.render.layers import render_result
from lazarus.render.patch import render_patch
from lazarus.serve import codec, protocol
from lazarus.serve.client import compute, request
from lazarus.serve.server import Server


def through_the_wire(value):
    return codec.decode(json.loads(json.dumps(codec.encode(value), allow_nan=False)))


def test_results_cross_the_wire_whole(llama_dir):
    model = lazarus.load(str(llama_dir))
    prompts = ["ab", "hello", "cd", "world"]
    neurons = model.neurons(prompts, layers="0,1", labels=["x", "y", "x", "y"])
    back = through_the_wire(neurons)
    assert type(back) is type(neurons)
    assert back.to_json() == neurons.to_json()
    assert render_result(back) == render_result(neurons)
    assert np.array_equal(back.layers[0].matrix.values, neurons.layers[0].matrix.values)
    probe = model.probe(["ab", "cd", "ef", "gh"], ["hello", "world", "foo", "bar"],
                        permutations=9)
    assert through_the_wire(probe).to_json() == probe.to_json()
    ablation = model.ablate(["ab", "hello"], 1, answers=["c", "d"], neurons=[3, 40],
                            controls=3)
    assert render_ablation(through_the_wire(ablation)) == render_ablation(ablation)
    steer = model.steer(["ab"], 1, neurons={3: 2.5}, max_tokens=2)
    assert render_steer(through_the_wire(steer)) == render_steer(steer)


def test_the_pair_results_cross_the_wire_whole(llama_dir):
    model = lazarus.load(str(llama_dir))
    pairs = (["a b c", "d e f"], ["a b d", "d e g"], ["x"], ["y"])
    patch = model.patch(*pairs, sites=("resid_post", "attn_out"), layers="0,1")
    back = through_the_wire(patch)
    assert type(back) is type(patch)
    assert (back.to_json(), back.to_csv()) == (patch.to_json(), patch.to_csv())
    assert render_patch(back) == render_patch(patch)
    attribution = model.attribute(*pairs, sites=("mlp_post", "attn_head"), self_check=3)
    back = through_the_wire(attribution)
    assert type(back) is type(attribution)
    assert back.to_json() == attribution.to_json()
    assert render_attribution(back) == render_attribution(attribution)


@pytest.mark.parametrize("options", [
    PatchOptions(clean=("a b",), corrupt=("a c",), answers=("x",), wrongs=("y",),
                 sites=("attn_out",), layers=(0, 1)),
    AttributeOptions(clean=("a b",), corrupt=("a c",), answers=("x",), metric="kl", method="ig",
                     steps=3),
    ExamplesOptions(layer=1, neurons=(3, 9), window=8, work_dir="/tmp/w"),
    CardOptions(layer=1, neurons=(3,), causal=True, coefficients=(-2.0, 2.0))])
def test_the_options_of_the_served_commands_cross_the_wire(options):
    back = through_the_wire(options)
    assert type(back) is type(options)
    assert back == options


def test_the_corpus_results_cross_the_wire_whole(llama_dir, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\nhello world, one two three\n" * 3)
    model = lazarus.load(str(llama_dir))
    scan = model.examples(str(corpus), 1, neurons=[3, 9], examples=2, window=8,
                          work_dir=str(tmp_path / "work"))
    shown = shaded_contexts(model, scan)
    back, shown_back = through_the_wire((scan, shown))
    assert type(back) is type(scan)
    assert back.to_json() == scan.to_json()
    assert render_examples(back) == render_examples(scan)
    assert render_html(back, shown_back) == render_html(scan, shown)
    card = model.card(1, neurons=[3, 9], corpus=str(corpus), examples=2, window=8,
                      work_dir=str(tmp_path / "work"), causal=True, controls=2)
    back = through_the_wire(card)
    assert type(back) is type(card)
    assert back.to_json() == card.to_json()
    assert render_card(back) == render_card(card)
    assert render_card_html(back) == render_card_html(card)


def test_every_served_command_names_its_analysis():
    from lazarus.serve.commands import COMMANDS, analysis_of
    for command in COMMANDS:
        analysis, takes_progress = analysis_of(command)
        assert analysis.__module__.startswith("lazarus.analyses."), command
        assert ("progress" in inspect.signature(analysis).parameters) == takes_progress


def test_a_command_imports_no_analysis_before_it_asks_the_server():
    """The analyses are imported only to run in process (the warm command's own time)."""
    code = ("import sys, lazarus.cli.main, lazarus.cli.neurons, lazarus.cli.examples, "
            "lazarus.cli.card, lazarus.cli.patch, lazarus.cli.attribute, lazarus.serve.client; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('lazarus.analyses.',"
            " 'lazarus.api', 'torch')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = set(done.stdout.split())
    assert not {"lazarus.api", "torch", "lazarus.analyses.neurons",
                "lazarus.analyses.examples", "lazarus.analyses.card"} & loaded, loaded


@pytest.mark.parametrize("value", [
    float("nan"), -float("inf"), (1, "a"), frozenset({2}), {3: [1.5, None]},
    np.arange(6, dtype=np.int16).reshape(2, 3), np.float32(0.25), np.array(["ab", "c"]),
    np.zeros((0, 4), np.float64), np.array(True)])
def test_plain_values_cross_the_wire_as_they_were(value):
    back = through_the_wire(value)
    assert type(back) is type(value)
    assert repr(back) == repr(value)


@pytest.mark.parametrize("data", [
    {"__dataclass__": "os:system", "fields": {}},
    {"__dataclass__": "lazarus.engine.model_info:ModelInfo", "fields": {}},
    {"__dataclass__": "lazarus.results.neurons:np", "fields": {}},
    {"__dataclass__": "lazarus.results.neurons:NeuronsResult", "fields": {"x": 1}},
    {"__array__": {"dtype": "|O", "shape": [1], "data": "AAAAAAAAAAA="}},
    {"__array__": {"dtype": "<f8", "shape": [2], "data": "AAAAAAAAAAA="}},
    {"__reduce__": ["os.system", ["true"]]},
    {"__float__": "1e400"},
])
def test_anything_else_is_refused(data):
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_what_is_not_a_result_is_not_sent():
    from lazarus.engine.model_info import read_model_info
    for value in (object(), read_model_info("lazarus:demo"), np.array([None], dtype=object)):
        with pytest.raises(TypeError):
            codec.encode(value)


@pytest.fixture
def serve_dir(monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="lzs-")) / "serve"  # short: a socket path's limit
    monkeypatch.setenv("LAZARUS_SERVE_DIR", str(folder))
    yield folder
    for path in (folder / "server.sock", folder / "server.lock", folder / "server.log"):
        path.unlink(missing_ok=True)
    if folder.exists():
        folder.rmdir()
    folder.parent.rmdir()


def start(idle_timeout: float = 60, max_bytes: int | None = None):
    log: list[str] = []
    server = Server(idle_timeout, max_bytes, log.append)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not protocol.socket_path().exists():
        assert time.monotonic() < deadline, log
        time.sleep(0.01)
    return server, thread, log


def stop(server, thread):
    server.stopping.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def raw(payload: bytes) -> list[dict]:
    """Send `payload` on a fresh connection; the frames that come back before it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(protocol.socket_path()))
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        replies = []
        while True:
            try:
                replies.append(protocol.receive(conn))
            except EOFError:
                return replies


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_garbage_is_answered_with_an_error_and_the_server_serves_on(serve_dir):
    server, thread, log = start()
    try:
        assert raw(b"\xff\xff\xff\xffnonsense") == [{
            "type": "error", "kind": "protocol",
            "message": f"a frame of {0xffffffff} bytes is over the limit of {1 << 30}"}]
        assert raw(frame(b"{not json"))[0]["kind"] == "protocol"
        assert raw(frame(b"[1, 2]")) == [{"type": "error", "kind": "protocol",
                                           "message": "a frame that is not a JSON object"}]
        assert raw(b"\x00\x00") == [{"type": "error", "kind": "protocol",  # half a header
                                     "message": "the connection closed in the middle of a "
                                                "frame"}]
        sneaky = {"op": "compute", "version": protocol.VERSION, "command": "neurons",
                  "model": {}, "inputs": {"__dataclass__": "os:system", "fields": {}}}
        status = {"op": "status", "version": protocol.VERSION}
        replies = raw(frame(json.dumps(sneaky).encode()) + frame(json.dumps(status).encode()))
        assert replies[0] == {"type": "error", "kind": "protocol",
                              "message": "os is not a module whose objects are sent"}
        assert replies[1]["type"] == "status"  # the same connection goes on
        assert request("status")["value"]["pid"] == os.getpid()
    finally:
        stop(server, thread)
    assert not protocol.socket_path().exists()


def test_the_folder_and_socket_are_private(serve_dir):
    server, thread, _ = start()
    try:
        assert (os.stat(serve_dir).st_mode & 0o777) == 0o700
        assert (os.stat(protocol.socket_path()).st_mode & 0o777) == 0o600
        assert protocol.privacy_problem(serve_dir, directory=True) is None
        if os.getuid() == 0:  # root can hand the socket to someone else
            os.chown(protocol.socket_path(), 65534, -1)
            assert protocol.privacy_problem(protocol.socket_path(), directory=False) == (
                f"{protocol.socket_path()} belongs to uid 65534, not to you (uid 0)")
            os.chown(protocol.socket_path(), 0, -1)
    finally:
        stop(server, thread)


def test_the_idle_timeout_stops_the_server(serve_dir):
    server, thread, log = start(idle_timeout=0.5)
    request("status")  # activity: the clock starts again
    began = time.monotonic()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert 0.4 < time.monotonic() - began < 10
    assert log[-1] == "idle for 0.5 s: stopping"
    assert not protocol.socket_path().exists()


def hf_bytes(folder: Path) -> int:
    """The parameters' bytes of the model as Hugging Face loads it (float32, as on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def neurons_on(folder: Path) -> None:
    spec = {"model_id": str(folder), "source": str(folder), "device": "auto", "dtype": "auto",
            "trust_remote_code": False, "device_map": None, "use_cache": False}
    result = compute(spec, "neurons", [["ab", "hello"], NeuronsOptions(layers=0)],
                     keep_alive=None, progress=None, notify=lambda m: None,
                     warn=lambda m: None)
    assert result.model_id == str(folder)


def test_the_memory_cap_evicts_the_least_recently_used_model(serve_dir, tiny_model_dirs):
    folders = [tiny_model_dirs[name] for name in ("llama", "gpt2", "qwen2")]
    sizes = {str(f): hf_bytes(f) for f in folders}
    cap = sum(sizes.values()) - 1  # any two fit, never three
    server, thread, log = start(max_bytes=cap)
    try:
        def held() -> dict[str, int]:
            return {m["model"]: m["bytes"] for m in request("status")["value"]["models"]}

        neurons_on(folders[0])
        neurons_on(folders[1])
        assert held() == {str(f): sizes[str(f)] for f in folders[:2]}
        neurons_on(folders[0])  # now the gpt2 model is the least recently used
        neurons_on(folders[2])
        assert held() == {str(f): sizes[str(f)] for f in (folders[0], folders[2])}
        assert f"evicted {folders[1]} to make room for {folders[2]} (memory cap)" in log
    finally:
        stop(server, thread)


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    from lazarus.cli.main import main
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_bad_keep_alive_is_one_line_and_status_2(capsys, monkeypatch, llama_dir):
    argv = ("introspect", "neurons", "-m", llama_dir, "-l", "0", "-p", "ab")
    monkeypatch.setenv("LAZARUS_KEEP_ALIVE", "soon")
    assert run_main(capsys, *argv) == (2, "", "lazarus: error: LAZARUS_KEEP_ALIVE='soon' is "
                                               "not a duration (e.g. 15m, 30s, or off)\n")
    code, out, err = run_main(capsys, *argv, "--keep-alive", "10 min")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].startswith("lazarus introspect neurons: error: argument "
                                            "--keep-alive: '10 min' is not a duration")


def test_status_and_stop_without_a_server(capsys, serve_dir):
    assert run_main(capsys, "serve", "--status") == (
        3, f"no keep-alive server is running (folder {serve_dir})\n", "")
    assert run_main(capsys, "serve", "--stop") == (
        0, f"no keep-alive server is running (folder {serve_dir})\n", "")


def test_a_running_server_is_used_unless_keep_alive_is_off(capsys, serve_dir, llama_dir,
                                                           tmp_path):
    argv = ("introspect", "neurons", "-m", llama_dir, "-l", "0,1", "-p", "ab|hello|cd",
            "--no-cache", "-o")
    alone = run_main(capsys, *argv, tmp_path / "alone.json")
    server, thread, log = start()
    try:
        served = run_main(capsys, *argv, tmp_path / "served.json")
        assert [line for line in log if line.startswith("neurons on")] == [
            f"neurons on {llama_dir}"]
        off = run_main(capsys, *argv, tmp_path / "off.json", "--keep-alive", "off")
        assert len([line for line in log if line.startswith("neurons on")]) == 1
    finally:
        stop(server, thread)
    assert served[:2] == alone[:2] == off[:2]
    assert served[2] == alone[2].replace("alone.json", "served.json")
    assert (tmp_path / "served.json").read_text() == (tmp_path / "alone.json").read_text()
    assert (tmp_path / "off.json").read_text() == (tmp_path / "alone.json").read_text()


PEEK = """
import json, socket, struct, sys
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    conn.connect(sys.argv[1])
except OSError as err:
    print(type(err).__name__)
    sys.exit()
try:  # the server may refuse (reply and close) before this is sent
    conn.sendall(struct.pack(">I", 2) + b"{}")
except BrokenPipeError:
    pass
size = struct.unpack(">I", conn.recv(4))[0]
print(conn.recv(size).decode())
"""


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("python3", path="/usr/bin:/bin") is None,
                    reason="needs root and a system python3 to run a process as another user")
def test_another_user_is_refused(serve_dir):
    import subprocess
    server, thread, log = start()
    path = str(protocol.socket_path())

    def as_nobody() -> str:
        python = shutil.which("python3", path="/usr/bin:/bin")  # one that user may run
        done = subprocess.run([python, "-I", "-c", PEEK, path], user=65534,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    try:
        assert as_nobody() == "PermissionError"  # the 0700 folder keeps others out
        # Opened on purpose (folder 0711, socket 0666): the server's own check still refuses.
        serve_dir.parent.chmod(0o711)  # mkdtemp's folder, 0700 too
        serve_dir.chmod(0o711)
        protocol.socket_path().chmod(0o666)
        try:
            reply = json.loads(as_nobody())
        finally:
            serve_dir.parent.chmod(0o700)
            serve_dir.chmod(0o700)
            protocol.socket_path().chmod(0o600)
        assert reply == {"type": "error", "kind": "refused",
                         "message": "this server serves only its own user"}
        assert "refused a connection from uid 65534" in log
    finally:
        stop(server, thread)


def test_a_model_whose_files_change_is_loaded_again(serve_dir, llama_dir, tmp_path):
    import tiny_models
    folder = tmp_path / "model"
    shutil.copytree(llama_dir, folder)
    spec = {"model_id": str(folder), "source": str(folder), "device": "auto", "dtype": "auto",
            "trust_remote_code": False, "device_map": None, "use_cache": False}
    inputs = [["ab", "hello"], NeuronsOptions(layers=1, neurons=[0, 1, 2])]

    def served():
        return compute(spec, "neurons", inputs, keep_alive=None, progress=None,
                       notify=lambda m: None, warn=lambda m: None).layers[0].matrix.values

    server, thread, log = start()
    try:
        before = served()
        tiny_models.build("llama", folder, seed=7)  # new weights in the same folder
        after = served()
    finally:
        stop(server, thread)
    fresh = lazarus.load(str(folder), use_cache=False).neurons(["ab", "hello"], layers=1,
                                                                neurons=[0, 1, 2])
    assert np.array_equal(after, fresh.layers[0].matrix.values)
    assert not np.array_equal(before, after)
    assert f"{folder}: its files changed; loading it again" in log
