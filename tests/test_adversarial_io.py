"""Adversarial input and output: nothing silently wrong, nothing lost (issue 8).

Outputs never replace inputs; closed pipes, full disks, SIGTERM and SIGKILL leave no traceback
and no stray file; non-UTF-8 arguments are one line; text from files never reaches the terminal
raw. Signals and pipes need a real process, so those tests run the console script; the rest call
the real entry point in-process. (Hostile direction files: test_adversarial_npz.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lazarus.cli.main import main
from lazarus.cli.signals import Terminated, sigterm_raises
from lazarus.io.directions import Direction, save_direction
from lazarus.io.files import write_atomically

MISSING_MODEL = "/nonexistent/model"  # a check that fires before loading never names it
_SCRIPT = Path(sys.executable).with_name("lazarus")
LAZARUS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lazarus.cli.main"]


def fail_in_process(capsys, *argv: str) -> str:
    """Run the CLI expecting a user error: exit 2, nothing on stdout, one stderr line."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lazarus: error: ")
    return lines[0]


def neurons(model: str | Path, *extra: str | Path) -> list[str]:
    return ["introspect", "neurons", "-m", str(model), *[str(e) for e in extra]]


def probe(model: str | Path, *extra: str | Path) -> list[str]:
    return ["introspect", "probe", "-m", str(model), *[str(e) for e in extra]]


def write_direction(path: Path, **texts: str) -> Path:
    vector = np.linspace(-1.0, 1.0, 64).astype(np.float32)
    save_direction(str(path), Direction(direction=vector, **texts))
    return path


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- 1. an output never replaces an input -------------------------------------------------------


def _inputs(tmp_path: Path) -> dict[str, Path]:
    files = {"prompts": tmp_path / "prompts.txt", "labels": tmp_path / "labels.txt",
             "a": tmp_path / "a.txt", "b": tmp_path / "b.txt", "test": tmp_path / "test.txt"}
    for name, path in files.items():
        path.write_text(f"{name} one\n{name} two\n")
    files["direction"] = write_direction(tmp_path / "d.npz")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    files["config"] = model / "config.json"
    (tmp_path / "hard.txt").hardlink_to(files["labels"])
    (tmp_path / "link.txt").symlink_to(files["prompts"])
    return files


OVERLAPS = {
    # name: (command, arguments with {placeholders}, the output option, the input option)
    "-o onto --from-direction": (
        neurons, ["-l", "0", "-p", "x", "--from-direction", "{direction}", "-o", "{direction}"],
        "--output", "--from-direction"),
    "-o onto @prompts": (neurons, ["-l", "0", "-p", "@{prompts}", "-n", "1", "-o", "{prompts}"],
                         "--output", "--prompts"),
    "-o onto a symlink to @prompts": (
        neurons, ["-l", "0", "-p", "@{prompts}", "-n", "1", "-o", "{link}"],
        "--output", "--prompts"),
    "-o onto a hard link to @labels": (
        neurons, ["-l", "0", "-p", "x|y", "--labels", "@{labels}", "-n", "1", "-o", "{hard}"],
        "--output", "--labels"),
    "--save-direction onto @class-a": (
        probe, ["--class-a", "@{a}", "--class-b", "u|v", "--save-direction", "{a}"],
        "--save-direction", "--class-a"),
    "--save-direction onto @class-b": (
        probe, ["--class-a", "u|v", "--class-b", "@{b}", "--save-direction", "{b}"],
        "--save-direction", "--class-b"),
    "--save-direction onto @test": (
        probe, ["--class-a", "u|v", "--class-b", "w|z", "-t", "@{test}",
                "--save-direction", "{test}"], "--save-direction", "--test"),
    "-o onto the model's config.json": (
        neurons, ["-l", "0", "-p", "x", "-n", "1", "-o", "{config}"], "--output", "--model"),
}


@pytest.mark.parametrize("case", OVERLAPS)
def test_an_output_onto_an_input_is_refused_before_any_work(capsys, tmp_path, case):
    command, template, output, source = OVERLAPS[case]
    files = _inputs(tmp_path)
    names = {**{k: str(v) for k, v in files.items()}, "link": str(tmp_path / "link.txt"),
             "hard": str(tmp_path / "hard.txt")}
    before = {path: path.read_bytes() for path in files.values()}
    model = files["config"].parent if source == "--model" else MISSING_MODEL
    message = fail_in_process(capsys, *command(model, *[a.format(**names) for a in template]))
    assert f"the same file as the {source} input" in message
    assert f"give {output} another path" in message
    assert {path: path.read_bytes() for path in files.values()} == before
    assert temp_files(tmp_path) == []


