"""`cli.main` and `cli.cache` in this process: how a run ends when stdout is closed, full or a
closed pipe, when a real SIGINT or SIGTERM arrives mid-run, and what `cache info` and `cache
clear` print. (The same through a child process are integration tests: test_adversarial_io,
test_adversarial_cache.)"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from lazarus.cli.main import main
from lazarus.engine import cache
from lazarus.engine.capture import CaptureRequest
from lazarus.engine.collect import ModelSettings, collect
from lazarus.engine.model_info import read_model_info

MISSING_MODEL = "/nonexistent/model"  # the runs here end before any model is looked for


def test_a_closed_stdout_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", None)
    assert main(["--version"]) == 2
    assert capsys.readouterr().err == (
        "lazarus: error: standard output is closed (run with it open, e.g. > /dev/null)\n")


def test_help_on_a_full_device_is_one_line(monkeypatch, capsys):
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        code = main(["--help"])
        err = capsys.readouterr().err
    assert code == 2
    assert err == ("lazarus: error: cannot write to standard output: No space left on device "
                   "(free some space, or send the output elsewhere)\n")


def test_a_reader_that_went_away_ends_the_run_quietly(monkeypatch, capsys):
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        code = main(["--help"])
        err = capsys.readouterr().err
    assert code == 141  # 128 + SIGPIPE, as a shell reports `cat big | head -1`'s cat
    assert err == ""


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_is_one_line_and_leaves_no_file(tmp_path, capsys, sent, status):
    """The run blocks reading its prompts from a FIFO; once it has the FIFO open, a real signal
    is sent to the main thread (sent to the process, another thread, torch's say, could take
    it and leave the read blocked). Ctrl-C raises KeyboardInterrupt, as Python makes it do
    unless started with SIGINT ignored (a shell's background job). SIGTERM's own handler is
    restored afterwards."""
    interrupt_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)
    output = tmp_path / "out.json"
    returned = threading.Event()

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # opens without blocking once the run reads it
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.01)
                continue
            time.sleep(0.1)  # from open() into read()
            signal.pthread_kill(main_thread, sent)
            returned.wait(timeout=30)  # unanswered: the end of the file ends the read
            os.close(writer)
            return

    main_thread = threading.main_thread().ident
    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=interrupt)
    sender.start()
    try:
        code = main(["introspect", "neurons", "-m", MISSING_MODEL, "-l", "0", "-p", f"@{fifo}",
                     "-n", "1", "-o", str(output)])
    finally:
        returned.set()
        sender.join()
        signal.signal(signal.SIGINT, interrupt_handler)
    assert code == status
    assert capsys.readouterr().err == "lazarus: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.fifo"]
    assert signal.getsignal(signal.SIGTERM) == before


def fill_cache(folder: Path) -> None:
    collect(read_model_info(str(folder)), ["2+2=", "47*47="], CaptureRequest(layers=(1,)),
            ModelSettings())


def test_cache_info_then_clear(llama_dir, capsys):
    fill_cache(llama_dir)
    assert main(["cache", "info"]) == 0
    info = capsys.readouterr()
    rows = sorted((cache.cache_dir() / cache.FORMAT).rglob("*.npy"))
    lines = info.out.splitlines()
    assert lines[0] == f"cache folder: {cache.cache_dir()}"
    assert lines[1].startswith(f"{len(rows)} cached rows, ")
    assert len(rows) == 2
    assert f"  {llama_dir}: 2 rows, " in info.out
    assert lines[-1].startswith("corpus scans (introspect examples): 0 work folders, 0 B in ")
    assert info.err == ""
    assert main(["cache", "clear"]) == 0
    cleared = capsys.readouterr()
    assert cleared.out.startswith("removed 2 cached rows (")
    assert list((cache.cache_dir()).rglob("*.npy")) == []
    assert main(["cache", "info"]) == 0
    assert "0 cached rows, 0 B" in capsys.readouterr().out


def test_cache_links_are_noted_and_never_followed(llama_dir, tmp_path, capsys):
    fill_cache(llama_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.npy").write_bytes(b"not ours")
    store = next((cache.cache_dir() / cache.FORMAT).iterdir())
    (store / "link.npy").symlink_to(outside / "keep.npy")
    assert main(["cache", "clear"]) == 0
    cleared = capsys.readouterr()
    assert cleared.out.startswith("removed 2 cached rows")
    assert cleared.err == ("lazarus: removed 1 symbolic link from the cache without following "
                           "them: what they point to is left as it is\n")
    assert (outside / "keep.npy").read_bytes() == b"not ours"
    root = cache.cache_dir()
    (root / "examples").symlink_to(outside, target_is_directory=True)
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().err == (
        f"lazarus: not counted: {root / 'examples'}, a symbolic link to {outside} ('cache "
        "info' never follows links)\n")
