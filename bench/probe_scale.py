"""Probe time against the number of prompts, on the demo model's shape, with the default shuffles.

    python bench/probe_scale.py            # 100, 1,000 and 10,000 prompts (about 1-2 minutes)
    python bench/probe_scale.py --quick    # 100 and 1,000 only

Rows are synthetic: the demo model's hidden size and layer count (read from its config.json),
standard normal values with a weak signal planted in one neuron, stronger at deeper layers, two
balanced classes. Timed: `probe_layers` with the default method (logistic) and the default
number of shuffled labellings, everything included (cross-validation of every labelling at every
layer, the permutation test, the final fit). "Dual only" is the solver's other form forced for
every fit (the only form before the primal one existed): its cost grows with the cube of the
prompts, so above 100 prompts it is timed on one labelling's folds at one layer and scaled to
all fits (marked "est."), and at 10,000 prompts not at all (one fit alone would need an
8,000-square system per Newton step). At 100 prompts, fewer than the hidden size, the probe
itself uses the dual form, so that row compares the fits alone with the whole probe. Goal:
10,000 prompts within 60 s on a 2-core CPU, and growth no worse than linear in the prompts
beyond the hidden size.

The load average is printed because it matters: on a CPU shared with other busy processes,
multi-threaded BLAS loses much of its speed (its threads wait for each other); there,
OMP_NUM_THREADS=1 can be several times faster.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from lazarus.stats import folds as probe_cv
from lazarus.stats import probe, solver

CONFIG = Path(probe.__file__).resolve().parent / "demo_model" / "config.json"


def rows(n: int, hidden: int, layers: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    result = {}
    for layer in range(layers):
        x = rng.normal(size=(n, hidden)).astype(np.float32)
        x[: n // 2, 3] += 0.25 * (layer + 1)
        result[layer] = x
    return result


def time_probe(activations: dict[int, np.ndarray]) -> tuple[float, probe.ProbeReport]:
    n = next(iter(activations.values())).shape[0]
    start = time.perf_counter()
    report = probe.probe_layers(activations, n // 2)
    return time.perf_counter() - start, report


def time_dual(activations: dict[int, np.ndarray], sample_labellings: int | None) -> float:
    """Seconds for every fit of the probe in the dual form (scaled up from a sample if given)."""
    n = next(iter(activations.values())).shape[0]
    is_a = np.arange(n) < n // 2
    folds = probe_cv.fold_count(n // 2, n - n // 2)
    plan = probe_cv.plan_fits(is_a, folds, probe.PERMUTATIONS, 0)
    problems = plan.labels.shape[0]
    take = problems if sample_labellings is None else sample_labellings * folds
    layers = activations if sample_labellings is None else dict([next(iter(activations.items()))])
    start = time.perf_counter()
    for x in layers.values():
        _, z, _ = solver.coordinates(x)
        solver.logistic_batch(z, plan.labels[:take].astype(np.float64), plan.train[:take],
                              x.shape[1], form="dual")
    spent = time.perf_counter() - start
    return spent * (problems / take) * (len(activations) / len(layers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip 10,000 prompts")
    args = parser.parse_args()
    config = json.loads(CONFIG.read_text())
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    threads = {key: os.environ[key] for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
               if key in os.environ}
    print(f"probe time: {layers} layers x {hidden} neurons (the demo model), logistic, "
          f"{probe.PERMUTATIONS} shuffles, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, BLAS threads {threads or 'default'}")
    print(f"{'prompts':>8} | {'probe':>8} | {'dual only':>12} | {'dual/probe':>10} | "
          f"{'growth':>14} | p-value")
    previous = None
    times = {}
    for n in sizes:
        activations = rows(n, hidden, layers)
        spent, report = time_probe(activations)
        times[n] = spent
        if n <= 100:
            dual, dual_text = time_dual(activations, None), None
        elif n <= 1000:
            dual, dual_text = time_dual(activations, 1), "est."
        else:
            dual, dual_text = None, "too slow"
        dual_cell = ("-" if dual is None else f"{dual:.1f} s") + (f" {dual_text}" if dual_text
                                                                 and dual is not None else "")
        if dual is None:
            dual_cell = dual_text or "-"
        ratio = "-" if dual is None else f"{dual / spent:.1f}x"
        growth = "-" if previous is None else (
            f"{spent / times[previous]:.1f}x for {n // previous}x")
        print(f"{n:>8} | {spent:>6.1f} s | {dual_cell:>12} | {ratio:>10} | {growth:>14} | "
              f"{report.p_value:.3g}", flush=True)
        previous = n
    if 10000 in times:
        linear = times[10000] / times[1000] <= 10
        print(f"goal: 10,000 prompts in {times[10000]:.1f} s "
              f"({'within' if times[10000] <= 60 else 'OVER'} 60 s); growth 1,000 -> 10,000 "
              f"{times[10000] / times[1000]:.1f}x ({'at most' if linear else 'MORE than'} "
              "linear)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
