"""How strong to steer the demo model before its continuations stop being answers.

    python bench/steer_range.py            # about 10 s on 2 idle CPU cores
    python bench/steer_range.py --quick    # fewer coefficients

On `lazarus:demo` (an arithmetic model: a prompt such as `47*47=` is answered by a number and
the end-of-text token), greedy continuations of 8 tokens for 32 problems (12 hard
multiplications and 12 one-digit problems from `scripts/causal_demo.sh`, 8 two-digit-by-one
problems), steered with `Model.steer` at a grid of coefficients, each with both signs, along:
- the quickstart's hard/easy probe direction at layer 0 (resid_post; the README's example);
- mean(hard) - mean(easy) prompts at layers 1 and 2 (resid_post; `--positive/--negative`);
- a random unit direction at layer 2 (seed 0);
and (`--neurons` mode) the two mlp_post neurons of layer 1 and of layer 3 with the largest
|value| over the prompts' tokens after BOS, each at that largest |value| (as the unit card steers
a neuron), and the two of layer 1 largest at BOS, at that value (beyond anything they reach on
the other tokens).

Well-formed: the continuation is an answer's shape, a number of 1 to 4 digits without a leading
zero (the largest answer, 99*99, has 4) followed by the end of text; "000000", "222222", " 2"
or "12+3" are not. Changed: the continuation differs from the unsteered one. Each cell is over
both signs of the coefficient (64 continuations). `x norm` is the added vector's length over
the mean activation norm at that site (`SteerResult.added_fraction`): equal to the coefficient
in direction mode, measured in neuron mode.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time

import numpy as np

import lazarus
from lazarus.engine.capture import capture
from lazarus.engine.trace import CaptureRequest
from lazarus.io.directions import Direction

HARD = ["34*84=", "83*22=", "59*92=", "99*91=", "60*12=", "29*28=", "24*47=", "30*45=",
        "14*59=", "35*12=", "89*66=", "71*20="]
EASY = ["1+5=", "2+1=", "2+2=", "2+5=", "3+7=", "4+0=", "0*0=", "0*8=", "1*5=", "2*0=", "3*0=",
        "3*1="]
MEDIUM = ["23+4=", "56*3=", "71+8=", "42*6=", "18+9=", "93*2=", "65+5=", "37*4="]
PROMPTS = HARD + EASY + MEDIUM
GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
QUICK = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0)
ANSWER = re.compile(r"0|[1-9][0-9]{0,3}")
MAX_TOKENS = 8


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return (f"{name}, {os.cpu_count()} cores, torch {torch.__version__}, load average "
            f"{os.getloadavg()[0]:.2f}")


def setups(model: lazarus.Model) -> dict[str, dict]:
    """name -> Model.steer keyword arguments (without coefficients)."""
    probe = model.probe(
        ["47*47=", "67*83=", "53*59=", "38*76=", "91*23=", "64*58=", "29*84=", "73*36="],
        ["20+30=", "10*10=", "11+11=", "40+50=", "10+20=", "30*10=", "12+12=", "20*20="],
        label_a="hard", label_b="easy", layers=[0])
    pair = {"positive": ["47*47=", "67*83=", "53*59=", "38*76="],
            "negative": ["2+3=", "4*2=", "1+1=", "3*3="]}
    random = np.random.default_rng(0).standard_normal(model.hidden_size)
    found = {"probe direction, L0": {"direction": probe},
             "hard-easy, L1": {"layer": 1, **pair},
             "hard-easy, L2": {"layer": 2, **pair},
             "random, L2": {"direction": Direction(direction=random.astype(np.float32),
                                                   layer=2)}}
    for layer in (1, 3):
        found[f"neurons, L{layer}"] = {"layer": layer, "site": "mlp_post",
                                       "neurons": _top_neurons(model, layer, 1)}
    found["neurons, L1 at BOS"] = {"layer": 1, "site": "mlp_post",
                                   "neurons": _top_neurons(model, 1, 0)}
    return found


def _top_neurons(model: lazarus.Model, layer: int, start: int) -> dict[int, float]:
    """The 2 neurons with the largest |value| over the prompts' tokens from `start` (1: after
    BOS; 0: BOS too, where layer 1's largest values are, far beyond the other tokens'), at it."""
    request = CaptureRequest((layer,), "mlp_post", "all")
    rows = capture(model.whole_weights(), PROMPTS, request)[layer]
    stacked = np.concatenate([row[start:] for row in rows]).astype(np.float64)
    largest = np.abs(stacked).max(axis=0)
    return {int(n): float(largest[n]) for n in np.argsort(-largest)[:2]}


def measure(model: lazarus.Model, kwargs: dict, grid: tuple[float, ...]) -> dict:
    coefficients = [s * c for c in grid for s in (-1, 1)]
    result = model.steer(PROMPTS, coefficients=coefficients, max_tokens=MAX_TOKENS, **kwargs)
    base = result.runs[0]
    rows = {0.0: (np.mean([bool(ANSWER.fullmatch(t)) for t in base.continuations]), 0.0, 0.0)}
    for c in grid:
        runs = [run for run in result.runs if abs(run.coefficient) == c]
        texts = [t for run in runs for t in run.continuations]
        changed = [t != b for run in runs for t, b in zip(run.continuations, base.continuations,
                                                             strict=True)]
        rows[c] = (np.mean([bool(ANSWER.fullmatch(t)) for t in texts]), np.mean(changed),
                   result.added_fraction(runs[0]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer coefficients")
    grid = QUICK if parser.parse_args().quick else GRID
    print(f"machine: {machine()}")
    start = time.perf_counter()
    model = lazarus.load("lazarus:demo")
    found = {name: measure(model, kwargs, grid) for name, kwargs in setups(model).items()}
    names = list(found)
    print(f"lazarus:demo, {len(PROMPTS)} problems x 2 signs, greedy, {MAX_TOKENS} tokens; "
          "cells: well-formed % / changed %  (neurons: also x norm)")
    print("| coef | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for c in (0.0, *grid):
        cells = []
        for name in names:
            formed, changed, fraction = found[name][c]
            cell = f"{100 * formed:.0f} / {100 * changed:.0f}"
            if name.startswith("neurons") and c:
                cell += f" ({fraction:.2f}x)"
            cells.append(cell)
        print(f"| {c:g} | " + " | ".join(cells) + " |")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
