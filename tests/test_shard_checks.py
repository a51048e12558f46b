"""`analyses.shard_checks` and the windows files of `analyses.shards`, on hand-made windows and
a summary of known values: a shard's summary is accepted exactly when it could be this scan's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lazarus.analyses.scan_summary import summarize
from lazarus.analyses.shard_checks import scored_tokens, shard_problem
from lazarus.analyses.shards import read_windows, windows_path, write_windows
from lazarus.io.corpus import Window
from lazarus.stats.sketch import Summary

# Two documents; the second window of document 0 overlaps the first: its first 3 tokens were
# scored there. Scored: 5 + (6 - 3) + 4 = 12 tokens.
WINDOWS = [Window(0, 0, 0, (11, 12, 13, 14, 15), 0),
           Window(0, 1, 2, (13, 14, 15, 16, 17, 18), 3),
           Window(1, 0, 0, (21, 22, 23, 24), 0)]
SCORED_IDS = [(0, 0, t) for t in range(5)] + [(0, 1, t) for t in range(3, 6)] \
    + [(1, 0, t) for t in range(4)]
KEEP = 3


@pytest.fixture
def summary() -> Summary:
    values = np.random.default_rng(0).normal(size=(len(SCORED_IDS), 4)).astype(np.float32)
    return summarize(torch.from_numpy(values), np.array(SCORED_IDS, np.int64), KEEP)


def test_scored_tokens_count_each_token_once():
    assert scored_tokens(WINDOWS) == len(SCORED_IDS) == 12
    assert scored_tokens([]) == 0


def test_this_scan_s_summary_has_no_problem(summary):
    assert shard_problem(summary, 12, 4, WINDOWS) is None
    assert shard_problem(summary, 12, None) is None


def spoiled(summary: Summary, **changes) -> Summary:
    arrays = {k: v.copy() for k, v in summary.to_arrays().items()}
    for key, change in changes.items():
        change(arrays[key])
    return Summary.from_arrays(arrays, KEEP)


def test_another_width_or_count_is_named(summary):
    assert shard_problem(summary, 12, 5) == "it holds 4 neurons where this scan reads 5"
    assert shard_problem(summary, 13, 4) == "it counts 12 tokens where its windows score 13"


@pytest.mark.parametrize(("changes", "problem"), [
    ({"mean": lambda a: a.__setitem__(1, np.nan)}, "it holds NaN or infinite values"),
    ({"top": lambda a: a.__setitem__((0, 0), np.inf)}, "it holds NaN or infinite values"),
    ({"m2": lambda a: a.__setitem__(2, -1.0)}, "its counts disagree with each other"),
    ({"positive": lambda a: a.__setitem__(0, 13)}, "its counts disagree with each other"),
    ({"sketch": lambda a: a.__setitem__((3, 0), a[3, 0] + 1)},
     "its counts disagree with each other"),
    ({"top": lambda a: a.__setitem__((1, slice(None)), a[1, ::-1].copy())},
     "its top and bottom values are out of order"),
    ({"bottom": lambda a: a.__setitem__((1, slice(None)), a[1, ::-1].copy())},
     "its top and bottom values are out of order"),
    ({"top_ids": lambda a: a.__setitem__((0, 0), (0, 1, 1))},  # window 1 scores from token 3
     "its examples name tokens its windows do not score"),
    ({"bottom_ids": lambda a: a.__setitem__((2, 1), (2, 0, 0))},  # no document 2
     "its examples name tokens its windows do not score"),
])
def test_each_kind_of_forgery_is_named(summary, changes, problem):
    assert shard_problem(spoiled(summary, **changes), 12, 4, WINDOWS) == problem


def test_windows_files_round_trip(tmp_path):
    write_windows(tmp_path, 7, WINDOWS)
    assert windows_path(tmp_path, 7) == tmp_path / "windows" / "windows-000007.npz"
    assert read_windows(tmp_path, 7) == WINDOWS


def test_a_windows_file_that_is_not_one_is_a_value_error(tmp_path):
    write_windows(tmp_path, 1, WINDOWS)
    path = windows_path(tmp_path, 1)
    with np.load(path) as arrays:
        where, tokens = arrays["where"], arrays["tokens"]
    np.savez(path, where=where, tokens=tokens[:-1])  # one token fewer than the windows hold
    with pytest.raises(ValueError, match="windows of shard 1: not a shard's windows"):
        read_windows(tmp_path, 1)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="^windows of shard 1: "):
        read_windows(tmp_path, 1)
