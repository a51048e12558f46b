"""Each command's options type is the one both routes use: the CLI builds from argv the options
`lazarus.Model` builds from the same settings as keywords, both routes then compute the same
result, and a wrong value is the same one line from the API and exit 2 from the CLI.

Oracle: the API's own keywords (the options type built from them), and the API's result; the
real argument tree and the run functions' own builders, no stand-ins.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest

from lazarus.analyses.options import (
    AblateOptions,
    ExamplesOptions,
    NeuronsOptions,
    ProbeOptions,
    SteerOptions,
)
from lazarus.analyses.patch_options import PatchOptions
from lazarus.api import Model
from lazarus.cli.ablate import ablate_options
from lazarus.cli.examples import examples_options
from lazarus.cli.main import main
from lazarus.cli.neurons import neurons_options
from lazarus.cli.output import EXIT_NOTHING_FOUND
from lazarus.cli.parser import build_parser
from lazarus.cli.patch import patch_options
from lazarus.cli.probe import probe_options
from lazarus.cli.steer import steer_options
from lazarus.engine.arguments import builds
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, save_direction

P4 = ["2+2=", "3+3=", "47*47=", "38*92="]
HARD = ["47*47=", "38*92=", "74*21=", "19*83="]
EASY = ["1+1=", "2+2=", "3+3=", "4+4="]
L4 = ["easy", "easy", "hard", "hard"]
OPTIONS = {"neurons": NeuronsOptions, "probe": ProbeOptions, "ablate": AblateOptions,
           "steer": SteerOptions, "examples": ExamplesOptions, "patch": PatchOptions}

# name: (command, argv after -m MODEL, the API's inputs, the API's keywords); {d} is a direction
# file (made at layer 1, no site), {c} a .jsonl corpus, {w} a work folder. Together the cases
# give every field a value other than its default, but ray's (which need a cluster) and
# token_budget / max_batch (the API's only).
CASES = {
    "neurons direction": (
        "neurons", ["-l", "0,1", "-p", "|".join(P4), "--from-direction", "{d}", "--top-k", "3",
                    "--labels", "|".join(L4), "--site", "mlp_out", "--position", "first"],
        [P4], {"layers": "0,1", "direction": "{d}", "top_k": 3, "labels": L4,
               "site": "mlp_out", "position": "first"}),
    "neurons discover": (
        "neurons", ["-l", "1", "-p", "|".join(P4), "--labels", "|".join(L4), "--auto-discover",
                    "--permutations", "50", "--top-k", "2"],
        [P4], {"layers": "1", "labels": L4, "auto_discover": True, "permutations": 50,
               "top_k": 2}),
    "neurons ids": (
        "neurons", ["-l", "-1", "-p", "|".join(P4), "-n", "3,5", "--position", "mean"],
        [P4], {"layers": "-1", "neurons": [3, 5], "position": "mean"}),
    "probe": (
        "probe", ["--class-a", "|".join(HARD), "--class-b", "|".join(EASY), "--label-a", "hard",
                  "--label-b", "easy", "-l", "0,1", "--method", "difference", "-t", "9*9=|5+5=",
                  "--test-labels", "hard|easy", "--permutations", "20", "--alpha", "0.1",
                  "--site", "mlp_out", "--position", "mean"],
        [HARD, EASY], {"label_a": "hard", "label_b": "easy", "layers": "0,1",
                       "method": "difference", "test": ["9*9=", "5+5="],
                       "test_labels": ["hard", "easy"], "permutations": 20, "alpha": 0.1,
                       "site": "mlp_out", "position": "mean"}),
    "ablate direction": (
        "ablate", ["-l", "0,1", "-p", "2+2=:4|3+3=:6", "--labels", "a|b", "--from-direction",
                   "{d}", "--top-k", "2", "--site", "mlp_out", "--method", "mean", "--reference",
                   "1+1=|5+5=", "--controls", "2", "--seed", "7", "--sweep", "--max-tokens", "3"],
        [["2+2=", "3+3="]], {"layers": "0,1", "answers": ["4", "6"], "labels": ["a", "b"],
                             "direction": "{d}", "top_k": 2, "site": "mlp_out",
                             "method": "mean", "reference": ["1+1=", "5+5="], "controls": 2,
                             "seed": 7, "sweep": True, "max_tokens": 3}),
    "ablate component": (
        "ablate", ["-l", "1", "-p", "2+2=|3+3=", "--component", "attention", "--method",
                   "resample", "--max-tokens", "2"],
        [["2+2=", "3+3="]], {"layers": "1", "component": "attention", "method": "resample",
                             "max_tokens": 2}),
    "ablate ids": (
        "ablate", ["-l", "0", "-p", "2+2=|3+3=", "-n", "1,2", "--controls", "3"],
        [["2+2=", "3+3="]], {"layers": "0", "neurons": [1, 2], "controls": 3}),
    "steer pair": (
        "steer", ["-p", "2+2=|3+3=", "-l", "1", "--positive", "47*47=|38*92=", "--negative",
                  "1+1=|2+2=", "--compare", "-1,2", "--absolute", "--site", "mlp_out",
                  "--tokens", "4|6", "--max-tokens", "3", "--temperature", "0.5", "--seed", "3"],
        [["2+2=", "3+3="]], {"layer": 1, "positive": ["47*47=", "38*92="],
                             "negative": ["1+1=", "2+2="], "coefficients": [-1.0, 2.0],
                             "absolute": True, "site": "mlp_out", "tokens": ["4", "6"],
                             "max_tokens": 3, "temperature": 0.5, "seed": 3}),
    "steer direction": (
        "steer", ["-p", "2+2=", "--direction", "{d}", "--max-tokens", "2", "--compare"],
        [["2+2="]], {"direction": "{d}", "max_tokens": 2, "compare": True}),
    "steer clamp": (
        "steer", ["-p", "2+2=", "-l", "0", "-n", "3:1.5,5:-1", "--clamp", "--coefficient", "2",
                  "--max-tokens", "2"],
        [["2+2="]], {"layer": 0, "neurons": {3: 1.5, 5: -1.0}, "clamp": True,
                     "coefficients": [2.0], "max_tokens": 2}),
    "examples direction": (
        "examples", ["-l", "1", "--corpus", "{c}", "--text-field", "body", "--from-direction",
                     "{d}", "--top-k", "2", "--site", "mlp_out", "--examples", "3", "--window",
                     "8", "--stride", "4", "--work-dir", "{w}", "--shard-windows", "5"],
        ["{c}"], {"layer": "1", "text_field": "body", "direction": "{d}", "top_k": 2,
                 "site": "mlp_out", "examples": 3, "window": 8, "stride": 4, "work_dir": "{w}",
                 "shard_windows": 5}),
    "examples projection": (
        "examples", ["-l", "1", "--corpus", "{c}", "--text-field", "body", "--from-direction",
                     "{d}", "--projection", "--window", "8", "--work-dir", "{w}"],
        ["{c}"], {"layer": "1", "text_field": "body", "direction": "{d}", "projection": True,
                 "window": 8, "work_dir": "{w}"}),
    "examples ids": (
        "examples", ["-l", "0", "--corpus", "{c}", "--text-field", "body", "-n", "1,2",
                     "--window", "8", "--work-dir", "{w}"],
        ["{c}"], {"layer": "0", "text_field": "body", "neurons": [1, 2], "window": 8,
                 "work_dir": "{w}"}),
    "patch pairs": (
        "patch", ["--clean", "2+2=|3+3=", "--corrupt", "2+5=|3+1=", "--answer", "4|6",
                  "--wrong", "7|4", "--site", "resid_post,mlp_out", "-l", "0,2", "--direction",
                  "noise", "--seed", "3"],
        [], {"clean": ["2+2=", "3+3="], "corrupt": ["2+5=", "3+1="], "answers": ["4", "6"],
             "wrongs": ["7", "4"], "sites": ["resid_post", "mlp_out"], "layers": "0,2",
             "direction": "noise", "seed": 3}),
    "patch items": (
        "patch", ["--clean", "2+2=:4", "--corrupt", "2+5=:7", "--metric", "logprob", "-l", "1"],
        [], {"clean": ["2+2="], "corrupt": ["2+5="], "answers": ["4"], "wrongs": ["7"],
             "metric": "logprob", "layers": "1"}),
}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def files(llama_dir, tmp_path) -> dict[str, str]:
    """{d}: a direction at layer 1 of the model's width; {c}: a .jsonl corpus; {w}: a folder."""
    width = Model(str(llama_dir)).hidden_size
    weights = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    save_direction(str(tmp_path / "d.npz"), Direction(weights, layer=1))
    lines = ["the cat sat on the mat", "two plus two is four", "a b c d e f g h i j k"]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in lines))
    return {"{d}": str(tmp_path / "d.npz"), "{c}": str(tmp_path / "c.jsonl"),
            "{w}": str(tmp_path / "w")}


