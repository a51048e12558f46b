"""The keep-alive server against a cold start, side by side in one run (issue #23's goal: 5 new
prompts with a warm server <= 0.4 s).

    python bench/serve_speed.py            # lazarus:demo, 5 rounds
    python bench/serve_speed.py --rounds 9 --model path/to/model --layer 15

Each round runs `lazarus introspect neurons` on 5 prompts never seen before (so the activation
cache cannot answer) twice, in fresh processes, alternated: cold (no server: imports, config,
weights, forward, report) and with a server already warm on the model (one request made before
the rounds, which also compiles the modules, as an install has them). Both write -o; their
reports and files must be identical. Prints the median wall time of each, the server's own
share, the ratio, and the machine. A private server folder and cache are used and removed; the
server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def lazarus_command() -> list[str]:
    script = Path(sys.executable).parent / "lazarus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lazarus"]


def new_prompts(rng: random.Random, count: int = 5) -> str:
    return "|".join(f"{rng.randint(10, 999)}{rng.choice('+-*')}{rng.randint(10, 999)}="
                    for _ in range(count))


def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str, bytes]:
    started = time.perf_counter()
    done = subprocess.run([*lazarus_command(), *args], env=env, cwd=cwd, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(args)}\n{done.stderr}")
    return seconds, done.stdout, (cwd / "out.json").read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lazarus:demo")
    parser.add_argument("--layer", default="-1")
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lzb-"))
    # Compiled modules kept (in the work folder), as an installed package has them, even where
    # PYTHONDONTWRITEBYTECODE is set: else every process compiles lazarus anew (~0.1 s).
    env = dict(os.environ, LAZARUS_CACHE_DIR=str(work / "cache"),
               PYTHONPYCACHEPREFIX=str(work / "pycache"))
    env.pop("LAZARUS_KEEP_ALIVE", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cold_env = dict(env, LAZARUS_SERVE_DIR=str(work / "none"))  # no server there
    warm_env = dict(env, LAZARUS_SERVE_DIR=str(work / "serve"))
    rng = random.Random(23)
    base = ["introspect", "neurons", "-m", options.model, "-l", options.layer, "-o", "out.json"]
    try:
        run([*base, "-p", new_prompts(rng), "--keep-alive", "10m"], warm_env, work)  # warm up
        cold, warm = [], []
        for _ in range(options.rounds):
            prompts = ["-p", new_prompts(rng)]
            for times, environment in ((cold, cold_env), (warm, warm_env)):
                folder = work / f"round{len(times)}-{'cold' if times is cold else 'warm'}"
                folder.mkdir()
                times.append(run([*base, *prompts], environment, folder))
            if cold[-1][1:] != warm[-1][1:]:
                sys.exit("the server's report or file differs from the one made in process")
        log = (work / "serve" / "server.log").read_text().splitlines()
    finally:
        subprocess.run([*lazarus_command(), "serve", "--stop"], env=warm_env,
                       capture_output=True)
        time.sleep(0.2)
        shutil.rmtree(work, ignore_errors=True)
    # The server's own time per request (receipt to result sent), the timed rounds only.
    server_s = [float(line.split(" in ")[1].removesuffix(" s")) for line in log
                if line.startswith("lazarus: neurons: answered in ")][1:]
    cold_s = statistics.median(t for t, _, _ in cold)
    warm_s = statistics.median(t for t, _, _ in warm)
    import torch  # only for the machine line
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or 'cpu'}, Python {platform.python_version()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} torch threads, load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"neurons, 5 new prompts on {options.model}, layer {options.layer}, median of "
          f"{options.rounds} alternated rounds, process start to report and JSON written:")
    for name, seconds, runs in (("cold, in process", cold_s, cold),
                                ("warm keep-alive server", warm_s, warm)):
        each = ", ".join(f"{t:.2f}" for t, _, _ in runs)
        print(f"  {name:<24}{seconds:6.2f} s   ({each})")
    print(f"  {'of which in the server':<24}{statistics.median(server_s):6.2f} s   (the rest: "
          "the client process, its imports, parsing, rendering, writing)")
    print(f"  {'ratio cold / warm':<24}{cold_s / warm_s:6.1f}x   (goal: warm <= 0.4 s: "
          f"{'met' if warm_s <= 0.4 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
