"""The start-up spans the library records for bench/bench.py, and the family import's fallback.

Oracle: the clock read around the calls, and the spans' own order; `import_family` against
the modules transformers' auto mappings name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lazarus.engine import timeline
from lazarus.engine.capture import capture
from lazarus.engine.loading import import_family, load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.trace import CaptureRequest

SRC = Path(__file__).resolve().parent.parent / "src"


def test_loading_and_capture_record_their_parts_in_order_within_the_call(llama_dir):
    started = time.perf_counter()
    loaded = load_model(read_model_info(str(llama_dir)), "cpu", "float32", up_to_layer=1)
    capture(loaded, ["a b", "c"], CaptureRequest(layers=(1,)))
    ended = time.perf_counter()
    spans = [s for s in timeline.spans(started) if s.thread == "MainThread"]
    assert [s.name for s in spans] == ["imports", "config", "tokenizer", "weights", "forward"]
    assert started <= spans[0].start
    assert spans[-1].end <= ended
    for earlier, later in zip(spans, spans[1:], strict=False):
        assert earlier.start <= earlier.end <= later.start


def test_a_span_is_recorded_when_its_block_raises():
    started = time.perf_counter()
    try:
        with timeline.span("failing"):
            raise ValueError("inside")
    except ValueError:
        pass
    assert [s.name for s in timeline.spans(started)] == ["failing"]


def test_the_buffer_keeps_the_latest_spans_only():
    for _ in range(1000):
        with timeline.span("many"):
            pass
    assert 0 < len(timeline.spans()) <= 256


def test_the_family_s_modules_are_the_ones_the_auto_mappings_name(llama_dir):
    info = read_model_info(str(llama_dir))
    import_family(info)
    assert "transformers.models.llama.modeling_llama" in sys.modules
    assert "transformers.models.llama.configuration_llama" in sys.modules


def test_an_unknown_family_or_the_model_s_own_code_imports_nothing(llama_dir):
    info = read_model_info(str(llama_dir))
    before = set(sys.modules)
    import_family(replace(info, model_type="no-such-family"))
    import_family(replace(info, config={**info.config, "auto_map": {"AutoModel": "x.Y"}}),
                  trust_remote_code=True)
    assert set(sys.modules) == before


@pytest.mark.integration
def test_the_cli_freezes_the_collector_at_exit_after_the_other_exit_handlers():
    """`lazarus.cli` registers `gc.freeze` at exit: a handler registered before it (so run
    after it, atexit being last in, first out) finds the objects frozen."""
    code = ("import atexit, gc\n"
            "atexit.register(lambda: print(gc.get_freeze_count() > 0))\n"
            "import lazarus.cli\n"
            "print(gc.get_freeze_count() > 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.stdout.split() == ["False", "True"]


def test_the_collector_pause_restores_the_state_it_found_also_when_the_block_raises():
    import gc

    from lazarus.engine import collector

    assert gc.isenabled()
    with pytest.raises(ValueError), collector.paused():
        assert not gc.isenabled()
        raise ValueError("inside")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


LOAD_WATCHED = """
import gc, json, sys, time, weakref
from lazarus.engine import timeline
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
info = read_model_info(sys.argv[1])
collections = []
gc.callbacks.append(lambda phase, _: collections.append(time.perf_counter())
                    if phase == "start" else None)
loaded = load_model(info, "cpu", "float32")
spans = timeline.spans()
start = min(s.start for s in spans if s.name == "imports")
end = max(s.end for s in spans if s.name == "weights")
during = sum(start <= when <= end for when in collections)
frozen = gc.get_freeze_count()
enabled = gc.isenabled()
model = weakref.ref(loaded.model)
del loaded
gc.collect()
print(json.dumps({"during": during, "frozen": frozen, "enabled": enabled,
                  "model_freed": model() is None}))
"""


@pytest.mark.integration
def test_loading_runs_no_collection_freezes_the_imports_and_leaves_the_model_collectable(
        llama_dir):
    """The first load in a process: no collection while torch and transformers are imported
    and the weights read; the imported objects frozen; the collector on again after; and the
    model itself not frozen (the keep-alive server's eviction depends on it being freed)."""
    import json

    done = subprocess.run([sys.executable, "-c", LOAD_WATCHED, str(llama_dir)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"during": 0, "frozen": found["frozen"], "enabled": True,
                     "model_freed": True}
    assert found["frozen"] > 100_000
