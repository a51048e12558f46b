"""Is reading and tokenizing one long corpus document linear? Issue #18's line.

    python bench/corpus_long_document.py          # 1.8 MB and 18 MB documents
    python bench/corpus_long_document.py --whole  # also the one-call route it replaced (slow)
    python bench/corpus_long_document.py --smoke  # 0.18 MB and 1.8 MB: checks the benchmark

Each size is a fresh process with a .jsonl corpus of one document (English-like words, spaces
and line breaks) and the demo model's tokenizer (one token per character: the most tokens a
byte of text can make). Measured: the CPU seconds (wall seconds beside them: on a shared
machine the CPU time is the steadier figure) and the peak RSS growth (VmHWM after minus VmRSS
before) of one pass over the corpus's windows (`corpus.windows`, window 64), which is what
`examples` does before any shard: read the line, parse the JSON, tokenize, cut. Goal: ten times
the text takes at most 15x the CPU time, and the memory grows by at most the text itself (held
as a str and as its JSON line) plus a bounded amount, not per token.
`--whole` also measures the route before issue 18 (the document tokenized in one call, its ids
cut in memory); on this machine it took 21 s and +3.4 GB for the 18 MB document.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "away", "from",
         "home", "quickly", "while", "one", "two", "three", "birds", "sang", "in", "old",
         "green", "tree", "near", "river")


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def write_corpus(path: Path, chars: int) -> None:
    rng = random.Random(0)
    parts, size = [], 0
    while size < chars:
        word = rng.choice(WORDS) + ("\n" if rng.random() < 0.02 else " ")
        parts.append(word)
        size += len(word)
    path.write_text(json.dumps({"text": "".join(parts)[:chars]}) + "\n", encoding="utf-8")


def child(path: Path, whole: bool) -> None:
    from transformers import AutoTokenizer

    from lazarus.engine.model_info import demo_model_folder
    from lazarus.io.corpus import cut, read_documents, windows

    tokenizer = AutoTokenizer.from_pretrained(demo_model_folder())
    tokenizer("warm up", add_special_tokens=False, return_offsets_mapping=True)
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:  # reset VmHWM to the current RSS
        refs.write("5")
    start, cpu = time.perf_counter(), time.process_time()
    if whole:  # the route before issue 18
        count = 0
        for doc, text in read_documents(str(path)):
            ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
            count += sum(1 for _ in cut(doc, [ids], 64, 64))
    else:
        count = sum(1 for _ in windows(str(path), tokenizer, 64, 64))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    growth = (_status_kib("VmHWM") - before) * 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "growth": growth, "windows": count}))


def measure(path: Path, whole: bool) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, __file__, "--child", str(path)]
                          + (["--whole"] if whole else []), capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--whole", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.whole)
        return 0
    sizes = (180_000, 1_800_000) if args.smoke else (1_800_000, 18_000_000)
    folder = Path(tempfile.mkdtemp(prefix="lazarus-bench-corpus-"))
    mb = 1e6
    routes = (False, True) if args.whole else (False,)
    results = {}
    for chars in sizes:
        path = folder / f"doc-{chars}.jsonl"
        write_corpus(path, chars)
        for whole in routes:
            results[chars, whole] = measure(path, whole)
        path.unlink()
    folder.rmdir()
    small, large = sizes
    ok = True
    for whole in routes:
        a, b = results[small, whole], results[large, whole]
        name = "one call (before)" if whole else "in pieces"
        line = (f"{name:>17}: {small / mb:g} MB {a['cpu']:.2f} s CPU ({a['seconds']:.2f} s) "
                f"+{a['growth'] / mb:.0f} MB | {large / mb:g} MB {b['cpu']:.2f} s CPU "
                f"({b['seconds']:.2f} s) +{b['growth'] / mb:.0f} MB | CPU time "
                f"{b['cpu'] / a['cpu']:.1f}x, memory {b['growth'] / max(a['growth'], 1):.1f}x "
                "for 10x the text")
        if not whole:
            ok = (b["cpu"] <= 15 * a["cpu"]
                  and b["growth"] <= 4 * large + 64 * mb)  # the text twice, as str and bytes
            line += f"; goal: {'ok' if ok else 'MISSED'}"
        print(line)
    return 0 if ok or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
