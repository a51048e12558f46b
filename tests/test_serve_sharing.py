"""The keep-alive server's warm models shared across settings that leave the weights alone:
runs with and without --no-cache use one loaded model, and each still reads and writes the
activation cache as it asks (as in process)."""

from __future__ import annotations

import os
from pathlib import Path

from test_serve import serve_dir, start, stop  # noqa: F401 (serve_dir: a fixture)

from lazarus.analyses.options import NeuronsOptions
from lazarus.cli.serve import render_status
from lazarus.serve.client import compute, request

PROMPTS = ["ab", "hello"]


def cached_files() -> list[Path]:
    root = Path(os.environ["LAZARUS_CACHE_DIR"])  # the test's own (conftest.private_cache)
    return sorted(path for path in root.rglob("*") if path.is_file())


def neurons(folder: Path, use_cache: bool) -> tuple[list[str], list[str]]:
    """What a served `neurons` run said: its notes, and its progress details."""
    spec = {"model_id": str(folder), "source": str(folder), "device": "auto", "dtype": "auto",
            "trust_remote_code": False, "device_map": None, "use_cache": use_cache}
    notes: list[str] = []
    details: list[str] = []
    result = compute(spec, "neurons", [PROMPTS, NeuronsOptions(layers=0)], keep_alive=None,
                     progress=lambda done, total, detail="": details.append(detail),
                     notify=notes.append, warn=notes.append)
    assert result.model_id == str(folder)
    return notes, details


def test_runs_with_and_without_the_cache_share_one_model(serve_dir, llama_dir):  # noqa: F811
    from_cache = "2 of 2 prompts from the activation cache"
    server, thread, log = start()
    try:
        notes, details = neurons(llama_dir, use_cache=False)
        assert cached_files() == []  # not written
        assert "reading the activation cache" not in details
        notes, details = neurons(llama_dir, use_cache=True)
        written = cached_files()
        assert written  # written
        assert "reading the activation cache" in details
        assert not any(from_cache in note for note in notes)  # nothing there yet
        notes, details = neurons(llama_dir, use_cache=False)
        assert not any(from_cache in note for note in notes)  # not read
        assert "reading the activation cache" not in details
        assert cached_files() == written
        notes, _ = neurons(llama_dir, use_cache=True)
        assert any(note.startswith(from_cache) for note in notes), notes  # read
        models = request("status")["value"]["models"]
        assert [(m["model"], m["requests"]) for m in models] == [(str(llama_dir), 4)]
        assert len(server.pool.entries()) == 1
    finally:
        stop(server, thread)


def test_status_of_a_model_that_read_no_weights_says_so():
    """A model whose every answer came from the activation cache has read no weights: its
    status says that, not "0.0 MiB"."""
    model = {"model": "m", "settings": ["cpu", "float32"], "requests": 1, "last_used": 0.0,
             "busy": False}
    status = {"pid": 1, "started": 0.0, "idle_timeout": 60, "max_bytes": None,
              "models": [{**model, "bytes": 0}, {**model, "bytes": 3 << 20}]}
    lines = render_status(status).split("\n")
    assert lines[2].startswith("  m (cpu, float32): no weights read yet, 1 request,")
    assert lines[3].startswith("  m (cpu, float32): 3.0 MiB, 1 request,")
