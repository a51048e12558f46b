"""Session fixtures: the tiny models are built once and shared by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
# One torch thread (set before torch is imported; child processes inherit it): tiny models gain
# nothing from more, and on cores that other jobs keep busy the threads of an OpenMP pool spin
# while they wait: the fast tier took 6.5 minutes (207 s of CPU) against 1.5 (46 s) with one.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: tiny_models.build(arch, root / arch) for arch in tiny_models.ARCHITECTURES}


@pytest.fixture(scope="session")
def llama_dir(tiny_model_dirs: dict[str, Path]) -> Path:
    return tiny_model_dirs["llama"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets an empty activation cache of its own, never the user's."""
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def no_keep_alive_server(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch):
    """No test meets the user's keep-alive server, or starts one, unless it means to: an empty
    server folder of the session's own (tests of the server set their own)."""
    monkeypatch.setenv("LAZARUS_SERVE_DIR", str(tmp_path_factory.getbasetemp() / "no-serve"))
    monkeypatch.delenv("LAZARUS_KEEP_ALIVE", raising=False)