def test_other_files_in_the_model_folder_may_be_replaced(capsys, tmp_path, llama_dir):
    model = shutil.copytree(llama_dir, tmp_path / "model")
    results = model / "results.json"  # from an earlier run: not something the model reads
    results.write_text("old")
    assert main(neurons(model, "-l", "0", "-p", "x", "-n", "1", "-o", results)) == 0
    assert json.loads(results.read_text())["neurons"] == [1]
    capsys.readouterr()
    message = fail_in_process(capsys, *neurons(model, "-l", "0", "-p", "x", "-n", "1", "-o",
                                               model / "model.safetensors"))
    assert "the same file as the --model input" in message


def test_save_direction_and_output_hard_linked_are_refused(capsys, tmp_path):
    first = tmp_path / "out.json"
    first.write_text("keep")
    (tmp_path / "other.json").hardlink_to(first)
    message = fail_in_process(capsys, *probe(MISSING_MODEL, "--class-a", "a|b", "--class-b",
                                             "c|d", "--save-direction", first, "-o",
                                             tmp_path / "other.json"))
    assert message == ("lazarus: error: --save-direction and --output name the same file "
                       "(give them different names)")
    assert first.read_text() == "keep"


# --- 2. pipes, full disks, signals, killed runs -------------------------------------------------


@pytest.fixture
def warm_run(llama_dir, capsys) -> list[str]:
    """Arguments of a neurons run whose rows are already cached, so a process answers fast."""
    arguments = neurons(llama_dir, "-l", "1", "-p", "2+2=|47*47=", "-n", "1,5")
    assert main(arguments) == 0
    capsys.readouterr()
    return arguments


def _cache_note(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "from the activation cache" not in line]


