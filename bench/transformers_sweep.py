"""Does lazarus work with the oldest transformers it declares, and with the newest one out?

    python bench/transformers_sweep.py --transformers oldest
    python bench/transformers_sweep.py --transformers newest --transformers 5.20.0
    python bench/transformers_sweep.py --transformers oldest --tests tests/test_capture.py

For each version: a throwaway venv in a temporary folder, torch 2.13.0 (the CPU build first, as
.ci/run installs it), then lazarus with its dev extras from this checkout, every other package at
its version in constraints.txt except transformers and the packages whose versions it pins
(tokenizers, huggingface-hub, ...), which pip resolves for it. `oldest` is the lower bound of
transformers in pyproject.toml, exactly; `newest` is what pip resolves within pyproject's range;
`X.Y.Z` is that release. Then the architecture sweep (tests/test_architectures.py, every
causal-LM family of that transformers) and the integration tests that load models, and one line
per version:

    transformers 5.18.0: 266 passed, 0 failed, 0 skipped-upstream, 7 skipped (254 s)

skipped-upstream: families that transformers itself cannot build or run (the test's reason starts
with "upstream:", see tests/test_architectures.py), listed below the line with their reasons;
failed: the tests that failed, listed too (the venv and pytest's log are kept). Exit status 1 when
any version failed or could not be installed. A few minutes per version on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_architectures.py", "tests/test_capture.py", "tests/test_partial_loading.py",
         "tests/test_moe.py", "tests/test_cli_neurons.py"]
# Left out of the lock for the sweep: transformers and what its releases pin to their own range.
LOOSE = {"transformers", "tokenizers", "huggingface-hub", "hf-xet", "safetensors", "kernels",
         "httpx2", "httpcore2"}


@dataclass
class Outcome:
    """What pytest reported for one transformers version."""

    version: str
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"transformers {self.version}: {self.passed} passed, {len(self.failed)} failed, "
                f"{len(self.upstream)} skipped-upstream, {self.skipped} skipped "
                f"({self.seconds:.0f} s)")


def declared_range() -> str:
    """transformers' version range in pyproject.toml, e.g. '>=5.18,<6'."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'"transformers\s*([<>=!~][^"]*)"', text)
    if found is None:
        sys.exit("error: pyproject.toml declares no transformers requirement")
    return found.group(1).replace(" ", "")


def requirement(choice: str) -> str:
    """The pip requirement for --transformers oldest|newest|X.Y.Z."""
    if choice == "oldest":
        lower = re.search(r">=([0-9][0-9.]*)", declared_range())
        if lower is None:
            sys.exit("error: pyproject.toml's transformers range has no lower bound")
        return f"transformers=={lower.group(1)}"
    if choice == "newest":
        return f"transformers{declared_range()}"
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", choice):
        sys.exit(f"error: --transformers {choice!r}: give oldest, newest or a version like 5.20.0")
    return f"transformers=={choice}"


def loose_constraints(folder: Path) -> Path:
    """constraints.txt without the packages transformers pins for itself."""
    kept = []
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        name = re.split(r"[=<>!~ ;]", line.strip(), maxsplit=1)[0]
        if name and not line.startswith("#") and name.lower().replace("_", "-") not in LOOSE:
            kept.append(line)
    path = folder / "constraints.txt"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def run(command: list[str], log: Path, env: dict[str, str] | None = None) -> bool:
    """Run a command with its output in the log file; True when it succeeded."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                              env=env).returncode == 0


def install(folder: Path, spec: str, log: Path) -> Path | None:
    """A venv holding torch, lazarus[dev] and the requested transformers; its Python, or None."""
    venv = folder / "venv"
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [*pip, "torch==2.13.0"],
             [*pip, "-c", str(loose_constraints(folder)), "-e", ".[dev]", spec]]
    for step in steps:
        if not run(step, log):
            return None
    return python


def installed_version(python: Path) -> str:
    code = "import transformers; print(transformers.__version__)"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def read_report(report: Path, outcome: Outcome) -> None:
    """Count pytest's junit XML: failures and errors, upstream skips, other skips, passes."""
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome.failed.append(name)
        elif skipped is not None and "upstream:" in skipped.get("message", ""):
            message = skipped.get("message", "")
            outcome.upstream.append(message[message.index("upstream:"):])
        elif skipped is not None:
            outcome.skipped += 1
        else:
            outcome.passed += 1


def sweep(choice: str, tests: list[str], keep: bool) -> Outcome | None:
    """Install one transformers version in a throwaway venv and run the tests there."""
    folder = Path(tempfile.mkdtemp(prefix=f"lazarus-sweep-{choice}-"))
    log = folder / "log.txt"
    spec = requirement(choice)
    print(f"[{choice}] installing {spec} in {folder} (log: {log})", file=sys.stderr)
    started = time.monotonic()
    try:
        python = install(folder, spec, log)
        if python is None:
            print(f"transformers {spec}: install failed (see {log})")
            keep = True
            return None
        outcome = Outcome(installed_version(python))
        print(f"[{choice}] running {len(tests)} test files on transformers {outcome.version}",
              file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["VIRTUAL_ENV"] = str(python.parent.parent)  # as if activated: its console scripts
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
        report = folder / "report.xml"
        # Both tiers: the sweep over every family is an integration test.
        run([str(python), "-m", "pytest", "-p", "no:cacheprovider", "-rfEs", "-m", "not slow",
             f"--junitxml={report}", *tests], log, env)
        if not report.exists():
            print(f"transformers {outcome.version}: pytest wrote no report (see {log})")
            keep = True
            return None
        read_report(report, outcome)
        outcome.seconds = time.monotonic() - started
        keep = keep or bool(outcome.failed)
        return outcome
    finally:
        if keep:
            print(f"[{choice}] kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transformers", action="append", required=True, metavar="VERSION",
                        help="oldest (pyproject's lower bound), newest (what pip resolves) or "
                             "X.Y.Z; repeat for several")
    parser.add_argument("--tests", nargs="+", default=TESTS,
                        help=f"test files or node IDs (default: {' '.join(TESTS)})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the venvs (kept anyway when something failed)")
    args = parser.parse_args()
    failed = False
    for choice in args.transformers:
        outcome = sweep(choice, args.tests, args.keep)
        failed = failed or outcome is None or bool(outcome.failed)
        if outcome is None:
            continue
        print(outcome.line(), flush=True)
        for reason in outcome.upstream:
            print(f"  skipped-upstream: {reason}")
        for name in outcome.failed:
            print(f"  failed: {name}")
    sys.exit(1 if failed else 0)

if __name__ == "__main__":
    main()
