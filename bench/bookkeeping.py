"""Is the work per prompt constant as the prompt count grows? Issue #8's 100k-prompt check.

    python bench/bookkeeping.py            # 10k against 100k prompts (about 5 minutes)
    python bench/bookkeeping.py --smoke    # 1k against 10k: checks the benchmark itself

On the benchmark's tiny smoke model (bench/workload.py), `collect` is run on N and on 10·N
distinct prompts: once computing every row (cache off), and once with every row already in the
activation cache (the model never loads). Each line prints the seconds per 1,000 prompts at both
sizes and their ratio: about 1 when the bookkeeping is linear; a quadratic step (such as a list
membership test per prompt) makes it grow with N (about 10 at these sizes). Goal: <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402


def seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="1k against 10k prompts")
    args = parser.parse_args()
    small = 1_000 if args.smoke else 10_000
    sizes = (small, 10 * small)
    work = Path(tempfile.mkdtemp(prefix="lazarus-bookkeeping-"))
    os.environ["LAZARUS_CACHE_DIR"] = str(work / "cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    folder = workload.build_model(work / "model", workload.SMOKE)

    from lazarus.engine.collect import ModelSettings, collect
    from lazarus.engine.model_info import read_model_info
    from lazarus.engine.trace import CaptureRequest

    info = read_model_info(str(folder))
    request = CaptureRequest(layers=(1,))
    per_thousand: dict[str, list[float]] = {"computed (cache off)": [], "all from the cache": []}
    for size in sizes:
        # Distinct prompts: a counter keeps them apart, the workload's text keeps them real.
        prompts = [f"{i} {text}" for i, text in enumerate(workload.prompts(size))]
        off = seconds(lambda p=prompts: collect(info, p, request, ModelSettings(use_cache=False)))
        collect(info, prompts, request)  # fills the cache
        cached = seconds(lambda p=prompts: collect(info, p, request))
        per_thousand["computed (cache off)"].append(1000 * off / size)
        per_thousand["all from the cache"].append(1000 * cached / size)

    print(f"collect on {sizes[0]:,} and {sizes[1]:,} distinct prompts, tiny model, layer 1")
    print(f"{'run':<22} {'s per 1k prompts':<26} {'ratio':<8} goal")
    failed = False
    for name, (first, second) in per_thousand.items():
        ratio = second / first
        failed |= ratio > 1.5
        print(f"{name:<22} {first:6.3f} at {sizes[0]:>7,} {second:6.3f} at {sizes[1]:>7,} "
              f"{ratio:5.2f}x  <= 1.5x {'ok' if ratio <= 1.5 else 'MISSED'}")
    return 1 if failed and not args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
