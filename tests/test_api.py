"""The public API: the README's example, a handle that loads once, results that convert, the
CLI's JSON and CSV, and progress over the prompts given."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lazarus
from lazarus.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"
PROMPTS = ["2+3=", "4*2=", "10*10=", "45*45=", "58*67=", "94*39="]
LABELS = ["easy", "easy", "easy", "hard", "hard", "hard"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path / "cache"))


def cli_json(capsys, tmp_path, *arguments: str) -> dict:
    path = tmp_path / "cli.json"
    assert main(["introspect", *arguments, "-o", str(path)]) == 0
    capsys.readouterr()
    return json.loads(path.read_text())


def test_readme_example_runs_and_equals_the_cli(capsys, tmp_path, monkeypatch):
    code = re.search(r"<!-- api-example:start -->\n```python\n(.*?)```", README.read_text(),
                     re.S).group(1)
    monkeypatch.chdir(tmp_path)
    space: dict = {}
    exec(compile(code, "README.md", "exec"), space)  # noqa: S102 - our own README
    capsys.readouterr()
    assert space["model"].loads == 1, "every call of the example shares one load"
    expected = cli_json(capsys, tmp_path, "neurons", "-m", "lazarus:demo", "-l", "0",
                        "-p", "|".join(PROMPTS), "--from-direction", "difficulty.npz",
                        "--top-k", "6", "--labels", "|".join(LABELS))
    assert space["document"] == expected
    probe = cli_json(capsys, tmp_path, "probe", "-m", "lazarus:demo",
                     "--class-a", "|".join(space["hard"]), "--class-b", "|".join(space["easy"]),
                     "--label-a", "hard", "--label-b", "easy")
    assert space["probe"].to_json() == probe
    # the table holds the same numbers as the JSON's activations
    table = space["table"]
    for i, prompt in enumerate(PROMPTS):
        for j, neuron in enumerate(expected["neurons"]):
            cell = table[(table.prompt == prompt) & (table.neuron == neuron)]["value"]
            assert cell.tolist() == [expected["activations"][i][j]]


def test_a_handle_loads_once_and_only_what_it_must(tiny_model_dirs):
    folder = str(tiny_model_dirs["llama"])
    model = lazarus.Model(folder, use_cache=False, whole=False)
    assert model.loads == 0
    first = model.capture(PROMPTS, layers=1)
    again = model.neurons(PROMPTS, layers=[0, 1], neurons=[3, 5])
    assert model.loads == 1, "a second call on layers already loaded does not reload"
    assert np.array_equal(again.to_numpy(1), first.to_numpy(1)[:, [3, 5]])
    model.capture(PROMPTS, layers=-1)  # deeper than the blocks loaded: one more load
    assert model.loads == 2
    model.capture(PROMPTS[:2], layers=0)
    assert model.loads == 2
    whole = lazarus.load(folder, use_cache=False)
    whole.capture(PROMPTS, layers=0)
    whole.capture(PROMPTS, layers=-1)
    assert whole.loads == 1


def test_capture_equals_the_models_own_hidden_states(tiny_model_dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model_dirs["llama"]
    acts = lazarus.load(str(folder), use_cache=False).capture(PROMPTS, layers="0,1")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    stacked = acts.to_numpy()  # [layers, prompts, width]
    assert stacked.shape == (2, len(PROMPTS), model.config.hidden_size)
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**ids, output_hidden_states=True).hidden_states
        for k, layer in enumerate((0, 1)):
            expected = hidden[layer + 1][0, -1].numpy()
            assert np.max(np.abs(stacked[k, i] - expected)) < 1e-5
    table = acts.to_pandas()
    assert len(table) == 2 * len(PROMPTS) * model.config.hidden_size
    row = table[(table.layer == 1) & (table.prompt_index == 2) & (table.neuron == 7)]
    assert row["value"].tolist() == [float(stacked[1, 2, 7])]


def test_api_mistakes_are_lazarus_errors(tiny_model_dirs):
    model = lazarus.load(str(tiny_model_dirs["llama"]), use_cache=False)
    with pytest.raises(lazarus.LazarusError, match="out of range"):
        model.capture(PROMPTS, layers=99)
    with pytest.raises(lazarus.LazarusError, match="one string"):
        model.capture("2+3=", layers=0)
    with pytest.raises(lazarus.LazarusError, match="got 1 label for 6 prompts"):
        model.neurons(PROMPTS, layers=0, labels=["a"])
    for bad in ([-1], [1.5], ["5"], [True]):
        with pytest.raises(lazarus.LazarusError, match="not a whole number from 0"):
            model.neurons(PROMPTS, layers=0, neurons=bad)
    with pytest.raises(lazarus.LazarusError, match="prompt 2 of 2 is empty"):
        model.capture(["2+3=", " "], layers=0)
    assert model.loads == 0, "refused before loading"


def test_progress_counts_the_prompts_given(tiny_model_dirs):
    model = lazarus.load(str(tiny_model_dirs["llama"]))
    calls: list[tuple[int, int, str]] = []
    model.capture(PROMPTS[:3], layers=0)  # fills the cache for three prompts
    given = PROMPTS + PROMPTS[4:]  # six distinct (three cached), two repeated
    model.capture(given, layers=0, progress=lambda *call: calls.append(call))
    assert {total for _, total, _ in calls} == {len(given)}
    assert calls[-1][0] == len(given)
    dones = [done for done, _, _ in calls]
    assert dones == sorted(dones)
    assert "3 from the cache, 2 repeated" in calls[-1][2]
    assert any("loading" in detail for _, _, detail in calls)


def test_csv_rows_equal_the_json(capsys, tmp_path):
    common = ["introspect", "neurons", "-m", "lazarus:demo", "-l", "0,2", "-p", "|".join(PROMPTS),
              "--labels", "|".join(LABELS), "-n", "78,191,5"]
    assert main([*common, "-o", str(tmp_path / "out.json")]) == 0
    assert main([*common, "-o", str(tmp_path / "out.csv")]) == 0
    capsys.readouterr()
    document = json.loads((tmp_path / "out.json").read_text())
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert len(rows) == 2 * len(PROMPTS) * 3
    for row in rows:
        layer = document["by_layer"][row["layer"]]
        i, j = int(row["prompt_index"]), document["neurons"].index(int(row["neuron"]))
        assert row["prompt"] == PROMPTS[i]
        assert row["label"] == LABELS[i]
        assert float(row["value"]) == layer["activations"][i][j]


def test_many_prompts_print_a_limited_map_with_the_rest_summarised(capsys, tmp_path):
    prompts = [f"{a}+{b}=" for a in range(10, 22) for b in range(10, 20)]  # 120
    common = ["introspect", "neurons", "-m", "lazarus:demo", "-l", "1", "-p", "|".join(prompts),
              "-n", "7,8", "-o", str(tmp_path / "all.json")]
    assert main(common) == 0
    out = capsys.readouterr().out
    values = np.array(json.loads((tmp_path / "all.json").read_text())["activations"])
    assert len(out.splitlines()) < 2 * 51 + 30  # 2 x 120 rows without the limit
    assert "the first 50 of 120 prompts, then the mean of the other 70" in out
    map_part = out.split("ASCII HEATMAP")[0]
    shown = [line for line in map_part.splitlines() if line.split(" |")[0].strip() in prompts]
    assert [line.split(" |")[0].strip() for line in shown] == prompts[:50]
    rest = next(line for line in map_part.splitlines() if line.startswith("… 70 more: mean"))
    printed = [float(cell) for cell in rest.split("|")[1:3]]
    decimals = len(rest.split("|")[1].strip().split(".")[1])
    assert printed == [round(float(v), decimals) for v in values[50:].mean(axis=0)]
    assert main([*common, "--max-rows", "0"]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 240


def test_colour_heatmap_codes_reach_the_terminal_and_nothing_else_does():
    from lazarus.render.grid import render_heatmap
    from lazarus.results.activations import ActivationMatrix
    from lazarus.text import terminal_safe

    matrix = ActivationMatrix(values=np.array([[-4.0, 0.0], [2.0, 4.0]], np.float32),
                              prompts=("\x1b[31mevil", "fine"), neurons=(1, 2), layer=0)
    text = terminal_safe(render_heatmap(matrix, 1, color=True), keep_color=True)
    rows = [line for line in text.splitlines() if "|" in line and "Prompt" not in line]
    # -4, the most negative: RdBu's deepest blue #053061, nearest xterm colour 24 (#005f87);
    # +4, the largest: its deepest red #67001f, nearest xterm colour 52 (#5f0000)
    assert "\x1b[48;5;24m    " in rows[0].split("|")[1]
    assert "\x1b[48;5;52m    " in rows[1].split("|")[2]
    assert "\x1b[31m" not in text  # the prompt's own escape sequence is shown, not obeyed
    assert "\\x1b[31mevil" in text
    plain = render_heatmap(matrix, 1)
    assert "\x1b" not in plain


@pytest.mark.integration
def test_help_examples_are_real_commands():
    from lazarus.cli.parser import build_parser

    for command in ("neurons", "probe", "ablate", "steer"):
        shown = subprocess.run([sys.executable, "-m", "lazarus.cli.main", "introspect", command,
                                "--help"], capture_output=True, text=True, check=True).stdout
        examples = shown.split("examples:")[1].replace("\\\n", " ")
        lines = [line.strip() for line in examples.splitlines() if line.strip()]
        assert len(lines) >= 2
        for line in lines:
            import shlex

            words = shlex.split(line)
            assert words[:3] == ["lazarus", "introspect", command]
            build_parser().parse_args(words[1:])  # parses, or exits with a usage error


@pytest.mark.integration
def test_progress_on_a_terminal_starts_before_the_load_and_counts_the_prompts_given(tmp_path):
    import os
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    prompts = "2+3=|4*2=|2+3=|45*45="  # four given, three distinct
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "lazarus.cli.main", "introspect", "neurons", "-m", "lazarus:demo",
         "-l", "0", "-p", prompts, "-n", "1", "--no-cache"],
        stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks: list[tuple[float, str]] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append((time.monotonic() - started, data.decode(errors="replace")))
    out, _ = child.communicate(timeout=60)
    ended = time.monotonic() - started
    os.close(leader)
    assert child.returncode == 0
    assert b"NEURON ACTIVATION MAP" in out
    shown = "".join(text for _, text in chunks)
    first_time, first_text = chunks[0]
    assert "capturing [" in first_text
    assert "loading lazarus:demo" in shown
    assert first_time < ended - 0.5, "the bar shows while importing and loading, not after"
    assert "4/4" in shown
    assert "1 repeated" in shown
