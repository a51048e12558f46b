"""The keep-alive server's memory cap before a load: room is made for a model's weights before
they load (the least recently used idle models go first), and a model alone over the cap is
loaded all the same, said in the server's log only. Sizes are checked against the parameters of
the model as Hugging Face loads it."""

from __future__ import annotations

from pathlib import Path

from test_serve import hf_bytes, serve_dir, start, stop  # noqa: F401 (serve_dir: a fixture)

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
