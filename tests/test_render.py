"""Rendering against golden text written by hand from docs/introspect-neurons.md."""

import json

import numpy as np

from lazarus.render.grid import heat_levels, map_decimals, render_heatmap
from lazarus.render.neurons import (
    render_label_correlation,
    render_neurons_report,
    render_stats,
)
from lazarus.results.activations import ActivationMatrix
from lazarus.results.neurons import neurons_json
from lazarus.stats.neurons import LabelEffect, LabelSummary, NeuronStats

# The spec's example map (rows: prompts, columns: neurons 808, 1190, 1168, 891).
SPEC_VALUES = [
    [-156, 213, -198, 260],
    [2, 180, -119, 195],
    [232, 86, -28, 141],
    [326, -2, 26, 77],
    [168, 63, -7, 110],
]
SPEC_PROMPTS = ("2+2=", "10*10=", "45*45=", "47*47=", "67*83=")
SPEC_NEURONS = (808, 1190, 1168, 891)
SPEC_LABELS = ("trivial", "trivial", "medium", "hard", "hard")

# The spec's heatmap, cell by cell, copied from its text (' ' is the blank lowest level).
SPEC_GLYPHS = [
    [" ", "▓", " ", "▓"],
    ["░", "▒", " ", "▓"],
    ["▓", "▒", "░", "▒"],
    ["█", "░", "░", "▒"],
    ["▒", "░", "░", "▒"],
]

# Numeric map: the spec's rows verbatim; the header is one cell wider per column than the
# spec's so that it lines up with the values (the spec's header is off by one). The longest
# line is a "trivial" row: 20 + 3 + 4 * 6 + 3 * 3 + 2 + 8 = 66 characters.
SPEC_MAP = "\n".join([
    "=" * 80,
    "NEURON ACTIVATION MAP AT LAYER 15",
    "=" * 80,
    "Prompt               |  N 808 |  N1190 |  N1168 |  N 891 | Label",
    "-" * 66,
    "2+2=                 |   -156 |   +213 |   -198 |   +260 | trivial",
    "10*10=               |     +2 |   +180 |   -119 |   +195 | trivial",
    "45*45=               |   +232 |    +86 |    -28 |   +141 | medium",
    "47*47=               |   +326 |     -2 |    +26 |    +77 | hard",
    "67*83=               |   +168 |    +63 |     -7 |   +110 | hard",
])

# Heatmap: the spec's rows verbatim, the same header as the map, and the scale line.
SPEC_HEATMAP = "\n".join([
    "=" * 80,
    "ASCII HEATMAP (░ = low, ▒ = medium, ▓ = high, █ = max)",
    "=" * 80,
    "(scale: all cells, -198 to +326, in quarters; blank = lowest quarter)",
    "Prompt               |  N 808 |  N1190 |  N1168 |  N 891 | Label",
    "-" * 66,
    "2+2=                 |        |  ▓▓▓▓  |        |  ▓▓▓▓  | trivial",
    "10*10=               |  ░░░░  |  ▒▒▒▒  |        |  ▓▓▓▓  | trivial",
    "45*45=               |  ▓▓▓▓  |  ▒▒▒▒  |  ░░░░  |  ▒▒▒▒  | medium",
    "47*47=               |  ████  |  ░░░░  |  ░░░░  |  ▒▒▒▒  | hard",
    "67*83=               |  ▒▒▒▒  |  ░░░░  |  ░░░░  |  ▒▒▒▒  | hard",
])

# Statistics of the spec's map: min, max, mean = column sum / 5, and the population std
# rounded to 0.1 (statistics.pstdev: 171.64, 78.51, 81.97, 64.68).
SPEC_STATS = [
    NeuronStats(808, -156.0, 326.0, 572 / 5, 171.6),
    NeuronStats(1190, -2.0, 213.0, 540 / 5, 78.5),
    NeuronStats(1168, -198.0, 26.0, -326 / 5, 82.0),
    NeuronStats(891, 77.0, 260.0, 783 / 5, 64.7),
]


