"""`examples --plot` (`results.plot_examples`): each neuron's bars are the bins and counts of the
examples JSON, its quantile lines the JSON's quantiles, the files are valid PNG / SVG of the
expected size, and an error leaves no file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from plot_files import artist, png_size, run, svg_root

import lazarus
from lazarus.results.plot_examples import MAX_PANELS, examples_figure, plot_examples

matplotlib = pytest.importorskip("matplotlib")

CORPUS = Path(__file__).parent / "data" / "corpus.txt"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text("\n".join(CORPUS.read_text().splitlines()[:30]) + "\n")
    return path


@pytest.fixture(scope="module")
def scanned(llama_dir, corpus, tmp_path_factory):
    model = lazarus.load(str(llama_dir), device="cpu", use_cache=False)
    return model.examples(str(corpus), 1, neurons=[3, 9, 20], window=10, examples=2,
                          work_dir=str(tmp_path_factory.mktemp("work")))


def _bars(axes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left edges, widths and heights of the histogram's bars."""
    patches = list(axes.containers[0])
    return (np.array([p.get_x() for p in patches]), np.array([p.get_width() for p in patches]),
            np.array([p.get_height() for p in patches]))


def test_bars_and_quantiles_are_the_json_numbers(scanned):
    document = scanned.to_json()
    figure = examples_figure(scanned)
    panels = [axes for axes in figure.axes if axes.containers]
    assert len(panels) == 3
    for axes, neuron in zip(panels, document["neurons"], strict=True):
        left, width, height = _bars(axes)
        edges = np.array(neuron["histogram_edges"])
        np.testing.assert_array_equal(height, neuron["histogram_counts"])
        assert height.sum() == neuron["count"] == document["tokens"]
        np.testing.assert_allclose(left, edges[:-1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(left + width, edges[1:], rtol=0, atol=1e-12)
        for name, value in neuron["quantiles"].items():
            assert list(artist(axes, f"quantile-{name}").get_xdata()) == [value, value]
        assert list(artist(axes, "mean").get_xdata()) == [neuron["mean"]] * 2
        labels = [artist(axes, f"quantile-label-{name}") for name in neuron["quantiles"]]
        assert [t.get_text() for t in labels] == list(neuron["quantiles"])
        assert [t.get_position()[0] for t in labels] == list(neuron["quantiles"].values())
        heights = [t.get_position()[1] for t in labels]  # neighbours on alternate tiers
        assert all(a != b for a, b in zip(heights, heights[1:], strict=False))
        assert all(t.get_bbox_patch().get_facecolor()[:3] == (1, 1, 1) for t in labels)
        assert axes.get_title().startswith(f"N{neuron['neuron']}: mean ")


def test_a_constant_neuron_still_draws_its_count(scanned):
    only = scanned.neurons[0]
    flat = type(only)(**{**only.__dict__, "histogram_edges": (2.0,) * 11,
                         "histogram_counts": (7, *([0] * 9)), "quantiles": {"p50": 2.0}})
    figure = examples_figure(type(scanned)(**{**scanned.__dict__, "neurons": (flat,)}))
    (axes,) = figure.axes
    left, width, height = _bars(axes)
    assert list(height) == [7] + [0] * 9
    assert np.all(width > 0) and left[0] < 2.0 < left[-1] + width[-1]


def test_only_the_first_panels_are_drawn_and_the_title_says_so(scanned):
    many = type(scanned)(**{**scanned.__dict__, "neurons": scanned.neurons * 7})  # 21
    figure = examples_figure(many)
    assert len([axes for axes in figure.axes if axes.containers]) == MAX_PANELS
    assert f"the first {MAX_PANELS} of 21 neurons" in figure.get_suptitle()


def test_png_and_svg_of_the_asked_for_size(scanned, tmp_path):
    plot_examples(scanned, str(tmp_path / "h.png"), size=(9, 4), dpi=60)
    assert png_size(tmp_path / "h.png") == (540, 240)
    plot_examples(scanned, str(tmp_path / "h.svg"), size=(5, 5))
    root = svg_root(tmp_path / "h.svg")
    assert (root.get("width"), root.get("height")) == ("360pt", "360pt")


def test_examples_cli_plot(capsys, tmp_path, llama_dir, corpus):
    picture = tmp_path / "hist.png"
    output = tmp_path / "examples.json"
    code, out, err = run(capsys, "introspect", "examples", "-m", llama_dir, "-l", "1",
                         "--corpus", corpus, "-n", "3,9", "--window", "10", "--work-dir",
                         tmp_path / "w", "-o", output, "--plot", picture)
    assert code == 0, err
    # default size: 2 panels across (3.6 in each + 0.4), one row (2.9 + 0.9 in), 100 dpi
    assert png_size(picture) == (760, 380)
    assert err.splitlines()[-2:] == [f"lazarus: saved {output}", f"lazarus: saved {picture}"]
    assert [n["neuron"] for n in json.loads(output.read_text())["neurons"]] == [3, 9]
    svg = tmp_path / "hist.svg"
    code, _, err = run(capsys, "introspect", "examples", "-m", llama_dir, "-l", "1",
                       "--corpus", corpus, "-n", "3", "--window", "10", "--work-dir",
                       tmp_path / "w", "--plot", svg)
    assert code == 0, err
    svg_root(svg)


@pytest.mark.parametrize("model, extra, fix", [
    ("/nonexistent/model", ["--plot", "hist.gif"], "name the --plot file with .png or .svg"),
    ("llama", ["-n", "100000", "--plot", "hist.png"], "100000"),
])
def test_errors_are_one_line_and_leave_no_picture(capsys, tmp_path, llama_dir, corpus, model,
                                                  extra, fix, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "introspect", "examples", "-m",
                         llama_dir if model == "llama" else model, "-l", "1", "--corpus",
                         corpus, "--window", "10", "--work-dir", tmp_path / "w", *extra)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and fix in err, err
    assert not any(name.startswith("hist") for name in os.listdir(tmp_path))


def test_the_title_of_one_narrow_panel_stays_inside_the_picture(scanned):
    """One neuron is one panel 4 inches wide: the title (corpus path, what the bars are) is
    wrapped to it, not cut off at both edges."""
    one = type(scanned)(**{**scanned.__dict__, "neurons": scanned.neurons[:1],
                           "corpus": "/a/long/folder/of/corpora/" + "c" * 40 + ".txt"})
    figure = examples_figure(one)
    figure.canvas.draw()
    box = figure._suptitle.get_window_extent()  # the suptitle's Text, as drawn
    assert box.x0 >= 0
    assert box.x1 <= figure.bbox.width
