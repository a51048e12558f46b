"""The one colour scheme (`lazarus.results.palette`): the same colours as matplotlib's RdBu_r,
centred at 0, blue below and red above, and the nearest xterm colours for a terminal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lazarus.results import palette


def test_the_scale_is_matplotlibs_rdbu_r():
    colormaps = pytest.importorskip("matplotlib").colormaps
    scale = colormaps[palette.CMAP]
    for value in np.linspace(-1.0, 1.0, 201):
        ours = np.array(palette.rgb(float(value)))
        theirs = 255 * np.array(scale((value + 1) / 2)[:3])  # matplotlib's 256-step table
        assert np.abs(ours - theirs).max() <= 4.0, value


def test_centred_at_zero_blue_below_red_above_and_clipped():
    white = palette.rgb(0.0, 5.0)
    assert min(white) >= 240  # near white at 0
    deep_blue, deep_red = palette.rgb(-5.0, 5.0), palette.rgb(5.0, 5.0)
    assert deep_blue[2] > deep_blue[0] and deep_red[0] > deep_red[2]
    assert palette.rgb(-50.0, 5.0) == deep_blue  # beyond the limit: the end colour
    assert palette.rgb(2.0, 0.0) == white  # no scale: everything at 0
    assert palette.rgb(math.nan) == palette.MISSING
    assert palette.hex_colour(1.0) == "#67001f"  # ColorBrewer RdBu's darkest red
    assert palette.hex_colour(-1.0) == "#053061"
    assert palette.ink(1.0) == "#ffffff" and palette.ink(0.1) == "#000000"


def test_xterm_codes_are_the_nearest_of_the_256():
    assert palette.ansi256((255, 0, 0)) == 196  # exact cube colours map to their own code
    assert palette.ansi256((0, 0, 255)) == 21
    assert palette.ansi256((128, 128, 128)) == 244  # grey ramp: 8 + 10 * 12
    code = palette.ansi256(palette.rgb(-1.0))
    level = code - 16  # the deepest blue stays blue (no red, more blue than green)
    r, g, b = level // 36, level // 6 % 6, level % 6
    assert r == 0 and b > g
    assert palette.background(0.0) == "\x1b[48;5;231m"
    assert palette.foreground(1.0, truecolor=True) == "\x1b[38;2;103;0;31m"
    assert palette.shaded("x", -1.0).endswith("x" + palette.RESET)


def test_terminal_renderers_use_the_palette_and_plain_output_is_unchanged():
    from lazarus.render.examples import render_neuron
    from lazarus.results.examples import Example, NeuronExamples

    def example(value: float, token: str) -> Example:
        return Example(value=value, doc=0, window=0, token=1, before="a ", text=token,
                       after=" b")

    neuron = NeuronExamples(neuron=3, count=4, mean=0.0, std=1.0, fraction_positive=0.5,
                            min=-2.0, max=4.0, quantiles={"p50": 0.0},
                            histogram_edges=(-2.0, 4.0), histogram_counts=(4,),
                            top=(example(4.0, "hi"), example(1.0, "mid")),
                            bottom=(example(-2.0, "lo"),))
    plain = "\n".join(render_neuron(neuron))
    assert "a [hi] b" in plain and "\x1b" not in plain
    coloured = "\n".join(render_neuron(neuron, color=True))
    # 4 is the neuron's largest |value|: deepest red, white ink; -2 is half-way to blue
    assert "a \x1b[48;5;52m\x1b[38;5;231mhi\x1b[0m b" in coloured  # #67001f -> xterm 52
    lo_line = next(line for line in coloured.splitlines() if "lo" in line)
    code = int(lo_line.split("\x1b[48;5;")[1].split("m")[0]) - 16
    assert code // 36 < code % 6  # a blue background: less red than blue in the xterm cube
