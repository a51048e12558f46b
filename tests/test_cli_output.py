"""The progress bar on a terminal's stderr, and a message that follows an unfinished bar."""

from __future__ import annotations

import io
import re
import sys

from lazarus.cli import output as cli_output


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_message_after_an_unfinished_bar_starts_a_line_of_its_own(monkeypatch):
    """An interrupt or an error mid-run used to be glued to the bar's line."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setenv("TERM", "xterm")
    bar = cli_output.ProgressBar("scanning windows")
    bar(3, 10)
    cli_output.note("interrupted")
    lines = screen.getvalue().split("\n")
    assert lines[0].lstrip("\r\x1b[K").startswith("scanning windows [#########")
    assert lines[1] == "lazarus: interrupted"
    cli_output.note("again")  # no bar open now: no empty line
    assert screen.getvalue().endswith("lazarus: interrupted\nlazarus: again\n")


def test_a_finished_bar_ends_its_line_once():
    screen = Terminal()
    saved, sys.stderr = sys.stderr, screen
    try:
        bar = cli_output.ProgressBar("scanning windows")
        bar(10, 10)
        cli_output.note("saved x.json")
    finally:
        sys.stderr = saved
    assert screen.getvalue().count("\n") == 2
    assert re.search(r"10/10 \d+\.\ds\nlazarus: saved x\.json\n$", screen.getvalue())
