"""Run the quickstart and put its real output into README.md (between the quickstart markers).

    python scripts/update_readme.py          # rewrite the README block
    python scripts/update_readme.py --check  # exit 1 if the README's block is out of date
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
START, END = "<!-- quickstart-output:start -->", "<!-- quickstart-output:end -->"


def quickstart_output() -> str:
    """stdout of scripts/quickstart.sh, run offline with an empty cache in a scratch folder."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LAZARUS_CACHE_DIR": f"{scratch}/cache"}
        result = subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh")], cwd=scratch,
                                capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"quickstart failed:\n{result.stderr}")
    return result.stdout


def quickstart_commands() -> str:
    """The lazarus commands of scripts/quickstart.sh, as a user would type them."""
    lines = (REPO / "scripts" / "quickstart.sh").read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("lazarus "))
    return "\n".join(line for line in lines[first:] if line != "echo")


def readme_block(output: str) -> str:
    return (f"{START}\n`scripts/quickstart.sh` runs:\n\n```bash\n{quickstart_commands()}\n```\n\n"
            "and prints (real output; `python scripts/update_readme.py` regenerates it):\n\n"
            f"```\n{output.rstrip()}\n```\n{END}")


def current_block(text: str) -> str:
    return text[text.index(START): text.index(END) + len(END)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, do not rewrite")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    block = readme_block(quickstart_output())
    if args.check:
        return 0 if current_block(text) == block else 1
    README.write_text(text.replace(current_block(text), block), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
