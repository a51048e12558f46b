"""lazarus against the goals of issue #5, measured side by side in one run, on CPU, offline.

    python bench/bench.py              # the issue's model: a 30-block Llama shaped like
                                       # SmolLM2-135M, layer 15, 512 prompts (a few minutes)
    python bench/bench.py --smoke      # a tiny model: checks that the benchmark itself works

The model and its tokenizer are built locally from fixed seeds (bench/workload.py) into
--folder (default: <tmp>/lazarus-bench/<full|smoke>, reused by later runs). Measured:

1. capture time of lazarus (`capture`, default settings, partial load) against the floor: the
   same prompts through the first L+1 blocks only, in batches of exactly equal length (no
   padding at all), with the best batch size of several; the better of three alternated runs
   of each. Goal: <= 1.15x.
2. end to end, process start to JSON written: `lazarus introspect neurons ... -o out.json
   --no-cache` against bench/naive_loop.py (whole model, a forward per prompt,
   output_hidden_states). Goal: >= 6x faster.
2b. the same command with a keep-alive server already warm on the model (a private one, started
   by one warm-up request, stopped at the end; bench/warm_server.py), median of 3; its JSON
   byte for byte the in-process one's. Goal: >= 15x faster than the naive loop.
3. end to end for 5 new prompts with an empty cache (cold; median of 3, each with other
   prompts), beside a fresh process that only imports what loading this Llama needs (torch,
   transformers' auto classes, the family's configuration and modeling modules) with the
   collector off and no teardown at exit, run alternately: the least any command that loads
   this model pays before its own work. Goal: <= 3.0 s (issue #23). Then the last 5 again
   (warm, from the cache). Goal: <= 0.5 s.
4. loading for layer L and capturing 5 prompts there, in a fresh process: bytes of the weight
   files the kernel read (page-cache pages, after evicting them; read-ahead included) and the
   peak RSS above the process's size before loading; against a full load whose 5 prompts run
   through every block. Goal: <= (L+1)/blocks of the blocks' bytes + the embeddings' bytes,
   + 5%.
5. `lazarus --help`, median of 7. Goal: < 0.1 s (issue 23; 0.3 s before).
6. where the start-up of 5 new prompts goes (no goal): the command in a fresh process, split by
   the spans the library records (`lazarus.engine.timeline`); the run with the median total.

Exit status: 1 if a goal is missed (not judged with --smoke) or values disagree, else 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pagecache  # noqa: E402
import warm_server  # noqa: E402
import workload  # noqa: E402

NEURONS = "1,2,3"
FLOOR_BATCHES = (16, 32, 64, 128, 256)


def lazarus_command() -> list[str]:
    script = Path(sys.executable).parent / "lazarus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lazarus.cli.main"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    return elapsed, done


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def tensor_bytes(folder: Path, layer_count: int) -> tuple[int, int, int]:
    """(bytes of all blocks, bytes of the embeddings, bytes of everything) from the headers."""
    blocks = embeddings = total = 0
    for path in weight_files(folder):
        with open(path, "rb") as file:
            size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(size))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            total += end - start
            if ".layers." in name:
                blocks += end - start
            elif "embed" in name:
                embeddings += end - start
    return blocks, embeddings, total


# -- 1. capture against the floor, in this process -------------------------------------------

def capture_against_floor(folder: Path, prompts: list[str], layer: int) -> dict:
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from lazarus.engine.capture import capture
    from lazarus.engine.loading import load_model
    from lazarus.engine.model_info import read_model_info
    from lazarus.engine.trace import CaptureRequest

    loaded = load_model(read_model_info(str(folder)), "cpu", "float32", up_to_layer=layer)
    request = CaptureRequest(layers=(layer,))

    config = AutoConfig.from_pretrained(folder, num_hidden_layers=layer + 1)
    floor_model = AutoModel.from_pretrained(folder, config=config, dtype=torch.float32).eval()
    floor_model.norm = torch.nn.Identity()  # the output of block `layer` itself
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def floor(batch_size: int) -> np.ndarray:
        ids = tokenizer(prompts)["input_ids"]
        by_length: dict[int, list[int]] = {}
        for index, row in enumerate(ids):
            by_length.setdefault(len(row), []).append(index)
        out = np.empty((len(prompts), config.hidden_size), np.float32)
        with torch.inference_mode():
            for indices in by_length.values():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start:start + batch_size]
                    batch = torch.tensor([ids[i] for i in chunk])
                    hidden = floor_model(input_ids=batch, use_cache=False).last_hidden_state
                    out[chunk] = hidden[:, -1].numpy()
        return out

    def clock(run) -> tuple[float, object]:
        started = time.perf_counter()
        result = run()
        return time.perf_counter() - started, result

    clock(lambda: floor(64))  # warm-up of both paths
    clock(lambda: capture(loaded, prompts[:64], request))
    trials = {size: clock(lambda size=size: floor(size))[0] for size in FLOOR_BATCHES}
    best_size = min(trials, key=trials.get)
    ours, theirs = [], [trials[best_size]]
    for _ in range(3):
        seconds, rows = clock(lambda: capture(loaded, prompts, request))
        ours.append(seconds)
        seconds, floor_rows = clock(lambda: floor(best_size))
        theirs.append(seconds)
    difference = float(np.max(np.abs(rows[layer] - floor_rows)))
    return {"lazarus": min(ours), "floor": min(theirs), "floor_batch": best_size,
            "difference": difference}


# -- 2, 3, 5. whole processes ---------------------------------------------------------------

def end_to_end(folder: Path, prompts_file: Path, layer: int, work: Path, env: dict) -> dict:
    arguments = ["introspect", "neurons", "-m", str(folder), "-l", str(layer), "-p",
                 f"@{prompts_file}", "-n", NEURONS, "--no-cache"]
    ours, _ = timed([*lazarus_command(), *arguments, "-o", str(work / "lazarus.json")], env)
    naive, _ = timed([sys.executable, str(HERE / "naive_loop.py"), str(folder), str(layer),
                      str(prompts_file), NEURONS, str(work / "naive.json")], env)
    a = json.loads((work / "lazarus.json").read_text())["activations"]
    b = json.loads((work / "naive.json").read_text())["values"]
    difference = max(abs(x - y) for row_a, row_b in zip(a, b, strict=True)
                     for x, y in zip(row_a, row_b, strict=True))
    warm = warm_server.end_to_end_warm(lazarus_command(), arguments, work / "lazarus.json",
                                       work, env, timed)
    return {"lazarus": ours, "naive": naive, "difference": difference, "warm": warm}


# What any program that loads this Llama through transformers imports first: torch, the auto
# classes (lazy), and the family's configuration and modeling modules, which bring in the rest
# of what loading needs (torch.distributed.tensor and sympy through the weight-conversion code,
# torch._dynamo through the attention masks). With the collector off and no teardown at exit,
# as lazarus runs them: the least a command that loads this model can take on this machine.
IMPORT_FLOOR = ("import gc\ngc.disable()\nimport torch\n"
                "from transformers import AutoModel, AutoModelForCausalLM\n"
                "import transformers.models.llama.configuration_llama\n"
                "import transformers.models.llama.modeling_llama\n"
                "import os\nos._exit(0)\n")


def five_prompts(folder: Path, prompts: list[str], layer: int, work: Path, env: dict,
                 runs: int = 3) -> dict:
    """5 new prompts, cold (empty cache, fresh process; median of `runs`, each with other new
    prompts), alternated with a fresh process importing what loading the model needs
    (IMPORT_FLOOR); then the last prompts again, from the cache."""
    env = {**env, "LAZARUS_CACHE_DIR": str(work / "cache-5")}
    colds, floors = [], []
    for run in range(runs):
        shutil.rmtree(work / "cache-5", ignore_errors=True)
        batch = prompts[5 * run:5 * run + 5]
        command = [*lazarus_command(), "introspect", "neurons", "-m", str(folder), "-l",
                   str(layer), "-p", "|".join(batch), "-n", NEURONS]
        colds.append(timed([*command, "-o", str(work / "cold.json")], env)[0])
        floors.append(timed([sys.executable, "-c", IMPORT_FLOOR], env)[0])
    warm, done = timed([*command, "-o", str(work / "warm.json")], env)
    same = (json.loads((work / "cold.json").read_text())
            == json.loads((work / "warm.json").read_text()))
    from_cache = "5 of 5 prompts from the activation cache" in done.stderr
    return {"cold": statistics.median(colds), "colds": colds,
            "floor": statistics.median(floors), "warm": warm, "same": same and from_cache}


def help_time(env: dict) -> float:
    times = [timed([*lazarus_command(), "--help"], env)[0] for _ in range(7)]
    return statistics.median(times)


# -- 4. loading footprint, each in a fresh process ------------------------------------------

def loading_footprint(folder: Path, layer: int, env: dict) -> dict:
    results = {}
    for mode in ("partial", "full"):
        _, done = timed([sys.executable, str(Path(__file__).resolve()), "--child-load", mode,
                         "--folder", str(folder), "--layer", str(layer)], env)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def child_load(mode: str, folder: Path, layer: int) -> None:
    """Load up to `layer` and capture 5 prompts there, or load the whole model and run them
    through every block; print the bytes of weight files read and the growth of the RSS."""
    files = [str(p) for p in weight_files(folder)]
    measurable = pagecache.available()
    if measurable:
        for path in files:
            pagecache.evict(path)
        measurable = all(pagecache.resident_bytes(path) == 0 for path in files)
    # Code is imported before the baseline: its memory is not the weights'.
    import torch  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import AutoTokenizer  # noqa: F401

    from lazarus.engine.capture import capture
    from lazarus.engine.loading import load_model
    from lazarus.engine.model_info import read_model_info
    from lazarus.engine.trace import CaptureRequest

    before = _status_bytes("VmRSS")
    info = read_model_info(str(folder))
    if mode == "partial":
        loaded = load_model(info, "cpu", "float32", up_to_layer=layer)
    else:
        loaded, layer = load_model(info, "cpu", "float32"), info.layer_count - 1
    capture(loaded, workload.prompts(5), CaptureRequest(layers=(layer,)))
    peak = _status_bytes("VmHWM")  # this process image's peak (ru_maxrss outlives exec)
    read = sum(pagecache.resident_bytes(path) for path in files) if measurable else None
    print(json.dumps({"read": read, "rss": peak - before}))


def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


# -- 6. where the start-up goes, in a fresh process -----------------------------------------

STARTUP_PARTS = ("imports", "config", "tokenizer", "weights", "forward")
STARTUP_CHILD = """
import contextlib, io, json, sys, time
started = time.perf_counter()
from lazarus.cli.main import main
from lazarus.engine import timeline
with contextlib.redirect_stdout(io.StringIO()):
    status = main(sys.argv[1:])