def spec_matrix(labels=SPEC_LABELS):
    return ActivationMatrix(
        values=np.array(SPEC_VALUES, dtype=np.float32),
        prompts=SPEC_PROMPTS,
        neurons=SPEC_NEURONS,
        layer=15,
        labels=labels,
        model_id="openai/gpt-oss-20b",
    )


def small_matrix(values, prompts, labels=None, neurons=None):
    values = np.array(values, dtype=np.float32)
    return ActivationMatrix(
        values=values,
        prompts=tuple(prompts),
        neurons=tuple(neurons or range(values.shape[1])),
        layer=2,
        labels=labels,
    )


def section(report, title):
    """The lines of one section: from its title's banner to the next blank line."""
    lines = report.split("\n")
    start = lines.index(title) - 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_activation_map_golden():
    report = render_neurons_report(spec_matrix(), SPEC_STATS, None)
    assert report.startswith(SPEC_MAP + "\n\n")


def test_heatmap_golden_text():
    assert render_heatmap(spec_matrix(), 0) == SPEC_HEATMAP


def test_heatmap_every_cell_matches_spec():
    rows = render_heatmap(spec_matrix(), 0).split("\n")[6:]
    assert len(rows) == 5
    for row, expected in zip(rows, SPEC_GLYPHS, strict=True):
        cells = row.split("|")[1:5]
        glyphs = [cell.strip()[:1] or " " for cell in cells]
        assert glyphs == expected
        for cell, glyph in zip(cells, expected, strict=True):
            assert cell == f"  {glyph * 4}  "


def test_heatmap_cut_at_max_rows_keeps_the_whole_maps_scale():
    """The scale line states every cell's range; the rows shown (and the mean of the rest) are
    drawn on it, not on a range of their own."""
    lines = render_heatmap(spec_matrix(), 0, max_rows=2).split("\n")
    assert "(scale: all cells, -198 to +326, in quarters; blank = lowest quarter)" in lines
    rows = lines[lines.index(next(line for line in lines if line.startswith("---"))) + 1:]
    glyphs = [[cell.strip()[:1] or " " for cell in row.split("|")[1:5]] for row in rows]
    # the mean of the last three rows, by hand: 242, 49, -3, 109.3 -> 4 * (v + 198) / 524
    assert glyphs == [*SPEC_GLYPHS[:2], ["▓", "░", "░", "▒"]]


def test_heat_levels_by_hand():
    # range -198..326 (524): e.g. 195 -> 4 * 393 / 524 = 3.0 exactly -> 3; 63 -> 1.99 -> 1
    levels = heat_levels(np.array(SPEC_VALUES, dtype=np.float32))
    glyph_level = {" ": 0, "░": 1, "▒": 2, "▓": 3, "█": 4}
    assert levels.tolist() == [[glyph_level[g] for g in row] for row in SPEC_GLYPHS]


def test_flat_map_is_all_medium():
    levels = heat_levels(np.full((2, 3), 5.0))
    assert levels.tolist() == [[2, 2, 2], [2, 2, 2]]
    text = render_heatmap(small_matrix([[5.0, 5.0], [5.0, 5.0]], ["a", "b"]), 2)
    rows = text.split("\n")[6:]
    assert rows == [
        "a                    |  ▒▒▒▒  |  ▒▒▒▒  |",
        "b                    |  ▒▒▒▒  |  ▒▒▒▒  |",
    ]


def test_decimals_adapt_to_magnitude():
    assert map_decimals(np.array([326.0, -2.0])) == 0
    assert map_decimals(np.array([45.3, 1.0])) == 1
    assert map_decimals(np.array([-5.2, 0.1])) == 2
    assert map_decimals(np.array([0.0312, -0.03])) == 4
    assert map_decimals(np.zeros(3)) == 0

    matrix = small_matrix([[0.0312, -0.0288], [0.0105, -0.0004]], ["a", "b"], neurons=[1, 2])
    lines = render_neurons_report(matrix, [], None).split("\n")
    assert lines[5] == "a                    | +0.0312 | -0.0288 |"
    assert lines[6] == "b                    | +0.0105 | -0.0004 |"
    assert lines[3] == "Prompt               |   N   1 |   N   2 |"


