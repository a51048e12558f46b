"""`attribute` over every MLP neuron of every layer, against one forward + backward of the
same batch (issue #21's benchmark line), on CPU, offline.

    python bench/attribute_speed.py           # the benchmark's 30-block model (workload.py)
    python bench/attribute_speed.py --smoke   # a tiny model: checks the benchmark itself

Each measurement is a fresh process that loads the whole model, runs once to warm up, then
times (the best of `--repeats` runs; the cores may be shared, so take the best):
- floor: one forward + backward of the corrupted prompts' batch (the weights' requires_grad
  off, the input embeddings' output requiring grad: the cheapest pass that gives activation
  gradients), the metric summed over rows;
- attribute: `Model.attribute(..., sites=["mlp_post"], layers="all", self_check=0)`, which also
  scores the clean and corrupted runs and runs the clean prompts to keep their values;
- attribute + self-check: the same with the default self-check (20 + 20 units patched for
  real, one run per unit and pair).
and the peak RSS growth over the process's size after loading (VmHWM - VmRSS), against the
model's weights' bytes. Goal: attribute <= 3x the floor.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402

PAIRS = 8
GOAL = 3.0


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def pairs(folder: Path) -> tuple[list[str], list[str]]:
    """Clean prompts and corrupted ones of the same token length (a number changed), about 20
    tokens each."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    clean, corrupt = [], []
    for a in range(10, 99):
        for b in range(10, 99):
            one = f"Question: what is the sum of {a} and {b}? Answer: {a}+{b}="
            other = f"Question: what is the sum of {a} and {b + 1}? Answer: {a}+{b + 1}="
            if len(tokenizer(one)["input_ids"]) == len(tokenizer(other)["input_ids"]):
                clean.append(one)
                corrupt.append(other)
            if len(clean) == PAIRS:
                return clean, corrupt
    raise RuntimeError("no pairs of one length")


def measure(folder: str, what: str, repeats: int) -> dict:
    """In this (fresh) process: load, then time `what` and its peak RSS growth."""
    import time

    import lazarus

    clean, corrupt = pairs(Path(folder))
    model = lazarus.load(folder)
    loaded = model.whole_weights()
    weights = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    before = _status_kib("VmRSS")

    def floor() -> None:
        from lazarus.engine.capture import pad_batch, pad_id_of, tokenize

        ids, mask = pad_batch(tokenize(loaded, corrupt), pad_id_of(loaded.tokenizer))
        for parameter in loaded.model.parameters():
            parameter.requires_grad_(False)
        embeddings = loaded.model.get_input_embeddings()
        handle = embeddings.register_forward_hook(lambda m, a, out: out.requires_grad_(True))
        logits = loaded.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        logits[:, -1, 1].sum().backward()
        handle.remove()

    def attribute(check: int) -> None:
        model.attribute(clean, corrupt, ["1"], ["2"], sites=["mlp_post"], layers="all",
                        self_check=check)

    run = {"floor": floor, "attribute": lambda: attribute(0),
           "attribute_check": lambda: attribute(20)}[what]
    run()  # warm: the first run pages the weights in and sets up autograd
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {"seconds": min(times), "peak_growth_mb": (_status_kib("VmHWM") - before) / 1024,
            "weights_mb": weights / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--folder")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.repeats)))
        return 0
    kind = "smoke" if args.smoke else "full"
    folder = Path(args.folder or Path(tempfile.gettempdir()) / "lazarus-bench" / kind)
    workload.build_model(folder, workload.SMOKE if args.smoke else workload.FULL)
    found = {}
    for what in ("floor", "attribute", "attribute_check"):
        done = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats),
                               "--child", str(folder), what], capture_output=True, text=True,
                              check=True)
        found[what] = json.loads(done.stdout.strip().splitlines()[-1])
    floor = found["floor"]["seconds"]
    print(f"model: {folder} ({found['floor']['weights_mb']:.0f} MB of weights), "
          f"{PAIRS} pairs")
    for what, result in found.items():
        print(f"{what:16} {result['seconds']:7.2f} s  {result['seconds'] / floor:5.2f}x the "
              f"floor  peak RSS growth {result['peak_growth_mb']:7.0f} MB "
              f"({result['peak_growth_mb'] / result['weights_mb']:.2f}x the weights)")
    ratio = found["attribute"]["seconds"] / floor
    print(f"goal: attribute <= {GOAL}x one forward + backward: "
          f"{'met' if ratio <= GOAL else 'missed'} ({ratio:.2f}x)")
    return 0 if ratio <= GOAL or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