ended = time.perf_counter()
spans = timeline.spans(started)
parts = {name: sum(s.end - s.start for s in spans if s.name == name) for name in NAMES}
parts["cli"] = min(s.start for s in spans) - started
parts["writing"] = ended - max(s.end for s in spans if s.name == "forward")
parts["total"] = ended - started
print(json.dumps({"status": status, **parts}))
from lazarus.cli.quick_exit import quick_exit  # the command's own exit
quick_exit(0)
""".replace("NAMES", repr(STARTUP_PARTS))


def startup_breakdown(folder: Path, prompts: list[str], layer: int, work: Path, env: dict,
                      runs: int = 3) -> dict:
    """5 new prompts (no cache) in a fresh process, split by the library's timeline spans
    (`lazarus.engine.timeline`): python's start, the CLI's import and parsing, imports of
    torch, transformers and the family's modules, config, tokenizer, weights, forward, then
    the rest (rendering, writing). The run with the median total."""
    command = ["introspect", "neurons", "-m", str(folder), "-l", str(layer), "-p",
               "|".join(prompts[:5]), "-n", NEURONS, "--no-cache", "-o", str(work / "5.json")]
    found = []
    for _ in range(runs):
        wall, done = timed([sys.executable, "-c", STARTUP_CHILD, *command], env)
        parts = json.loads(done.stdout.strip().splitlines()[-1])
        if parts.pop("status") != 0:
            raise SystemExit(f"failed: lazarus {' '.join(command)}")
        found.append({"python": wall - parts["total"], **parts, "wall": wall})
    found.sort(key=lambda parts: parts["wall"])
    return found[len(found) // 2]


def startup_line(parts: dict) -> str:
    names = ("python", "cli", *STARTUP_PARTS, "writing")
    labels = {"python": "python start+exit", "cli": "lazarus imports+parsing",
              "writing": "render+write"}
    return (f"start-up, 5 new prompts: {parts['wall']:.2f} s = "
            + " + ".join(f"{labels.get(name, name)} {parts[name]:.2f}" for name in names))


# -- the report ------------------------------------------------------------------------------

def megabytes(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value / 2**20:.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny model, goals not judged")
    parser.add_argument("--folder", type=Path, help="where the model is built and reused")
    parser.add_argument("--child-load", choices=("partial", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--layer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load:
        child_load(args.child_load, args.folder, args.layer)
        return 0

    shape = workload.SMOKE if args.smoke else workload.FULL
    layer = 3 if args.smoke else 15
    count = 64 if args.smoke else 512
    blocks = shape["num_hidden_layers"]
    folder = args.folder or Path(tempfile.gettempdir()) / "lazarus-bench" / (
        "smoke" if args.smoke else "full")
    workload.build_model(folder, shape)
    work = Path(tempfile.mkdtemp(prefix="lazarus-bench-"))
    prompts = workload.prompts(count)
    prompts_file = work / "prompts.txt"
    prompts_file.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LAZARUS_CACHE_DIR": str(work / "cache"),
           "TOKENIZERS_PARALLELISM": "false", "LAZARUS_SERVE_DIR": str(work / "no-server")}
    env.pop("LAZARUS_KEEP_ALIVE", None)  # in process, unless a line starts its own server
    # lazarus's modules compiled, as an installed package has them (pip compiles on install),
    # even where PYTHONDONTWRITEBYTECODE is set: else every process compiles them (~0.1 s).
    package = Path(importlib.util.find_spec("lazarus").origin).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)

    import torch

    print(f"lazarus benchmark{' (smoke)' if args.smoke else ''}: Llama, {blocks} blocks, hidden "
          f"{shape['hidden_size']}, random weights; layer {layer}; {count} prompts")
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)

    capture_result = capture_against_floor(folder, prompts, layer)
    e2e = end_to_end(folder, prompts_file, layer, work, env)
    five = five_prompts(folder, prompts, layer, work, env)
    footprint = loading_footprint(folder, layer, env)
    help_seconds = help_time(env)
    startup = startup_breakdown(folder, prompts, layer, work, env)
    block_bytes, embedding_bytes, _ = tensor_bytes(folder, blocks)
    allowed = ((layer + 1) / blocks * block_bytes + embedding_bytes) * 1.05

    rows = [
        ("1. capture", f"lazarus {capture_result['lazarus']:.2f} s",
         f"floor {capture_result['floor']:.2f} s (batch {capture_result['floor_batch']})",
         f"{capture_result['lazarus'] / capture_result['floor']:.2f}x", "<= 1.15x",
         capture_result["lazarus"] <= 1.15 * capture_result["floor"]),
        ("2. end to end", f"lazarus {e2e['lazarus']:.1f} s", f"naive loop {e2e['naive']:.1f} s",
         f"{e2e['naive'] / e2e['lazarus']:.1f}x faster", ">= 6x",
         e2e["naive"] >= 6 * e2e["lazarus"]),
        ("2b. warm server", f"lazarus {e2e['warm']['seconds']:.2f} s",
         f"naive loop {e2e['naive']:.1f} s", f"{e2e['naive'] / e2e['warm']['seconds']:.1f}x faster",
         ">= 15x", e2e["naive"] >= 15 * e2e["warm"]["seconds"]),
        ("3. 5 prompts", f"cold {five['cold']:.2f} s",
         f"imports alone {five['floor']:.2f} s",
         f"{five['cold'] / five['floor']:.2f}x", "<= 3.0 s", five["cold"] <= 3.0),
        ("   from cache", f"warm {five['warm']:.2f} s", "", "", "<= 0.5 s", five["warm"] <= 0.5),
        ("4. bytes read", f"lazarus {megabytes(footprint['partial']['read'])}",
         f"full load {megabytes(footprint['full']['read'])}", "", f"<= {megabytes(allowed)}",
         footprint["partial"]["read"] is not None and footprint["partial"]["read"] <= allowed),
        ("   peak RSS", f"lazarus +{megabytes(footprint['partial']['rss'])}",
         f"full load +{megabytes(footprint['full']['rss'])}", "", f"<= {megabytes(allowed)}",
         footprint["partial"]["rss"] <= allowed),
        ("5. --help", f"{help_seconds:.3f} s", "", "", "< 0.1 s", help_seconds < 0.1),
    ]
    print()
    for name, ours, theirs, ratio, goal, passed in rows:
        verdict = "-" if args.smoke else ("PASS" if passed else "FAIL")
        print(f"{name:<15} {ours:<18} {theirs:<28} {ratio:<13} goal {goal:<14} {verdict}")
    print(startup_line(startup))
    agree = (capture_result["difference"] <= 1e-4 and e2e["difference"] <= 1e-4
             and five["same"] and e2e["warm"]["same"])
    print(f"\nvalues: lazarus vs floor max |difference| {capture_result['difference']:.1g}, vs "
          f"naive loop {e2e['difference']:.1g}; warm run equal to cold and from the cache: "
          f"{five['same']}; warm server's JSON identical to in process, all served: "
          f"{e2e['warm']['same']} (runs: {', '.join(f'{t:.2f}' for t in e2e['warm']['runs'])} s)")
    shutil.rmtree(work, ignore_errors=True)
    missed = not args.smoke and not all(row[-1] for row in rows)
    return 1 if missed or not agree else 0


if __name__ == "__main__":
    sys.exit(main())