def test_long_and_multiline_prompts_fit_one_line():
    prompts = ["What is the capital of France?", "a\nb\tc", "short"]
    matrix = small_matrix([[1.0], [2.0], [3.0]], prompts, neurons=[808])
    rows = render_neurons_report(matrix, [], None).split("\n")[5:8]
    assert rows == [
        "What is the capital… |  +1.00 |",
        "a\\nb\\tc" + " " * 14 + "|  +2.00 |",  # 7 characters, padded to 20
        "short                |  +3.00 |",
    ]
    assert len({len(row) for row in rows}) == 1


def test_no_label_column_without_labels():
    report = render_neurons_report(spec_matrix(labels=None), SPEC_STATS, None)
    grid = section(report, "NEURON ACTIVATION MAP AT LAYER 15")[3:]
    assert grid[0] == "Prompt               |  N 808 |  N1190 |  N1168 |  N 891 |"
    assert grid[2] == "2+2=                 |   -156 |   +213 |   -198 |   +260 |"
    assert "Label" not in report
    assert "LABEL CORRELATION" not in report


def test_statistics_lines_match_spec():
    # the spec's own two statistics lines
    stats = [
        NeuronStats(808, -156.0, 326.0, 128.1, 146.3),
        NeuronStats(1190, -1.8, 213.0, 101.0, 71.1),
    ]
    assert render_stats(stats, 1).split("\n")[3:] == [
        "Neuron  808: min= -156.0, max= +326.0, mean= +128.1, std= 146.3",
        "Neuron 1190: min=   -1.8, max= +213.0, mean= +101.0, std=  71.1",
    ]


def test_statistics_in_report_use_one_more_decimal_than_map():
    report = render_neurons_report(spec_matrix(), SPEC_STATS, None)
    assert section(report, "NEURON STATISTICS")[3:] == [
        "Neuron  808: min= -156.0, max= +326.0, mean= +114.4, std= 171.6",
        "Neuron 1190: min=   -2.0, max= +213.0, mean= +108.0, std=  78.5",
        "Neuron 1168: min= -198.0, max=  +26.0, mean=  -65.2, std=  82.0",
        "Neuron  891: min=  +77.0, max= +260.0, mean= +156.6, std=  64.7",
    ]


def test_weights_and_sign_explanation_only_with_weights():
    stats = SPEC_STATS[:2]
    plain = render_stats(stats, 1)
    assert "weight" not in plain
    assert "Positive weight" not in plain

    weighted = render_stats(
        stats, 1, weights={808: 0.2017, 1190: -0.107}, direction_labels=("hard", "easy"),
        ranking="|weight|",
    ).split("\n")
    assert weighted[3:] == [
        "Neuron  808: min= -156.0, max= +326.0, mean= +114.4, std= 171.6, weight=+0.2017",
        "Neuron 1190: min=   -2.0, max= +213.0, mean= +108.0, std=  78.5, weight=-0.1070",
        "",
        "Positive weight: higher activation = more like hard; negative: more like easy.",
        "Neurons ranked by |weight|.",
    ]

    unnamed = render_stats(stats, 1, weights={808: 0.2017, 1190: -0.107})
    assert unnamed.split("\n")[-1] == (
        "Positive weight: higher activation = more like class A; negative: more like class B."
    )


