"""How close does `introspect examples` come to the compute floor, and does its memory stay flat?

    python bench/examples_speed.py              # the demo model over tests/data/corpus.txt
    python bench/examples_speed.py --repeat 3   # each corpus copied 3 times (steadier timings)
    python bench/examples_speed.py --neurons 0 --model smollm   # every neuron, hidden 576

Speed: the same windows (corpus, --window, stride = window) go through the model (the demo, or
with --model smollm a random Llama shaped like SmolLM2-135M) truncated after --layer in the same
length-bucketed batches, twice, alternating, best of --rounds: the floor (the forward with an
early stop after the layer, nothing kept) and the command's path (`scan.scan_shard`: the hook
keeps every token's chosen columns and reduces them to top/bottom, moments, positives and the
sketch, shard by shard). Printed side by side in tokens per second, with their ratio (goal: >=
0.90).

Memory: the whole command (`Model.examples`, fresh process, fresh work folder) over the corpus
copied 1x and 10x; each prints its peak RSS (ru_maxrss). Flat = the summaries do not grow with
the corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "tests" / "data" / "corpus.txt"


def corpus_copies(folder: Path, copies: int) -> Path:
    path = folder / f"corpus-x{copies}.txt"
    path.write_text(CORPUS.read_text() * copies)
    return path


def model_path(name: str) -> str:
    """The demo model, or the SmolLM2-135M-shaped one, built once under the temp folder."""
    if name == "demo":
        return "lazarus:demo"
    sys.path.insert(0, str(HERE))
    import workload

    folder = Path(tempfile.gettempdir()) / "lazarus-bench" / "full"
    workload.build_model(folder, workload.FULL)
    return str(folder)


def speed(args: argparse.Namespace, corpus: Path) -> None:
    import torch

    import lazarus
    from lazarus.analyses.scan import scan_shard, shards_of
    from lazarus.analyses.shards import ScanSettings
    from lazarus.engine.budget import BATCH_OVERHEAD_TOKENS, batch_limits, plan_batches
    from lazarus.engine.capture import pad_batch, pad_id_of
    from lazarus.io.corpus import prefix_of, windows

    model = lazarus.load(model_path(args.model))
    loaded = model.weights(args.layer)
    # --neurons 0: every neuron, asked for as the command does (no column list to gather)
    step = max(1, model.hidden_size // args.neurons) if args.neurons else 1
    neurons = tuple(range(0, model.hidden_size, step))
    settings = ScanSettings(str(corpus), args.layer, neurons=neurons if args.neurons else None,
                            window=args.window, stride=args.window)
    prefix = prefix_of(loaded.tokenizer)
    shards = list(shards_of(windows(str(corpus), loaded.tokenizer, args.window, args.window),
                            settings.shard_windows))
    tokens = sum(len(w.tokens) for _, shard in shards for w in shard)
    pad_id = pad_id_of(loaded.tokenizer)

    class Stop(Exception):
        pass

    def stop(module, args, output) -> None:  # nothing kept: the hook only ends the forward
        raise Stop

    def floor() -> None:
        block = loaded.model.model.layers[args.layer]
        handle = block.register_forward_hook(stop)
        try:
            with torch.inference_mode():
                for _, shard in shards:
                    lengths = [len(prefix) + len(w.tokens) for w in shard]
                    budget, most = batch_limits(loaded, max(lengths))
                    overhead = BATCH_OVERHEAD_TOKENS[loaded.device == "cpu"]
                    for batch in plan_batches(lengths, budget, most, overhead):
                        ids, mask = pad_batch([prefix + shard[i].tokens for i in batch], pad_id)
                        with contextlib.suppress(Stop):
                            loaded.model(input_ids=ids, attention_mask=mask, use_cache=False)
        finally:
            handle.remove()

    def command() -> None:
        for _, shard in shards:
            scan_shard(loaded, shard, prefix, settings)

    best = {"floor": float("inf"), "command": float("inf")}
    for _ in range(args.rounds):
        for name, run in (("floor", floor), ("command", command)):
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    rate = {name: tokens / seconds for name, seconds in best.items()}
    windows_run = sum(len(s) for _, s in shards)
    print(f"speed: {args.model} model, {tokens} tokens in {windows_run} windows of "
          f"<= {args.window}, layer {args.layer}, {len(neurons)} neurons, torch threads "
          f"{torch.get_num_threads()}, best of {args.rounds}")
    print(f"  floor    {rate['floor']:>10.0f} tokens/s")
    print(f"  command  {rate['command']:>10.0f} tokens/s")
    print(f"  ratio    {rate['command'] / rate['floor']:>10.2f}  (goal >= 0.90)")


CHILD = """
import json, resource, sys
import lazarus
model = lazarus.load("lazarus:demo")
result = model.examples(sys.argv[1], {layer}, window={window}, work_dir=sys.argv[2],
                        examples=10)
print(json.dumps({{"tokens": result.tokens, "neurons": len(result.neurons),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def memory(args: argparse.Namespace, folder: Path) -> None:
    print(f"memory: the whole command, every neuron of layer {args.layer}, fresh process each")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    for copies in (args.repeat, 10 * args.repeat):
        corpus = corpus_copies(folder, copies)
        done = subprocess.run(
            [sys.executable, "-c", CHILD.format(layer=args.layer, window=args.window),
             str(corpus), str(folder / f"work-{copies}")],
            capture_output=True, text=True, env=env, check=True)
        found = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  corpus x{copies:<3} {found['tokens']:>8} tokens  peak RSS "
              f"{found['peak_mb']:>7.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--neurons", type=int, default=16,
                        help="neurons kept in the speed run (0: every neuron of the layer)")
    parser.add_argument("--model", choices=("demo", "smollm"), default="demo",
                        help="the demo model (hidden 192), or a random Llama shaped like "
                             "SmolLM2-135M (hidden 576; bench/workload.py) for the speed run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="copies of the corpus at 1x")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lazarus-examples-") as name:
        folder = Path(name)
        speed(args, corpus_copies(folder, max(args.repeat, 1)))
        memory(args, folder)
    print(f"(load average {os.getloadavg()[0]:.2f}: other work on the machine slows both)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
