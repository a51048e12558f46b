"""Line 2b of bench.py: the 512-prompt command end to end with a keep-alive server already warm
on the model (issue #23's goal: >= 15x the naive loop).

A private server folder (LAZARUS_SERVE_DIR in the work folder, so no server of the user's is
touched), one warm-up request that starts the server and loads the model, then the same command
timed `runs` times (the median is reported); the server is stopped at the end. Its JSON must be
byte for byte the in-process one's.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def end_to_end_warm(lazarus: list[str], arguments: list[str], in_process_json: Path,
                    work: Path, env: dict, timed: Callable, runs: int = 3) -> dict:
    """`arguments`: the in-process line's, without -o; returns the median seconds, each run's,
    and whether every output equals the in-process file and every request was served."""
    command = [*lazarus, *arguments]
    env = {**env, "LAZARUS_SERVE_DIR": str(work / "serve")}
    out = work / "warm-server.json"
    try:
        timed([*command, "-o", str(out), "--keep-alive", "10m"], env)  # starts it, loads
        seconds, same = [], True
        for _ in range(runs):
            out.unlink()
            elapsed, _ = timed([*command, "-o", str(out)], env)
            seconds.append(elapsed)
            same = same and out.read_bytes() == in_process_json.read_bytes()
        log = (work / "serve" / "server.log").read_text()
        served = log.count("answered in") == runs + 1
    finally:
        subprocess.run([*lazarus, "serve", "--stop"], env=env, capture_output=True)
        time.sleep(0.2)
    return {"seconds": statistics.median(seconds), "runs": seconds, "same": same and served}