def filled(value, files: dict[str, str]):
    return files.get(value, value) if isinstance(value, str) else value


def cli_build(command: str, argv: list[str], model: Model) -> tuple:
    """(inputs..., options) as the command's run function builds them from argv."""
    args: argparse.Namespace = build_parser().parse_args(["introspect", command, *argv])
    if command == "steer":
        return steer_options(args, model)
    if command == "patch":  # its inputs are options too
        return (patch_options(args),)
    builder = {"neurons": neurons_options, "probe": probe_options, "ablate": ablate_options,
               "examples": examples_options}[command]
    return builder(args)


def plain(options) -> dict:
    """The options' fields, a direction as its file and weights (arrays do not compare by ==)."""
    return {name: (value.source, value.direction.tolist()) if isinstance(value, Direction)
            else value for name, value in vars(options).items()}


def test_the_cases_give_every_option_a_value_other_than_its_default():
    unset = {"examples": {"ray", "ray_workers", "ray_address", "token_budget", "max_batch"}}
    for command, kind in OPTIONS.items():
        fields = {f.name: f.default for f in dataclasses.fields(kind)}
        set_here = {name for case_command, _, _, keywords in CASES.values()
                    if case_command == command for name, value in keywords.items()
                    if value != fields[name]}
        assert set(fields) - set_here == unset.get(command, set()), command


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_cli_builds_the_options_the_api_builds(llama_dir, files, case):
    command, argv, inputs, keywords = CASES[case]
    argv = ["-m", str(llama_dir), *(filled(a, files) for a in argv)]
    keywords = {name: filled(value, files) for name, value in keywords.items()}
    *cli_inputs, cli_options = cli_build(command, argv, Model(str(llama_dir)))
    api_options = OPTIONS[command](**keywords)
    assert plain(cli_options) == plain(api_options)
    if command == "probe":  # and the test prompts as read, which name their source
        assert cli_inputs.pop() == keywords["test"]
    assert cli_inputs == [filled(i, files) for i in inputs]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_cli_and_the_api_compute_the_same_result(llama_dir, files, tmp_path, capsys, case):
    """The whole routes: the CLI's -o file equals the API's result for the same settings."""
    command, argv, inputs, keywords = CASES[case]
    inputs = [filled(i, files) for i in inputs]
    keywords = {name: filled(value, files) for name, value in keywords.items()}
    if command == "examples":
        keywords["work_dir"] = str(tmp_path / "api-work")  # a fresh scan, not a resumed one
    warned: list[str] = []  # the CLI's warnings go to stderr
    result = getattr(Model(str(llama_dir), warn=warned.append), command)(*inputs, **keywords)
    output = tmp_path / "cli.json"
    code = main(["introspect", command, "-m", str(llama_dir),
                 *(filled(a, files) for a in argv), "-o", str(output)])
    capsys.readouterr()
    found_nothing = (not result.report.significant if command == "probe" else
                     command == "neurons" and result.layers[0].discovery is not None
                     and result.layers[0].discovery.survivors == 0)
    assert code == (EXIT_NOTHING_FOUND if found_nothing else 0)
    document = json.loads(json.dumps(result.to_json()))
    expected = json.loads(output.read_text())
    for key in ("work_dir", "resumed_shards"):  # where the examples' shards are
        document.pop(key, None)
        expected.pop(key, None)
    assert document == expected


