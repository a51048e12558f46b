"""Pictures (`lazarus.results.plot`, `--plot FILE`): valid files of the asked-for size, the right
colours, nothing left behind on error, a clear error without matplotlib, and none of it at
`--help`."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lazarus.cli.main import main
from lazarus.errors import LazarusError
from lazarus.results.activations import ActivationMatrix
from lazarus.results.neurons import LayerResult, NeuronsResult
from lazarus.results.plot import (
    MISSING,
    neurons_figure,
    plot_neurons,
    plot_probe,
    probe_figure,
)
from lazarus.stats import neurons as analysis
from lazarus.stats import probe
from lazarus.stats.neurons import SPREAD, Choice
from lazarus.stats.t_interval import label_means, t_critical

matplotlib = pytest.importorskip("matplotlib")

DEMO_PROMPTS = "2+3=|4*2=|10*10=|45*45=|58*67=|94*39="
DEMO_LABELS = "easy|easy|easy|hard|hard|hard"


def make_result(values: np.ndarray, labels: list[str] | None = None,
                layers: tuple[int, ...] = (0,)) -> NeuronsResult:
    values = np.asarray(values, dtype=np.float32)
    prompts = tuple(f"prompt {i}" for i in range(values.shape[0]))
    neurons = tuple(range(100, 100 + values.shape[1]))
    results = []
    for layer in layers:
        matrix = ActivationMatrix(values=values, prompts=prompts, neurons=neurons, layer=layer,
                                  labels=None if labels is None else tuple(labels))
        results.append(LayerResult(
            matrix=matrix, stats=analysis.neuron_stats(matrix),
            label_summaries=analysis.label_correlation(matrix) if labels else None))
    return NeuronsResult(layers=tuple(results), neurons=neurons, prompts=prompts,
                         labels=None if labels is None else tuple(labels), site="resid_post",
                         position="last", selection=None)


def make_report() -> probe.ProbeReport:
    rng = np.random.default_rng(0)
    sign = np.r_[np.ones(8), -np.ones(8)][:, None]
    rows = {layer: rng.normal(size=(16, 12)) + 0.4 * layer * sign for layer in range(5)}
    return probe.probe_layers(rows, 8, label_a="hard", label_b="easy")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- files ------------------------------------------------------------------------------------


def test_png_has_the_asked_for_pixel_size(tmp_path):
    labels = ["a", "a", "b", "b", "b"]
    result = make_result(np.arange(20).reshape(5, 4) - 10.0, labels, layers=(0, 3))
    path = tmp_path / "heatmap.png"
    plot_neurons(result, str(path), size=(8, 5), dpi=100)
    assert png_size(path) == (800, 500)
    report_path = tmp_path / "probe.png"
    plot_probe(make_report(), str(report_path), size=(6, 4), dpi=50)
    assert png_size(report_path) == (300, 200)


def test_default_size_is_a_valid_png(tmp_path):
    path = tmp_path / "heatmap.PNG"  # the extension's case does not matter
    plot_neurons(make_result(np.eye(3)), str(path))
    width, height = png_size(path)
    assert 300 <= width <= 3000 and 200 <= height <= 3000, (width, height)


def test_svg_is_xml_with_the_asked_for_size(tmp_path):
    path = tmp_path / "probe.svg"
    plot_probe(make_report(), str(path), size=(6, 4))
    root = ElementTree.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height")) == ("432pt", "288pt")  # 72 pt per inch
    heat = tmp_path / "heat.svg"
    plot_neurons(make_result(np.eye(3), ["x", "y", "y"]), str(heat), size=(5, 7))
    root = ElementTree.parse(heat).getroot()
    assert (root.get("width"), root.get("height")) == ("360pt", "504pt")


@pytest.mark.parametrize("name", ["heatmap.jpg", "heatmap", "heatmap.png.txt"])
def test_other_extensions_are_refused_and_nothing_is_written(tmp_path, name):
    with pytest.raises(LazarusError) as caught:
        plot_neurons(make_result(np.eye(3)), str(tmp_path / name))
    message = str(caught.value)
    assert "\n" not in message and ".png or .svg" in message
    assert os.listdir(tmp_path) == []


def test_an_error_while_drawing_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, target, **kwargs):  # half a file, then a failure
        Path(target).write_bytes(b"\x89PNG half")
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        plot_neurons(make_result(np.eye(3)), str(tmp_path / "new.png"))
    assert os.listdir(tmp_path) == []
    old = tmp_path / "old.svg"
    old.write_text("before")
    with pytest.raises(RuntimeError, match="drawing failed"):
        plot_probe(make_report(), str(old))
    assert os.listdir(tmp_path) == ["old.svg"]
    assert old.read_text() == "before"


# --- what is drawn ----------------------------------------------------------------------------


def cell_colour(rgba: np.ndarray, axes, row: int, column: int) -> np.ndarray:
    """RGB (0..1) at the centre of heatmap cell (row, column) of a rendered image."""
    x, y = axes.transData.transform((column, row))  # display pixels, origin bottom left
    return rgba[int(round(rgba.shape[0] - y)), int(round(x)), :3] / 255.0


def test_heatmap_colours_are_diverging_and_centred_at_zero(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.image import imread

    values = np.zeros((4, 3))
    values[0, 1] = 10.0  # the largest |value|: dark red
    values[2, 0] = -5.0  # the lowest, half as far from 0: mid blue (min-to-max: darkest blue)
    values[3, 2] = -1.0  # small negative: pale blue
    result = make_result(values)
    figure = neurons_figure(result, size=(6, 4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba()).astype(np.float64)
    (axes,) = [a for a in figure.axes if a.images]
    red, blue, pale, zero = (cell_colour(rgba, axes, r, c)
                             for r, c in ((0, 1), (2, 0), (3, 2), (1, 1)))
    print("red", red, "blue", blue, "pale", pale, "zero", zero)
    assert red[0] > 0.35 and red[0] > red[2] + 0.25 and red[0] > red[1] + 0.25
    assert blue[2] > blue[0] + 0.3 and blue[0] > 0.15  # blue, not the darkest blue
    assert pale[2] > pale[0] + 0.05 and pale.min() > 0.75  # bluish, but light
    assert zero.min() > 0.9  # 0 is white: the scale is centred
    # The written file has the same pixels.
    path = tmp_path / "heat.png"
    plot_neurons(result, str(path), size=(6, 4), dpi=100)
    written = imread(path) * 255.0
    assert written.shape[:2] == rgba.shape[:2]
    for row, column in ((0, 1), (2, 0), (3, 2), (1, 1)):
        np.testing.assert_allclose(cell_colour(written, axes, row, column),
                                   cell_colour(rgba, axes, row, column), atol=0.02)


def test_probe_picture_shows_accuracy_baseline_band_and_best_layer():
    report = make_report()
    figure = probe_figure(report)
    axes = figure.axes[0]
    (band,) = axes.collections[:1]
    corners = np.concatenate([path.vertices for path in band.get_paths()])
    low = min(s.baseline - s.baseline_std for s in report.layers)
    high = max(s.baseline + s.baseline_std for s in report.layers)
    assert corners[:, 1].min() == pytest.approx(low)
    assert corners[:, 1].max() == pytest.approx(high)
    stars = [line for line in axes.lines if line.get_marker() == "*"]
    assert len(stars) == 1
    assert list(stars[0].get_xdata()) == [report.best_layer]
    chance = [line for line in axes.lines if list(line.get_ydata()) == [0.5, 0.5]]
    assert len(chance) == 1


def test_one_layer_s_baseline_band_has_a_width():
    """`probe -l 0 --plot`: with one layer, a band between two x equal to it had no area, and
    the legend named a band the picture did not show."""
    rng = np.random.default_rng(0)
    sign = np.r_[np.ones(8), -np.ones(8)][:, None]
    one = probe.probe_layers({2: rng.normal(size=(16, 12)) + 0.8 * sign}, 8)
    axes = probe_figure(one).axes[0]
    (band,) = axes.collections[:1]
    corners = np.concatenate([path.vertices for path in band.get_paths()])
    assert corners[:, 0].max() - corners[:, 0].min() > 0.2  # layers are 1 apart
    layer = one.layers[0]
    assert corners[:, 1].min() == pytest.approx(layer.baseline - layer.baseline_std)
    assert corners[:, 1].max() == pytest.approx(layer.baseline + layer.baseline_std)


def test_t_critical_matches_the_textbook_table():
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228,
             20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980, 20_000: 1.960}
    for dof, value in table.items():
        assert t_critical(dof) == pytest.approx(value, abs=1e-3), dof


def test_label_means_and_intervals_by_hand():
    values = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 5.0], [4.0, 7.0], [8.0, 0.0]])
    found = label_means(values, ("a", "a", "a", "a", "b"))
    means, halves, counts = found["a"]
    np.testing.assert_allclose(means, [2.5, 17 / 3])
    s_first = np.sqrt(((np.array([1, 2, 3, 4]) - 2.5) ** 2).sum() / 3)
    s_second = np.sqrt(((np.array([5, 5, 7]) - 17 / 3) ** 2).sum() / 2)
    np.testing.assert_allclose(halves, [3.182 * s_first / 2, 4.303 * s_second / np.sqrt(3)],
                               rtol=1e-3)
    assert list(counts) == [4, 3]
    means, halves, counts = found["b"]  # one value: a mean, no interval
    assert list(means) == [8.0, 0.0] and np.isnan(halves).all() and list(counts) == [1, 1]


@pytest.mark.parametrize("sizes", [(2, 3), (5, 8), (20, 4)])
def test_label_mean_intervals_cover_95_percent_at_every_prompt_count(sizes):
    """The label panel's t-intervals, on normal values per label: each covers its label's true
    mean in about 95% of 2,000 replicates (>= 93%, 4 standard errors below), from 2 prompts."""
    rng = np.random.default_rng(11)
    labels = ("a",) * sizes[0] + ("b",) * sizes[1]
    truth = {"a": 1.5, "b": -0.5}
    trials = 2000  # one column per replicate
    values = np.concatenate([rng.normal(truth[label], 2.0, (size, trials)) for label, size in
                             zip("ab", sizes, strict=True)])
    covered = {label: float(np.mean(np.abs(means - truth[label]) <= halves))
               for label, (means, halves, _) in label_means(values, labels).items()}
    assert min(covered.values()) >= 0.93, covered


def _label_axes(result: NeuronsResult):
    figure = neurons_figure(result)
    return next(axes for axes in figure.axes if axes.get_ylabel() == "mean activation")


def test_the_label_panel_says_what_its_bars_claim():
    values = np.random.default_rng(4).normal(size=(6, 3))
    labels = ["a", "a", "a", "b", "b", "b"]
    given = _label_axes(make_result(values, labels))
    assert given.get_title() == ("per-label mean over prompts\n± 95% t-interval of the mean "
                                 "(normal values)")
    assert all(bars.has_yerr for bars in given.containers)
    selected = _label_axes(replace(make_result(values, labels),
                                   choice=Choice(by=SPREAD, among=50)))
    assert selected.get_title().splitlines()[2] == (
        "neurons chosen on these prompts: the intervals may cover less than 95%")
    # per token: the tokens of one prompt are not independent, so means without an interval
    tokens = _label_axes(replace(make_result(values, labels), position="all",
                                 choice=Choice(per_token=True)))
    assert tokens.get_title() == ("per-label mean over tokens\n(no interval: the tokens of one "
                                  "prompt are not independent samples)")
    assert [bars.has_yerr for bars in tokens.containers] == [False, False]


# --- without matplotlib, and at --help --------------------------------------------------------


@pytest.mark.integration
def test_missing_matplotlib_is_one_line_with_the_fix(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(LazarusError, match=r"^--plot needs matplotlib \(pip install "):
        plot_neurons(make_result(np.eye(3)), str(tmp_path / "heat.png"))
    assert os.listdir(tmp_path) == []
    script = ("import sys\n"
              "sys.modules['matplotlib'] = None\n"
              "from lazarus.cli.main import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", script, "introspect", "neurons", "-m",
                           "/nonexistent/model", "-l", "0", "-p", "a|b", "--plot",
                           str(tmp_path / "heat.png")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"lazarus: error: {MISSING}\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.integration
def test_help_and_import_do_not_import_matplotlib():
    script = ("import sys\n"
              "import lazarus.results.plot\n"
              "from lazarus.cli.main import main\n"
              "for argv in (['--help'], ['introspect', 'neurons', '--help'],\n"
              "             ['introspect', 'probe', '--help']):\n"
              "    assert main(argv) == 0\n"
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')\n"
              "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--plot FILE" in done.stdout


# --- the CLI on the demo model ----------------------------------------------------------------


def test_neurons_plot_on_the_demo_model(capsys, tmp_path):
    picture = tmp_path / "heatmap.png"
    output = tmp_path / "neurons.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", "lazarus:demo", "-l", "0,1",
                         "-p", DEMO_PROMPTS, "--labels", DEMO_LABELS, "--plot", picture,
                         "-o", output)
    assert code == 0, err
    assert "ASCII HEATMAP" in out
    width, height = png_size(picture)
    assert width > 300 and height > 200
    assert f"saved {picture}" in err and f"saved {output}" in err
    assert sorted(os.listdir(tmp_path)) == ["heatmap.png", "neurons.json"]


def test_probe_plot_on_the_demo_model(capsys, tmp_path):
    picture = tmp_path / "accuracy.svg"
    code, out, err = run(capsys, "introspect", "probe", "-m", "lazarus:demo",
                         "--class-a", "47*47=|67*83=|53*59=|38*76=|91*23=|64*58=|29*84=|73*36=",
                         "--label-a", "hard",
                         "--class-b", "20+30=|10*10=|11+11=|40+50=|10+20=|30*10=|12+12=|20*20=",
                         "--label-b", "easy", "--plot", picture)
    assert code == 0, err
    assert "PROBE ACCURACY BY LAYER" in out
    root = ElementTree.parse(picture).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert f"saved {picture}" in err
    assert "hard vs easy" in picture.read_text()


@pytest.mark.parametrize("bad, fix", [
    ("heat.gif", "name the --plot file with .png or .svg"),
    ("same", "--output and --plot name the same file"),
    ("prompts", "is the same file as the --prompts input"),
    ("missing/heat.png", "does not exist"),
])
def test_bad_plot_paths_fail_before_loading(capsys, tmp_path, bad, fix):
    prompts = tmp_path / "prompts.png"
    prompts.write_text("a\nb\n")
    output = tmp_path / "out.png"
    picture = {"same": output, "prompts": prompts}.get(bad, tmp_path / bad)
    code = main(["introspect", "neurons", "-m", "/nonexistent/model", "-l", "0",
                 "-p", f"@{prompts}", "-o", str(output), "--plot", str(picture)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and fix in lines[0], captured.err
    assert sorted(os.listdir(tmp_path)) == ["prompts.png"]


def test_probe_picture_marks_no_layer_when_nothing_beats_chance():
    rng = np.random.default_rng(1)
    report = probe.probe_layers({layer: rng.normal(size=(4, 12)) for layer in range(3)}, 2)
    assert report.best_layer is None
    axes = probe_figure(report).axes[0]
    assert [line for line in axes.lines if line.get_marker() == "*"] == []
    assert axes.get_title().splitlines()[-1] == (
        f"no layer beats chance (p = {report.p_value:.2g})")
