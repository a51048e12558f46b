"""The keep-alive server's limits: its memory cap before a load (room is made for a model's
weights before they load, the least recently used idle models first; a model alone over the cap
is loaded all the same, said in the server's log only; sizes checked against the parameters of
the model as Hugging Face loads it), and negative durations and sizes refused as bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_serve import (  # noqa: F401 (serve_dir: a fixture)
    hf_bytes,
    run_main,
    serve_dir,
    start,
    stop,
)

from lazarus.analyses.options import NeuronsOptions
from lazarus.serve.client import compute, request


def neurons_on(folder: Path, said: list[str]) -> None:
    spec = {"model_id": str(folder), "source": str(folder), "device": "auto", "dtype": "auto",
            "trust_remote_code": False, "device_map": None, "use_cache": False}
    result = compute(spec, "neurons", [["ab", "hello"], NeuronsOptions(layers=0)],
                     keep_alive=None, progress=None, notify=said.append, warn=said.append)
    assert result.model_id == str(folder)


def held() -> dict[str, int]:
    return {m["model"]: m["bytes"] for m in request("status")["value"]["models"]}


def test_room_is_made_before_a_model_loads(serve_dir, tiny_model_dirs):  # noqa: F811
    llama, qwen2, gpt2 = (tiny_model_dirs[name] for name in ("llama", "qwen2", "gpt2"))
    sizes = {str(f): hf_bytes(f) for f in (llama, qwen2, gpt2)}
    assert sizes[str(gpt2)] > sizes[str(llama)]  # gpt2 alone would not fit in llama's place
    cap = sizes[str(qwen2)] + sizes[str(gpt2)]
    server, thread, log = start(max_bytes=cap)
    said: list[str] = []
    try:
        neurons_on(llama, said)
        neurons_on(qwen2, said)
        assert held() == {str(llama): sizes[str(llama)], str(qwen2): sizes[str(qwen2)]}
        neurons_on(gpt2, said)
        assert held() == {str(qwen2): sizes[str(qwen2)], str(gpt2): sizes[str(gpt2)]}
    finally:
        stop(server, thread)
    evicted = f"evicted {llama} to make room for {gpt2} (memory cap)"
    assert evicted in log
    # Before gpt2's request was answered, not after: the weights held never passed the cap.
    assert log.index(evicted) < max(i for i, line in enumerate(log)
                                    if line.startswith("neurons: answered"))
    assert not [line for line in log if "loading it all the same" in line]
    assert said == []


def test_a_model_alone_over_the_cap_is_loaded_all_the_same(serve_dir, tiny_model_dirs):  # noqa: F811
    llama, gpt2 = tiny_model_dirs["llama"], tiny_model_dirs["gpt2"]
    sizes = {str(f): hf_bytes(f) for f in (llama, gpt2)}
    cap = 100 << 10  # 100 KiB: less than either
    server, thread, log = start(max_bytes=cap)
    said: list[str] = []
    try:
        neurons_on(llama, said)
        assert held() == {str(llama): sizes[str(llama)]}
        neurons_on(gpt2, said)
        assert held() == {str(gpt2): sizes[str(gpt2)]}
    finally:
        stop(server, thread)
    for folder in (llama, gpt2):
        mib = sizes[str(folder)] / (1 << 20)
        assert (f"{folder} needs about {mib:.1f} MiB, more than the memory cap (0.1 MiB): "
                "loading it all the same") in log
    assert f"evicted {llama} to make room for {gpt2} (memory cap)" in log
    assert said == []  # the client hears nothing of the cap: in process there is none


@pytest.mark.parametrize("given", [("--keep-alive", "-5m"), ("--keep-alive=-5m",),
                                   ("--keep-alive", "-5")])
def test_a_negative_keep_alive_is_refused_as_a_bad_duration(capsys, llama_dir, given):
    """'-5m' starts like an option: it is still read as --keep-alive's value, and refused with
    the line of any bad duration (argparse would say "expected one argument")."""
    argv = ("introspect", "neurons", "-m", llama_dir, "-l", "0", "-p", "ab")
    value = given[-1].removeprefix("--keep-alive=")
    assert run_main(capsys, *argv, *given) == (
        2, "", f"lazarus introspect neurons: error: argument --keep-alive: {value!r} is not a "
               "duration (write it in digits 0-9, e.g. 15m, 30s, 2h or off) (see lazarus "
               "introspect neurons --help)\n")


@pytest.mark.parametrize("given", [("--idle-timeout", "-5m"), ("--max-memory", "-2G")])
def test_a_negative_serve_option_is_refused_as_a_bad_value(capsys, serve_dir,  # noqa: F811
                                                            given):
    code, out, err = run_main(capsys, "serve", *given)
    kind = "a duration" if given[0] == "--idle-timeout" else "a size above 0"
    assert (code, out) == (2, "")
    assert err.startswith(f"lazarus serve: error: argument {given[0]}: {given[1]!r} is not "
                          f"{kind} (write it in digits 0-9")
    assert err.count("\n") == 1
    assert not (serve_dir / "server.sock").exists()
