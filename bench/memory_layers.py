"""Does capturing every layer cost more memory than capturing one? Issue #9's memory line.

    python bench/memory_layers.py           # the benchmark's 30-block model, 512 prompts
    python bench/memory_layers.py --smoke   # a tiny model: checks the benchmark itself

Each run is a fresh process that loads the whole model, then captures the same prompts either
at the deepest layer only or at every layer (one pass each). Measured: the peak RSS growth
during the capture (VmHWM after minus VmRSS before), and the size of the rows returned
(prompts x hidden x 4 bytes per layer), which both runs must hold. The hooks gather each
batch's asked-for position at once, so the growth of "all layers" should exceed the growth of
"one layer" by about the extra rows alone; an engine that held every hooked layer's
[batch, tokens, hidden] tensor until the forward ended would add that per layer as well.
Goal: extra growth <= extra rows + 25%.

Peak RSS also depends on how glibc's malloc places blocks: its mmap threshold moves with the
sizes freed, so the same allocations can fragment the heap differently. The goal is judged with
the threshold fixed (MALLOC_MMAP_THRESHOLD_=65536), which measures what the code holds; the
default allocator's figures are printed beside it. (Measured once against the engine before
issue #9, which kept every hooked layer's whole tensor: default allocator +148 MB extra for
+34 MB of rows, fixed threshold +82 MB.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(folder: Path, layers: str, count: int) -> None:
    from lazarus.engine.capture import capture
    from lazarus.engine.loading import load_model
    from lazarus.engine.model_info import read_model_info
    from lazarus.engine.trace import CaptureRequest

    info = read_model_info(str(folder))
    loaded = load_model(info, device="cpu")
    chosen = tuple(range(info.layer_count)) if layers == "all" else (info.layer_count - 1,)
    prompts = workload.prompts(count, seed=1)
    capture(loaded, prompts[:8], CaptureRequest(layers=chosen))  # warm up the allocator
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:  # reset VmHWM to the current RSS
        refs.write("5")
    rows = capture(loaded, prompts, CaptureRequest(layers=chosen))
    growth = (_status_kib("VmHWM") - before) * 1024
    kept = sum(values.nbytes for values in rows.values())
    print(json.dumps({"growth": growth, "rows": kept}))


def measure(folder: Path, layers: str, count: int, fixed: bool) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if fixed:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    done = subprocess.run([sys.executable, __file__, "--child", layers, "--folder", str(folder),
                           "--count", str(count)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", choices=("one", "all"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=512, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.folder, args.child, args.count)
        return 0
    shape = workload.SMOKE if args.smoke else workload.FULL
    count = 64 if args.smoke else 512
    folder = Path(tempfile.gettempdir()) / "lazarus-bench" / ("smoke" if args.smoke else "full")
    workload.build_model(folder, shape)
    mb = 1 << 20
    print(f"peak RSS growth while capturing {count} prompts, {shape['num_hidden_layers']} "
          f"blocks, hidden {shape['hidden_size']}:")
    ok = True
    for fixed in (True, False):
        one, every = (measure(folder, layers, count, fixed) for layers in ("one", "all"))
        extra_growth, extra_rows = every["growth"] - one["growth"], every["rows"] - one["rows"]
        print(f"{'fixed mmap threshold' if fixed else 'default allocator'}:")
        print(f"  one layer  +{one['growth'] / mb:7.1f} MB (rows {one['rows'] / mb:6.1f} MB)")
        print(f"  all layers +{every['growth'] / mb:7.1f} MB (rows {every['rows'] / mb:6.1f} MB)")
        line = f"  extra      +{extra_growth / mb:7.1f} MB for +{extra_rows / mb:.1f} MB of rows"
        if fixed:
            ok = extra_growth <= 1.25 * extra_rows + 8 * mb
            line += f"; goal <= rows + 25% (+8 MB slack): {'ok' if ok else 'MISSED'}"
        print(line)
    return 0 if ok or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
