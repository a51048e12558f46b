"""Text tables are aligned in terminal cells, not characters: a wide (East Asian) character
takes two cells and a combining mark none. Widths here are counted by hand from Unicode's
tables (日, 本: W; U+0301 COMBINING ACUTE ACCENT: a mark drawn over the letter before it)."""

from __future__ import annotations

import numpy as np

from lazarus.render.causal import render_steer
from lazarus.results.steer import SteerResult, SteerRun
from lazarus.text import display_width, fit_cell, pad

ACUTE = "e\u0301"  # é written as e and a combining mark: one cell


def bar_columns(line: str) -> list[int]:
    """The terminal columns of the line's '|' separators."""
    columns, cell = [], 0
    for ch in line:
        if ch == "|":
            columns.append(cell)
        cell += display_width(ch)
    return columns


def test_widths_counted_by_hand():
    assert display_width("日本") == 4
    assert display_width(ACUTE) == 1
    assert display_width(f"a{ACUTE}日") == 4


def test_cells_are_padded_and_cut_to_display_width():
    assert fit_cell("日本", 6) == "日本  "
    assert fit_cell(f"{ACUTE}t", 4) == f"{ACUTE}t  "
    assert fit_cell("日本日本", 5) == "日本…"  # 2 + 2 + 1 cells
    assert pad("日本", 6) == "日本  "
    assert pad("日本", 6, right=True) == "  日本"
    assert pad(ACUTE, 3, right=True) == f"  {ACUTE}"


def test_the_steer_table_lines_up_with_wide_and_combining_token_names():
    tokens = ("日本", f"{ACUTE}t", "5")
    runs = tuple(SteerRun(c, ("日本語です" if c else "5",), ((-1.0, -2.0, -3.0),),
                          ((float(c), -float(c), 0.5 * c),)) for c in (0.0, 4.0, -12.5))
    result = SteerResult(model_id="m", prompts=("2+3=",), layer=1, site="resid_post",
                         source="neurons 1", scale_kind="absolute", scale=1.0,
                         vector=np.ones(2), tokens=tokens, max_tokens=1, temperature=0.0,
                         seed=0, runs=runs, activation_norm=2.0, norm_tokens=4)
    text = render_steer(result)
    table = [line for line in text.splitlines() if line.count("|") == 5]
    assert len(table) == 4  # the header and one row per coefficient
    assert "Δlog p(日本)" in table[0]
    assert f"Δlog p({ACUTE}t)" in table[0]
    assert {tuple(bar_columns(line)) for line in table} == {tuple(bar_columns(table[0]))}
    # the values end where their header cells end
    assert {display_width(line) for line in table} == {display_width(table[0])}
