"""What a computation says on the server's stderr goes to its own client: each routed thread's
writes and warnings to its own sink while other threads write to the log; a warning relayed to
the client is shown as Python shows it in process, its filters deciding (once per place by
default, every time with -W always); an unknown warning class stands in under its ancestor."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import warnings

import pytest

from lazarus.serve import capture


def test_each_routed_thread_hears_only_itself(capsys):
    handler = logging.StreamHandler()  # made before, as transformers' is: it holds stderr
    handler.setFormatter(logging.Formatter("[lz-test] %(message)s"))
    logger = logging.getLogger("lz-test-capture")
    logger.addHandler(handler)
    logger.propagate = False
    heard: dict[int, list] = {1: [], 2: []}
    both = threading.Barrier(2)

    def work(n: int) -> None:
        with capture.routed(lambda kind, value: heard[n].append((kind, value))):
            both.wait()
            for i in range(20):
                print(f"thread {n} line {i}", file=sys.stderr)
            logger.error("thread %d", n)
            warnings.warn(f"thread {n} warns", UserWarning, stacklevel=1)
            with capture.unrouted():
                print(f"thread {n} to the log", file=sys.stderr)

    try:
        with capture.installed():
            threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2)]
            for thread in threads:
                thread.start()
            print("the server's own line", file=sys.stderr)
            for thread in threads:
                thread.join()
    finally:
        logger.removeHandler(handler)
    log = capsys.readouterr().err
    assert sys.stderr is not None and not isinstance(sys.stderr, capture.Router)
    assert handler.stream is sys.stderr  # given back
    assert sorted(log.splitlines()) == ["the server's own line", "thread 1 to the log",
                                        "thread 2 to the log"]
    for n in (1, 2):
        text = "".join(value for kind, value in heard[n] if kind == "stderr")
        assert text == "".join(f"thread {n} line {i}\n" for i in range(20)) \
            + f"[lz-test] thread {n}\n"
        (warning,) = [value for kind, value in heard[n] if kind == "warning"]
        assert warning["message"] == f"thread {n} warns"
        assert warning["category"] == ["builtins:UserWarning", "builtins:Warning"]
        assert warning["filename"] == __file__
        assert warning["module"] == __name__


SCRIPT = """
import sys, warnings
from lazarus.serve import capture

def careful():
    warnings.warn("careful: this is a test", FutureWarning)

if sys.argv[1] == "in process":
    careful(); careful()
else:  # the server's side says both, the client's side shows them as its filters decide
    said = []
    with capture.installed(), capture.routed(lambda kind, parts: said.append(parts)):
        careful(); careful()
    for parts in said:
        capture.warn_again(parts)
"""


@pytest.mark.parametrize("flags", [[], ["-W", "always"]])
def test_a_relayed_warning_is_shown_as_in_process(tmp_path, flags):
    script = tmp_path / "warns.py"
    script.write_text(SCRIPT)
    runs = {how: subprocess.run([sys.executable, *flags, str(script), how],
                                capture_output=True, text=True, timeout=120)
            for how in ("in process", "relayed")}
    assert runs["relayed"].stderr == runs["in process"].stderr
    line = f"{script}:6: FutureWarning: careful: this is a test\n"
    assert runs["in process"].stderr.count(line) == (2 if flags else 1)


def test_an_unknown_warning_class_stands_in_under_its_ancestor():
    lineage = ["somewhere.unimported:OddWarning", "builtins:FutureWarning",
               "builtins:DeprecationWarning", "builtins:Warning"]
    odd = capture._category(lineage)
    assert odd.__name__ == "OddWarning"
    assert odd.__module__ == "somewhere.unimported"
    assert odd.__mro__[1] is FutureWarning
    assert capture._category(lineage) is odd  # one class, so filters and registries agree
    assert capture._category(["builtins:RuntimeWarning", "builtins:Warning"]) is RuntimeWarning
    with pytest.raises(ValueError):
        capture.warn_again({"message": "x", "category": [], "filename": "f", "lineno": 1,
                            "module": "m"})