def test_label_correlation_section():
    summaries = [
        LabelSummary("hard", 2, (
            LabelEffect(808, 228.8, 10.0, 0.87, "high", r_ci=(0.5, 0.974)),
            LabelEffect(1190, 40.7, 150.0, -0.61, "low", r_ci=(-0.9, -0.004)),
        )),
        LabelSummary("trivial", 1, (
            LabelEffect(808, -40.7, 100.0, 0.2, None),
            LabelEffect(1190, 186.7, None, None, None),
        )),
    ]
    assert render_label_correlation(summaries, 1).split("\n") == [
        "=" * 80,
        "LABEL CORRELATION",
        "=" * 80,
        "(r = point-biserial correlation of the neuron with the label; [low, high] = its 95% "
        "interval, exact for values normal within each label with one spread; n/a: too few "
        "prompts, or no spread within any label, for one)",
        "(← marks an r whose interval excludes 0: uncorrected, 2 neurons examined, so about 1 in "
        "20 with no effect is marked by chance)",
        "",
        "hard (2 prompts):",
        "  Neuron  808: mean= +228.8  r=+0.87 [+0.50, +0.97]  ← fires high for hard",
        "  Neuron 1190: mean=  +40.7  r=-0.61 [-0.90, -0.00]  ← fires low for hard",
        "",
        "trivial (1 prompt):",
        "  Neuron  808: mean=  -40.7  r=+0.20 [n/a]",
        "  Neuron 1190: mean= +186.7  r=  n/a",
    ]


def test_report_sections_in_spec_order():
    summaries = [LabelSummary("hard", 2, ())]
    report = render_neurons_report(spec_matrix(), SPEC_STATS, summaries)
    titles = [
        "NEURON ACTIVATION MAP AT LAYER 15",
        "ASCII HEATMAP (░ = low, ▒ = medium, ▓ = high, █ = max)",
        "NEURON STATISTICS",
        "LABEL CORRELATION",
    ]
    lines = report.split("\n")
    positions = [lines.index(title) for title in titles]
    assert positions == sorted(positions)
    for position in positions[1:]:
        assert lines[position - 2] == ""


def test_json_keys_shapes_and_round_trip():
    summaries = [LabelSummary("hard", 2, (LabelEffect(808, 247.0, 26.0, 0.5, "high"),
                                          LabelEffect(1190, 30.5, 1.0, None, None),
                                          LabelEffect(1168, 9.5, 1.0, -0.1, None),
                                          LabelEffect(891, 93.5, 1.0, -0.8, "low")))]
    weights = {808: 0.2017, 1190: -0.107, 1168: 0.01, 891: 0.3}
    data = neurons_json(spec_matrix(), SPEC_STATS, summaries, weights,
                        {"lazarus_version": "0.1.0", "site": "residual"})
    assert list(data) == ["model_id", "layer", "neurons", "prompts", "labels", "activations",
                          "neuron_weights", "stats", "label_correlation", "lazarus_version",
                          "site"]
    assert data["model_id"] == "openai/gpt-oss-20b"
    assert data["layer"] == 15
    assert data["neurons"] == [808, 1190, 1168, 891]
    assert data["prompts"] == list(SPEC_PROMPTS)
    assert data["labels"] == list(SPEC_LABELS)
    assert data["activations"] == [[float(v) for v in row] for row in SPEC_VALUES]
    assert data["neuron_weights"] == {"808": 0.2017, "1190": -0.107, "1168": 0.01, "891": 0.3}
    assert data["stats"]["808"] == {"min": -156.0, "max": 326.0, "mean": 114.4, "std": 171.6}
    assert data["label_correlation"]["hard"]["count"] == 2
    assert data["label_correlation"]["hard"]["neurons"]["808"] == {
        "mean": 247.0, "rest_mean": 26.0, "r": 0.5, "r_ci95": None, "verdict": "high"}
    assert data["label_correlation"]["hard"]["neurons"]["1190"]["r"] is None
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_json_without_weights_or_labels():
    data = neurons_json(spec_matrix(labels=None), SPEC_STATS, None, None, {})
    assert "neuron_weights" not in data
    assert "label_correlation" not in data
    assert data["labels"] is None
    assert type(data["activations"][0][0]) is float
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_json_never_holds_nan():
    matrix = small_matrix([[np.nan, 1.0]], ["a"], neurons=[1, 2])
    stats = [NeuronStats(1, np.nan, np.nan, np.nan, np.nan), NeuronStats(2, 1.0, 1.0, 1.0, 0.0)]
    data = neurons_json(matrix, stats, None, None, {})
    assert data["activations"] == [[None, 1.0]]
    assert data["stats"]["1"] == {"min": None, "max": None, "mean": None, "std": None}
    json.dumps(data, allow_nan=False)
