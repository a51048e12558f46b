"""The command's quick exit: exit handlers run, buffered output arrives, the status is kept,
and a thread Python would wait for is waited for.

Oracle: a child process's stdout and exit status, as a normal `sys.exit` would give them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=60)


def test_exit_handlers_run_buffered_output_arrives_and_the_status_is_kept():
    done = run_child(
        "import atexit, sys\n"
        "from lazarus.cli.quick_exit import quick_exit\n"
        "atexit.register(lambda: print('second handler'))\n"
        "atexit.register(lambda: print('first handler'))\n"
        "sys.stdout.write('x' * 100_000)\n"  # buffered: stdout is a pipe
        "sys.stderr.write('note')\n"
        "quick_exit(3)\n"
        "print('never')\n")
    assert done.returncode == 3
    assert done.stdout == "x" * 100_000 + "first handler\nsecond handler\n"
    assert done.stderr == "note"


def test_a_running_non_daemon_thread_is_waited_for():
    done = run_child(
        "import threading, time\n"
        "from lazarus.cli.quick_exit import quick_exit\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    print('thread done', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "quick_exit(4)\n")
    assert done.returncode == 4
    assert done.stdout == "thread done\n"


def test_the_module_entry_exits_with_main_s_status():
    done = subprocess.run([sys.executable, "-m", "lazarus", "introspect", "neurons"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1


def test_ctrl_c_while_the_cli_is_still_imported_is_one_line_and_status_130():
    """A Ctrl-C that lands while `lazarus.cli.main` is being imported (the first tenth of a
    second of a command): the same line and status as one that lands later."""
    done = run_child(
        "import sys\n"
        "class Interrupting:\n"  # the import of lazarus.cli.main is where the Ctrl-C lands
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lazarus.cli.main':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupting())\n"
        "from lazarus.cli import entry\n"
        "entry()\n")
    assert done.returncode == 130
    assert done.stderr == "lazarus: interrupted\n"
    assert done.stdout == ""
