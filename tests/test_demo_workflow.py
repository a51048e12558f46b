"""The spec's workflow on the shipped demo model finds something real, on held-out prompts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lazarus.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import train_demo_model  # noqa: E402


def held_out(prompts: list[str], count: int) -> list[str]:
    chosen = [p for p in prompts if train_demo_model.is_held_out(p)][:count]
    assert len(chosen) == count
    return chosen


def test_probe_hard_vs_easy_beats_its_baseline_and_neurons_agree(capsys, tmp_path):
    hard = held_out([f"{a}*{b}=" for a in range(23, 99, 7) for b in range(31, 99, 11)], 12)
    easy = held_out([f"{a}+{b}=" for a in range(10) for b in range(10)]
                    + [f"{a}*{b}=" for a in range(10) for b in range(10)], 12)
    direction = tmp_path / "difficulty.npz"
    probe_json = tmp_path / "probe.json"
    code = main(["introspect", "probe", "-m", "lazarus:demo", "--class-a", "|".join(hard[:8]),
                 "--label-a", "hard", "--class-b", "|".join(easy[:8]), "--label-b", "easy",
                 "--save-direction", str(direction), "-o", str(probe_json)])
    assert code == 0, capsys.readouterr().err
    layers = json.loads(probe_json.read_text())["layers"]
    margins = [row["accuracy"] - row["baseline"] for row in layers]
    print("accuracy - shuffled baseline per layer:", margins)
    assert max(margins) >= 0.3  # clearly above chance somewhere

    best = json.loads(probe_json.read_text())["best_layer"]
    output = tmp_path / "neurons.json"
    new_prompts = hard[8:] + easy[8:]  # prompts the probe never saw
    labels = ["hard"] * 4 + ["easy"] * 4
    code = main(["introspect", "neurons", "-m", "lazarus:demo", "-l", str(best),
                 "--prompts", "|".join(new_prompts), "--from-direction", str(direction),
                 "--top-k", "6", "--labels", "|".join(labels), "-o", str(output)])
    out = capsys.readouterr().out
    assert code == 0
    correlation = json.loads(output.read_text())["label_correlation"]
    top = str(json.loads(output.read_text())["neurons"][0])
    hard_mean = correlation["hard"]["neurons"][top]["mean"]
    easy_mean = correlation["easy"]["neurons"][top]["mean"]
    verdicts = {correlation[label]["neurons"][top]["verdict"] for label in ("hard", "easy")}
    print(f"top neuron {top}: hard mean {hard_mean:+.3f}, easy mean {easy_mean:+.3f}")
    assert verdicts == {"high", "low"}  # fires differently for the two labels
    assert "fires high for" in out