@pytest.mark.integration
def test_a_closed_pipe_ends_the_run_quietly_and_keeps_the_output_file(warm_run, tmp_path):
    output = tmp_path / "out.json"
    process = subprocess.Popen([*LAZARUS, *warm_run, "-o", str(output)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # like `| head -0`: gone before the first line is written
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert _cache_note(stderr) == []  # no traceback, no "Exception ignored", no error line
    assert json.loads(output.read_text())["neurons"] == [1, 5]


@pytest.mark.integration
def test_stdout_on_a_full_device_is_one_line(warm_run):
    with open("/dev/full", "w") as full:
        done = subprocess.run([*LAZARUS, *warm_run], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert done.returncode == 2
    assert _cache_note(done.stderr) == [
        "lazarus: error: cannot write to standard output: No space left on device (free some "
        "space, or send the output elsewhere)"]


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str):
    """A tmpfs of `size` mounted on `folder` while inside, or a skip where that is not allowed."""
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) to make a small tmpfs")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte, or a skip where mounting is not allowed."""
    with small_tmpfs(tmp_path / "small", "64k") as folder:
        filler = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(filler, bytes(4096))
        os.close(filler)
        yield folder


def test_a_full_disk_while_writing_output_is_one_line_and_leaves_nothing(
        capsys, full_disk, llama_dir):
    output = full_disk / "out.json"
    message = fail_in_process(capsys, *neurons(llama_dir, "-l", "1", "-p", "2+2=|47*47=",
                                               "-n", "1,5", "-o", output))
    assert message == (f"lazarus: error: cannot write {output}: No space left on device "
                       "(nothing was written; free some space or choose another folder)")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_a_full_disk_while_saving_a_direction_is_one_line_and_leaves_nothing(
        capsys, full_disk, llama_dir):
    saved = full_disk / "d.npz"
    message = fail_in_process(capsys, *probe(llama_dir, "--class-a", "47*47=|67*83=",
                                             "--class-b", "2+2=|5+5=", "-l", "1",
                                             "--save-direction", saved, "--force-save"))
    assert message == (f"lazarus: error: cannot write {saved}: No space left on device "
                       "(nothing was written; free some space or choose another folder)")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def _blocked_on_fifo(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """A run that reads its prompts from a FIFO, held inside the read (we never write)."""
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen([*LAZARUS, *neurons(MISSING_MODEL, "-l", "0", "-p", f"@{fifo}",
                                                   "-n", "1", *extra)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:  # a writer can open a FIFO without blocking only once its reader has it open
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            return process, writer
        except OSError:
            assert time.monotonic() < deadline, "the run never opened its prompts"
            time.sleep(0.02)


@pytest.mark.integration
@pytest.mark.parametrize("sent,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_are_one_line(tmp_path, sent, status):
    output = tmp_path / "out.json"
    process, writer = _blocked_on_fifo(tmp_path, "-o", str(output))
    try:
        time.sleep(0.2)  # let it get from open() into read()
        process.send_signal(sent)
        out, err = process.communicate(timeout=30)
    finally:
        os.close(writer)
    assert process.returncode == status
    assert out == ""
    assert err == "lazarus: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.fifo"]


def test_sigterm_in_the_middle_of_a_write_leaves_no_file(tmp_path):
    output = tmp_path / "out.json"

    def write(temp: Path) -> None:
        temp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, to the real handler
        time.sleep(10)  # the handler raises in this frame before the sleep ends

    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    with sigterm_raises(), pytest.raises(Terminated):
        write_atomically(str(output), write)
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before  # restored afterwards


@pytest.mark.integration
def test_a_killed_runs_temporary_file_is_removed_by_the_next_write(capsys, tmp_path, warm_run):
    output = tmp_path / "out.json"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from lazarus.io.files import replace_atomically\n"
        "def write(temp):\n"
        "    temp.write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "replace_atomically(Path(sys.argv[1]), write)\n"), str(output)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    [leftover] = temp_files(tmp_path)
    assert leftover.startswith(".out.json.")  # and the dead writer's pid is in the name
    two_minutes_ago = time.time() - 120
    os.utime(tmp_path / leftover, (two_minutes_ago, two_minutes_ago))
    ours = tmp_path / f".out.json.{os.getpid()}.abcdefgh.tmp"  # a live run, writing slowly
    other_target = tmp_path / f".other.json.{leftover.split('.')[3]}.abcdefgh.tmp"
    not_ours = tmp_path / ".out.json.notes.tmp"
    for path in (ours, other_target, not_ours):
        path.write_text("keep")
        os.utime(path, (two_minutes_ago, two_minutes_ago))
    assert main([*warm_run, "-o", str(output)]) == 0
    assert json.loads(output.read_text())["neurons"] == [1, 5]
    assert temp_files(tmp_path) == sorted(p.name for p in (ours, other_target, not_ours))


# --- 3. arguments that are not UTF-8 ------------------------------------------------------------


BAD = "x\udcffy"  # how Python hands over the byte 0xff of a non-UTF-8 argument on Linux
NOT_UTF8 = {
    "--prompts": neurons(MISSING_MODEL, "-l", "0", "-p", f"2+2=|{BAD}", "-n", "1"),
    "--labels": neurons(MISSING_MODEL, "-l", "0", "-p", "a|b", "--labels", f"u|{BAD}", "-n", "1"),
    "--neurons": neurons(MISSING_MODEL, "-l", "0", "-p", "a", "-n", f"1,{BAD}"),
    "--output": neurons(MISSING_MODEL, "-l", "0", "-p", "a", "-n", "1", "-o", f"{BAD}.json"),
    "--from-direction": neurons(MISSING_MODEL, "-l", "0", "-p", "a", "--from-direction", BAD),
    "--model": neurons(BAD, "-l", "0", "-p", "a", "-n", "1"),
    "--label-a": probe(MISSING_MODEL, "--class-a", "a|b", "--class-b", "c|d", "--label-a", BAD),
    "--class-b": probe(MISSING_MODEL, "--class-a", "a|b", "--class-b", f"c|{BAD}"),
    "--test": probe(MISSING_MODEL, "--class-a", "a|b", "--class-b", "c|d", "-t", BAD),
    "--save-direction": probe(MISSING_MODEL, "--class-a", "a|b", "--class-b", "c|d",
                              "--save-direction", f"{BAD}.npz"),
}


@pytest.mark.parametrize("option", NOT_UTF8)
def test_an_argument_that_is_not_utf8_is_one_line_naming_it(capsys, option):
    message = fail_in_process(capsys, *NOT_UTF8[option])
    assert message.startswith(f"lazarus: error: {option} is not valid UTF-8 (character ")


@pytest.mark.integration
def test_a_non_utf8_prompt_from_a_real_command_line(tmp_path):
    done = subprocess.run([*LAZARUS, "introspect", "neurons", "-m", MISSING_MODEL, "-l", "0",
                           "-p", b"2+2=\xff", "-n", "1"], capture_output=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr == (b"lazarus: error: --prompts is not valid UTF-8 (character 5 is a "
                           b"byte of another encoding; give UTF-8 text, or rename the file to "
                           b"a UTF-8 name)\n")


# --- 4. text from files never reaches the terminal raw ------------------------------------------


ESC = "\x1b"


def test_escape_sequences_from_files_are_shown_escaped(capsys, tmp_path, llama_dir):
    direction = write_direction(tmp_path / "d.npz", layer=3, label_positive=f"{ESC}[31mred",
                                label_negative="bell\x07", model_id=f"evil{ESC}]0;title\x07",
                                method="logistic", ranking=f"{ESC}[2Jwiped",
                                importance=np.linspace(0, 1, 64).astype(np.float32))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{ESC}[1mbold\nplain é 漢字\n", encoding="utf-8")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"x{ESC}[5m\ny\u202e\n", encoding="utf-8")
    output = tmp_path / "out.json"
    code = main(neurons(llama_dir, "-l", "1", "-p", f"@{prompts}", "--labels", f"@{labels}",
                        "--from-direction", direction, "--top-k", "3", "-o", output))
    captured = capsys.readouterr()
    assert code == 0
    for stream in (captured.out, captured.err):
        assert ESC not in stream
        assert "\x07" not in stream
        assert "\u202e" not in stream
    assert "\\x1b[1mbold" in captured.out  # the prompt, escaped
    assert "plain é 漢字" in captured.out  # printable Unicode stays as it is
    assert "x\\x1b[5m" in captured.out  # a label
    assert "y\\u202e" in captured.out  # a bidi override in a label
    assert "more like \\x1b[31mred" in captured.out  # the file's class names
    assert "by \\x1b[2Jwiped" in captured.out  # the file's ranking
    assert f"was made for evil\\x1b]0;title\\x07, you are analysing {llama_dir}" in captured.err
    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["prompts"] == [f"{ESC}[1mbold", "plain é 漢字"]  # JSON keeps the originals
    assert document["labels"] == [f"x{ESC}[5m", "y\u202e"]


def test_an_error_quoting_a_file_stays_one_escaped_line(capsys, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **{f"{ESC}[2J\nkey": np.ones(3)})
    message = fail_in_process(capsys, *neurons(MISSING_MODEL, "-l", "0", "-p", "x",
                                               "--from-direction", path))
    assert message == (f"lazarus: error: {path} has no 'direction' array (keys: \\x1b[2J\\nkey; "
                       "save one under the key 'direction')")


def test_probe_class_names_are_escaped(capsys, llama_dir):
    code = main(probe(llama_dir, "--class-a", "47*47=|67*83=", "--class-b", "2+2=|5+5=",
                      "-l", "1", "--label-a", f"hard{ESC}[8m", "-t", f"{ESC}]52;c;evil\x07"))
    captured = capsys.readouterr()
    assert code == 3  # 2 + 2 prompts: ran fine, but no layer can beat chance
    assert ESC not in captured.out
    assert "hard\\x1b[8m" in captured.out
    assert "\\x1b]52;c;ev" in captured.out  # the test prompt, cut to the prompt column


@pytest.fixture
def big_report(llama_dir, capsys) -> list[str]:
    """A cached run whose report (every token, every neuron) is far larger than a pipe's buffer
    or one write to a nearly full disk."""
    prompts = "|".join(f"prompt number {i} with some tokens" for i in range(40))
    arguments = neurons(llama_dir, "-l", "0,1", "-p", prompts, "--position", "all", "--top-k",
                        "64")
    assert main(arguments) == 0
    size = len(capsys.readouterr().out.encode())
    assert size > 200_000
    return arguments


@pytest.mark.integration
def test_a_large_report_on_a_small_disk_is_never_cut_silently(big_report, tmp_path):
    with small_tmpfs(tmp_path / "small", "100k") as folder, \
            open(folder / "report.txt", "w") as report:
        done = subprocess.run([*LAZARUS, *big_report], stdout=report, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    assert done.returncode == 2
    assert _cache_note(done.stderr) == [
        "lazarus: error: cannot write to standard output: No space left on device (free some "
        "space, or send the output elsewhere)"]


@pytest.mark.integration
def test_a_large_report_into_head_ends_as_a_closed_pipe(big_report):
    process = subprocess.Popen([*LAZARUS, *big_report], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    assert first == "(site: resid_post, position: all)\n"
    assert process.wait(timeout=120) == 141
    assert _cache_note(stderr) == []


@pytest.mark.integration
@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["introspect", "neurons", "--help"]])
def test_help_on_a_full_device_is_one_line(argv):
    with open("/dev/full", "w") as full:
        done = subprocess.run([*LAZARUS, *argv], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "lazarus: error: cannot write to standard output: No space left on device (free some "
        "space, or send the output elsewhere)"]


@pytest.mark.integration
@pytest.mark.parametrize("argv", [["--help"], ["introspect", "neurons", "-m", "x", "-l", "0",
                                               "-p", "a"]])
def test_a_closed_stdout_is_one_line(argv):
    done = subprocess.run([*LAZARUS, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=60, preexec_fn=lambda: os.close(1))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "lazarus: error: standard output is closed (run with it open, e.g. > /dev/null)"]
