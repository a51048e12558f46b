"""Write constraints.txt: the exact versions of a venv in which the test suite passes.

    python scripts/lock_constraints.py                 # from .venv at the repository's root
    python scripts/lock_constraints.py --venv /path/to/venv

Run it after `python -m pytest` passed in that venv. The editable lazarus line is left out, and
a local build tag such as torch's `+cpu` is dropped, so that `torch==2.13.0` matches the CPU
build and the default build alike (which one pip takes is chosen by the install order: see the
README's set-up command).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = """\
# The exact versions the test suite passes with (a lock file for pip's -c option):
#     pip install torch==2.13.0 && pip install -c constraints.txt -e '.[dev]'
# Python 3.11 or newer (several of these releases need it). pyproject.toml declares the ranges
# lazarus accepts; this file pins one tested set of them, so that a fresh machine gets a
# known-green install whatever was released since. Regenerate it from a venv whose suite passed:
#     python scripts/lock_constraints.py --venv .venv
"""

# lazarus itself (a non-editable install of it), and the installer's own tools, which `pip
# freeze` leaves out too.
_LEFT_OUT = {"lazarus", "pip", "setuptools", "wheel", "distribute"}


def frozen(venv: Path) -> list[str]:
    """`name==version` of every package in the venv but editable ones (lazarus), local build
    tags dropped. `pip list --format=freeze`, not `pip freeze`: a package installed from a
    wheel file or URL is pinned by its version too, not written as `name @ url`."""
    python = venv / "bin" / "python"
    if not python.exists():
        sys.exit(f"error: no Python at {python}: name a venv with --venv")
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze",
                          "--exclude-editable"],
                         check=True, capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line:
            continue
        if line.split("==")[0].lower() in _LEFT_OUT:
            continue
        lines.append(re.sub(r"\+[A-Za-z0-9.]+$", "", line))
    return sorted(lines, key=lambda line: line.split("==")[0].lower())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=REPO / ".venv",
                        help="the venv to read (default: .venv at the repository's root)")
    parser.add_argument("--out", type=Path, default=REPO / "constraints.txt",
                        help="where to write (default: constraints.txt at the root)")
    args = parser.parse_args()
    args.out.write_text(HEADER + "\n".join(frozen(args.venv)) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