# (command, argv after -m MODEL, the API's inputs and keywords, the message both give)
WRONG = {
    "top-k 0": ("neurons", ["-l", "0", "-p", "a|b", "--top-k", "0"],
                (["a", "b"],), {"layers": 0, "top_k": 0}, "--top-k must be at least 1 (got 0)"),
    "probe alpha": ("probe", ["--class-a", "a|b", "--class-b", "c|d", "--alpha", "2"],
                    (["a", "b"], ["c", "d"]), {"alpha": 2},
                    "--alpha must be between 0 and 1, got 2.0 (e.g. 0.05)"),
    "same labels": ("probe", ["--class-a", "a|b", "--class-b", "c|d", "--label-a", "x",
                              "--label-b", "x"], (["a", "b"], ["c", "d"]),
                    {"label_a": "x", "label_b": "x"},
                    "both classes are labelled 'x' (give --label-a and --label-b different "
                    "names)"),
    "controls": ("ablate", ["-l", "0", "-p", "a", "-n", "1", "--controls", "100001"],
                 (["a"],), {"layers": 0, "neurons": [1], "controls": 100001},
                 "--controls must be from 0 to 100000 (got 100001)"),
    "two sources": ("ablate", ["-l", "0", "-p", "a", "-n", "1", "--component", "mlp"],
                    (["a"],), {"layers": 0, "neurons": [1], "component": "mlp"},
                    "say what to ablate: one of --neurons, --from-direction or --component "
                    "(not --neurons and --component)"),
    "temperature": ("steer", ["-p", "a", "-l", "0", "-n", "1:2", "--temperature", "-1"],
                    (["a"],), {"layer": 0, "neurons": {1: 2.0}, "temperature": -1},
                    "--temperature must be 0 (greedy) or more (got -1.0)"),
    "clamp": ("steer", ["-p", "a", "-l", "0", "--positive", "b", "--negative", "c", "--clamp"],
              (["a"],), {"layer": 0, "positive": ["b"], "negative": ["c"], "clamp": True},
              "--clamp sets neurons to values: it goes with --neurons id:value"),
    "stride": ("examples", ["-l", "0", "--corpus", "{c}", "--window", "4", "--stride", "5"],
               ("{c}",), {"layer": 0, "window": 4, "stride": 5},
               "--stride must be between 1 and --window 4 (got 5; a longer stride would skip "
               "tokens)"),
    "unpaired": ("patch", ["--clean", "a|b", "--corrupt", "c", "--answer", "x"], (),
                 {"clean": ["a", "b"], "corrupt": ["c"], "answers": ["x"]},
                 "got 2 clean prompts and 1 corrupted prompt (give them in pairs, in the same "
                 "order)"),
    "missing direction": ("neurons", ["-l", "0", "-p", "a", "--from-direction", "/no/d.npz"],
                          (["a"],), {"layers": 0, "direction": "/no/d.npz"},
                          "direction file not found: /no/d.npz (run 'lazarus introspect probe "
                          "--save-direction FILE' first, or check the path)"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_value_is_the_same_line_from_the_api_and_the_cli(llama_dir, files, tmp_path,
                                                                   capsys, case):
    command, argv, inputs, keywords, expected = WRONG[case]
    model = Model(str(llama_dir))
    with pytest.raises(LazarusError) as caught:
        getattr(model, command)(*(filled(i, files) for i in inputs), **keywords)
    assert str(caught.value) == expected
    assert model.loads == 0
    output = tmp_path / "never.json"
    code = main(["introspect", command, "-m", str(llama_dir),
                 *(filled(a, files) for a in argv), "-o", str(output)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [f"lazarus: error: {expected}"]
    assert not output.exists()


@pytest.mark.parametrize("kind", ["ablate", "examples", "neurons", "steer"])
def test_a_direction_file_is_read_once_when_the_options_are_made(files, kind):
    required = {"ablate": {"layers": 0}}.get(kind, {})
    options = OPTIONS[kind](direction=files["{d}"], **required)
    assert isinstance(options.direction, Direction)
    assert options.direction.source == files["{d}"]
    assert options.direction.layer == 1
    with pytest.raises(LazarusError, match="direction=3 is an int; direction takes a Direction"):
        OPTIONS[kind](direction=3, **required)


def test_a_method_whose_default_drifts_from_its_options_fails_at_import():
    class Handle:
        def neurons(self, prompts, layers=-1, *, site="resid_post", position="last",
                    neurons=None, direction=None, top_k=5, labels=None, auto_discover=False,
                    permutations=1000):
            """top_k's default is 5 here, 10 in NeuronsOptions."""

    with pytest.raises(TypeError, match="top_k missing, or with another default than in "
                                        "NeuronsOptions"):
        builds(NeuronsOptions)(Handle.neurons)
    Handle.neurons.__kwdefaults__["top_k"] = 10
    assert builds(NeuronsOptions)(Handle.neurons).__wrapped__ is Handle.neurons
