"""The README's `introspect patch` and `introspect attribute` examples show the real output: each
```bash block that runs one of them on the demo model is run here, and the code block after it
must be exactly what it prints.

    python tests/test_readme_pairs.py   # rewrite those output blocks with today's output
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# A bash block holding one patch or attribute command on the demo model, then its output block.
EXAMPLE = re.compile(r"```bash\n(lazarus introspect (?:patch|attribute) -m lazarus:demo "
                     r"[^`]*?)\n```\n\n```(?:text)?\n(.*?)\n```", re.S)


def examples(text: str) -> list[tuple[str, str, tuple[int, int]]]:
    """(command, shown output, the output's span in `text`) of each example."""
    return [(match.group(1), match.group(2), match.span(2)) for match in EXAMPLE.finditer(text)]


def argv(command: str) -> list[str]:
    """The command's arguments after `lazarus`, its lines joined as bash joins them."""
    return shlex.split(command.replace("\\\n", " "))[1:]


def run(command: str) -> str:
    """What the command prints on stdout, run in this process (the installed code)."""
    from lazarus.cli.main import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv(command))
    assert code == 0, f"{command} exited with {code}"
    return printed.getvalue().rstrip("\n")


def test_the_readme_has_the_patch_and_attribute_examples():
    commands = [argv(command)[:2] for command, _, _ in examples(README.read_text("utf-8"))]
    assert ["introspect", "patch"] in commands
    assert ["introspect", "attribute"] in commands
    assert len(commands) >= 3  # patch on positions, patch on heads, attribute


@pytest.mark.parametrize("index", range(len(examples(README.read_text("utf-8")))))
def test_a_readme_example_shows_the_real_output(index):
    command, shown, _ = examples(README.read_text("utf-8"))[index]
    assert run(command) == shown, (
        "the README's output is stale: run python tests/test_readme_pairs.py")


def main() -> int:
    text = README.read_text("utf-8")
    for _, _, (start, end) in reversed(examples(text)):
        command = text[:start].rsplit("```bash\n", 1)[1].split("\n```")[0]
        text = text[:start] + run(command) + text[end:]
    README.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
