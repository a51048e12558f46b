"""The progress bar on a terminal's stderr, a message that follows an unfinished bar, and the
report on stdout written whole to a real pipe, or a clean failure on a closed pipe or a full
device (in this process: the tests through a child process are the integration tier's)."""

from __future__ import annotations

import io
import os
import re
import sys
import threading

import pytest

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


def test_a_report_larger_than_a_pipe_arrives_whole(monkeypatch):
    """Ten times the pipe's buffer, with a reader on the other end: all of it, in order."""
    report = "".join(f"row {i}: {'é' * (i % 50)}\n" for i in range(20_000))  # ~0.7 MB
    read_end, write_end = os.pipe()
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(read_end)))
    reader.start()
    with open(write_end, "w", encoding="utf-8") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        cli_output.write_stdout(report)
    reader.join(timeout=30)
    assert received.decode("utf-8") == report


def _read_all(fd: int) -> bytes:
    with open(fd, "rb") as pipe:
        return pipe.read()


def test_a_closed_pipe_is_a_failure_that_says_so(monkeypatch):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: `| head -1` after its line
    with open(write_end, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(cli_output.StdoutFailed) as failed:
            cli_output.write_stdout("report\n")
    assert failed.value.broken_pipe


def test_a_full_device_is_a_failure_that_is_not_a_closed_pipe(monkeypatch):
    with open("/dev/full", "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(cli_output.StdoutFailed, match="No space left on device") as failed:
            cli_output.write_stdout("report\n")
    assert not failed.value.broken_pipe


def test_silenced_stdout_goes_to_the_null_device(monkeypatch, tmp_path):
    """What could not be written is dropped at exit instead of failing again."""
    with open(tmp_path / "out.txt", "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        cli_output.silence_stdout()
        os.write(stdout.fileno(), b"dropped")
        assert os.path.samestat(os.fstat(stdout.fileno()), os.stat(os.devnull))
    assert (tmp_path / "out.txt").read_text() == ""


def test_out_escapes_control_characters_and_keeps_colour_only_when_asked(capsys):
    cli_output.out("a\x1b[31mred\x1b[0m\x07")
    cli_output.out("a\x1b[31mred\x1b[0m", keep_color=True)
    plain, coloured = capsys.readouterr().out.splitlines()
    assert plain == r"a\x1b[31mred\x1b[0m\x07"  # shown, not sent to the terminal
    assert coloured == "a\x1b[31mred\x1b[0m"


def test_a_note_is_one_write_so_threads_lines_never_run_together(monkeypatch):
    """The keep-alive server logs from several threads to one stderr: each line must reach it
    in one write, its newline included."""
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr(sys, "stderr", Recorder())
    cli_output.note("neurons: answered in 0.096 s")
    cli_output.warn("two\nlines")
    assert writes == ["lazarus: neurons: answered in 0.096 s\n",
                      "lazarus: warning: two\\nlines\n"]
