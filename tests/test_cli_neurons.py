"""`lazarus introspect neurons` through the real entry point, on a tiny local Llama."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lazarus.cli.main import main

SPEC_PROMPTS = ["2+2=", "10*10=", "45*45=", "47*47=", "67*83="]
SPEC_LABELS = ["trivial", "trivial", "medium", "hard", "hard"]
SECTIONS = ["NEURON ACTIVATION MAP AT LAYER", "ASCII HEATMAP", "NEURON STATISTICS",
            "LABEL CORRELATION"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def oracle(model_dir: Path, prompts: list[str], layer: int) -> np.ndarray:
    """Last-token hidden states from HF's own output_hidden_states, one prompt at a time."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rows = []
    with torch.inference_mode():
        for prompt in prompts:
            hidden = model(**tokenizer(prompt, return_tensors="pt"), output_hidden_states=True)
            rows.append(hidden.hidden_states[layer + 1][0, -1].numpy())
    return np.stack(rows)


def section_positions(text: str) -> list[int]:
    return [text.index(title) for title in SECTIONS if title in text]


def test_spec_example_specific_neurons(capsys, llama_dir, tmp_path):
    output = tmp_path / "analysis.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "2",
                         "--prompts", "|".join(SPEC_PROMPTS), "--neurons", "8,19,16,9",
                         "--labels", "|".join(SPEC_LABELS), "-o", output)
    assert code == 0, err
    positions = section_positions(out)
    assert len(positions) == 4 and positions == sorted(positions), out
    assert "NEURON ACTIVATION MAP AT LAYER 2" in out
    for prompt in SPEC_PROMPTS:
        assert sum(line.startswith(prompt) for line in out.splitlines()) >= 2  # map + heatmap

    document = json.loads(output.read_text())
    expected = oracle(llama_dir, SPEC_PROMPTS, 2)[:, [8, 19, 16, 9]]
    activations = np.array(document["activations"])
    assert activations.shape == (5, 4)
    np.testing.assert_allclose(activations, expected, atol=1e-5)
    assert document["neurons"] == [8, 19, 16, 9]
    assert document["prompts"] == SPEC_PROMPTS
    assert document["labels"] == SPEC_LABELS
    assert document["layer"] == 2
    assert document["model_id"] == str(llama_dir)
    assert "neuron_weights" not in document
    for column, neuron in enumerate([8, 19, 16, 9]):
        stats = document["stats"][str(neuron)]
        values = expected[:, column].astype(np.float64)
        assert stats["min"] == pytest.approx(values.min(), abs=1e-5)
        assert stats["max"] == pytest.approx(values.max(), abs=1e-5)
        assert stats["mean"] == pytest.approx(values.mean(), abs=1e-5)
        assert stats["std"] == pytest.approx(np.sqrt(np.mean((values - values.mean()) ** 2)),
                                             abs=1e-5)
    assert "saved" in err


def test_from_direction_takes_top_k_by_absolute_weight(capsys, llama_dir, tmp_path):
    weights = np.zeros(64, dtype=np.float32)
    weights[[5, 3, 60, 7]] = [0.9, -0.5, 0.3, 0.01]
    direction_file = tmp_path / "difficulty.npz"
    np.savez(direction_file, direction=weights, layer=np.array(1), label_positive=np.array("hard"),
             label_negative=np.array("easy"))
    output = tmp_path / "out.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1",
                         "--prompts", "2+2=|10*10=|45*45=|47*47=|67*83=|97*89=",
                         "--from-direction", direction_file, "--top-k", "3", "-o", output)
    assert code == 0, err
    document = json.loads(output.read_text())
    assert document["neurons"] == [5, 3, 60]
    assert document["neuron_weights"] == pytest.approx({"5": 0.9, "3": -0.5, "60": 0.3})
    assert "LABEL CORRELATION" not in out
    assert "hard" in out.split("NEURON STATISTICS")[1]  # what a positive weight means
    assert err.count("warning") == 0  # same layer, no model id in the file


def test_direction_from_another_layer_warns(capsys, llama_dir, tmp_path):
    direction_file = tmp_path / "d.npz"
    np.savez(direction_file, direction=np.ones(64, np.float32), layer=np.array(3),
             model_id=np.array("someone/else"))
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1",
                       "--prompts", "2+2=|3+3=", "--from-direction", direction_file)
    assert code == 0
    assert "layer 3" in err
    assert "someone/else" in err


def test_prompts_from_file_and_negative_layer(capsys, llama_dir, tmp_path):
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("2+2=\n\n10*10=\n45*45=\n")
    output = tmp_path / "out.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "-1",
                         "--prompts", f"@{prompt_file}", "--neurons", "0,63", "-o", output)
    assert code == 0, err
    assert "NEURON ACTIVATION MAP AT LAYER 3" in out
    document = json.loads(output.read_text())
    assert document["prompts"] == ["2+2=", "10*10=", "45*45="]
    assert document["layer"] == 3
    assert document["labels"] is None


def test_without_neuron_choice_shows_the_most_variable(capsys, llama_dir, tmp_path):
    output = tmp_path / "out.json"
    prompts = ["2+2=", "47*47=", "hello", "The end."]
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1",
                       "--prompts", "|".join(prompts), "--top-k", "4", "-o", output)
    assert code == 0, err
    expected_order = np.argsort(-oracle(llama_dir, prompts, 1).std(axis=0), kind="stable")[:4]
    assert json.loads(output.read_text())["neurons"] == [int(i) for i in expected_order]


@pytest.mark.integration
def test_help_answers_without_importing_torch():
    code = (
        "import sys\n"
        "from lazarus.cli.main import main\n"
        "try:\n"
        "    main(['introspect', 'neurons', '--help'])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "output_hidden_states[L + 1]" in result.stdout  # the definitions are in --help
    assert "--from-direction" in result.stdout


@pytest.mark.integration
def test_console_script_is_installed():
    result = subprocess.run(["lazarus", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("lazarus ")
