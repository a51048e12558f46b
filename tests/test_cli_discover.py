"""`lazarus introspect neurons --auto-discover` through the real entry point: a neuron planted in
a tiny model is found; random labels on a random model find nothing, and say so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import PLANTED_A, PLANTED_B, PLANTED_DIM, build_planted
from transformers import AutoModelForCausalLM, AutoTokenizer

from lazarus.cli.main import main

STEMS = ["the cat ", "a long stem ", "hi ", "one two three ", "x", "what is ", "7*8=", "so "]


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    return build_planted(tmp_path_factory.mktemp("planted") / "llama")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_token_states(model_dir, prompts: list[str], layer: int) -> np.ndarray:
    """HF's own output_hidden_states, one prompt at a time (independent of lazarus' capture)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny forwards: threads only add overhead
    try:
        with torch.inference_mode():
            return np.stack([model(**tokenizer(p, return_tensors="pt"), output_hidden_states=True)
                             .hidden_states[layer + 1][0, -1].numpy() for p in prompts])
    finally:
        torch.set_num_threads(threads)


def test_planted_neuron_is_discovered(capsys, tmp_path, planted_dir):
    prompts = ([stem + end for stem, end in zip(STEMS, PLANTED_A, strict=True)]
               + [stem + end for stem, end in zip(STEMS, PLANTED_B, strict=True)])
    labels = ["first"] * 8 + ["last"] * 8
    output = tmp_path / "found.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", planted_dir, "-l", "2",
                         "--prompts", "|".join(prompts), "--labels", "|".join(labels),
                         "--auto-discover", "--top-k", "3", "-o", output)
    assert code == 0, err
    document = json.loads(output.read_text())
    found = document["discovery"]
    assert found["findings"][0]["neuron"] == PLANTED_DIM
    assert document["neurons"][0] == PLANTED_DIM
    assert found["findings"][0]["p_corrected"] < 0.01
    assert (found["effect"], found["labels"], found["permutations"], found["tested"]) == (
        "Cohen's d", ["first", "last"], 1000, 64)
    # the planted effect: Cohen's d of the planted dimension over every stem x ending (64 + 64)
    population_a = [stem + end for stem in STEMS for end in PLANTED_A]
    population_b = [stem + end for stem in STEMS for end in PLANTED_B]
    column = last_token_states(planted_dir, population_a + population_b, 2)[:, PLANTED_DIM]
    a, b = column[:64].astype(np.float64), column[64:].astype(np.float64)
    pooled = np.sqrt((a.var(ddof=1) * 63 + b.var(ddof=1) * 63) / 126)
    planted = (a.mean() - b.mean()) / pooled
    low, high = found["findings"][0]["ci95"]
    assert low <= planted <= high
    # the report says what was tested, how, and what survived
    section = out.split("DISCOVERED NEURONS AT LAYER 2")[1]
    assert "max-statistic" in section
    assert "1000 resamples of prompts within each label" in section
    assert f"{found['survivors']} of 64 neurons survive" in section
    assert f"Neuron   {PLANTED_DIM}: d=" in section
    assert "--auto-discover" in out.split("NEURON STATISTICS")[1]
    # the planted dimension dwarfs the others (+-8 against random values around 0.5)
    assert PLANTED_DIM in [m["neuron"] for m in document["massive_activations"]]
    assert "massive-activation dimensions at this layer" in out


def test_random_labels_on_a_random_model_find_nothing(capsys, tmp_path, llama_dir):
    prompts = ["2+2=", "10*10=", "hello", "The end.", "abc", "x y z", "47*47=", "cat",
               "one", "two", "three", "four", "Paris is", "9-3=", "why?", "ok"]
    labels = list(np.random.default_rng(0).permutation(["u", "v"] * 8))
    output = tmp_path / "none.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1",
                         "--prompts", "|".join(prompts), "--labels", "|".join(labels),
                         "--auto-discover", "--top-k", "4", "--permutations", "500",
                         "-o", output)
    assert code == 3, err  # ran fine, found nothing: the documented status
    found = json.loads(output.read_text())["discovery"]
    assert found["survivors"] == 0
    assert found["findings"] == []
    assert len(found["candidates"]) == 4
    assert found["permutations"] == 500
    assert "No neuron survives" in out
    assert "not findings" in out.split("NEURON STATISTICS")[1]
    assert "survive at corrected" not in out


def test_nothing_found_on_the_demo_model_says_what_it_rules_out(capsys, tmp_path):
    prompts = ["2+3=", "4*2=", "10*10=", "45*45=", "58*67=", "94*39=", "1+1=", "7*7=",
               "33+12=", "81-9=", "5-2=", "60*3=", "12*12=", "9+9=", "70-35=", "8*8="]
    labels = list(np.random.default_rng(1).permutation(["u", "v"] * 8))
    output = tmp_path / "none.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", "lazarus:demo", "-l", "1",
                         "--prompts", "|".join(prompts), "--labels", "|".join(labels),
                         "--auto-discover", "--permutations", "300", "-o", output)
    assert code == 3, err
    found = json.loads(output.read_text())["discovery"]
    assert found["survivors"] == 0
    detectable = found["smallest_detectable"]
    assert (detectable["measure"], detectable["power"]) == ("Cohen's d", 0.8)
    assert detectable["method"].startswith("by simulation")
    assert 1.0 < detectable["effect"] < 10.0  # 8 + 8 prompts, 192 neurons: only a large d
    section = out.split("DISCOVERED NEURONS AT LAYER 1")[1]
    assert (f"Not finding is not absence: an effect of d = {detectable['effect']:.2g} or more "
            "would have been found with 80% power (by simulation") in section
    assert "Welch's F" in section


def test_neurons_chosen_as_the_largest_effects_of_noise_get_no_mark(capsys, tmp_path, llama_dir):
    # random labels: the four shown are the four largest |d| of 64 neurons on these prompts, so
    # their r is large by the choice alone; none survives the correction, so none is marked
    prompts = ["2+2=", "10*10=", "hello", "The end.", "abc", "x y z", "47*47=", "cat",
               "one", "two", "three", "four", "Paris is", "9-3=", "why?", "ok"]
    labels = list(np.random.default_rng(0).permutation(["u", "v"] * 8))
    output = tmp_path / "none.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1",
                         "--prompts", "|".join(prompts), "--labels", "|".join(labels),
                         "--auto-discover", "--top-k", "4", "--permutations", "500",
                         "-o", output)
    assert code == 3, err
    document = json.loads(output.read_text())
    section = out.split("LABEL CORRELATION")[1].split("DISCOVERED NEURONS")[0]
    assert "selected: --auto-discover chose these neurons as the largest effects of the 64" \
        in section
    assert "simultaneous over 64 intervals (Bonferroni)" in section
    assert "no mark: no neuron shown survives" in section
    assert "←" not in section
    verdicts = {effect["verdict"] for label in document["label_correlation"].values()
                for effect in label["neurons"].values()}
    assert verdicts == {None}
    assert document["label_correlation_method"]["chosen_by"] == "effect"
    assert document["label_correlation_method"]["interval_family"] == 64


def test_label_correlation_keeps_the_given_order_and_shows_intervals(capsys, llama_dir):
    prompts = "2+2=|10*10=|45*45=|47*47=|67*83=|3+3="
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1",
                         "--prompts", prompts, "--neurons", "3,4",
                         "--labels", "trivial|trivial|medium|hard|hard|trivial")
    assert code == 0, err
    section = out.split("LABEL CORRELATION")[1]
    assert section.index("trivial (3") < section.index("medium (1") < section.index("hard (2")
    assert "95% interval, exact for values normal" in section
    assert section.count(" [") >= 6  # an interval beside each r (6 prompts, r defined)


@pytest.mark.parametrize("extra, message", [
    ([], "needs --labels"),
    (["--labels", "a|b|a|b", "--neurons", "1,2"], "leave out --neurons"),
    (["--labels", "a|b|a|b", "-l", "0,1"], "one layer"),
    (["--labels", "a|b|a|b", "--position", "all"], "not independent"),
    (["--labels", "a|b|a|b", "--permutations", "0"], "from 1 to 100000"),
])
def test_auto_discover_mistakes_are_one_line(capsys, llama_dir, tmp_path, extra, message):
    output = tmp_path / "never.json"
    argv = ["introspect", "neurons", "-m", llama_dir, "--prompts", "a|b|c|d",
            "--auto-discover", "-o", output, *extra]
    if "-l" not in extra:
        argv[4:4] = ["-l", "1"]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_the_api_passes_auto_discover_through(planted_dir):
    import lazarus

    prompts = ([stem + end for stem, end in zip(STEMS, PLANTED_A, strict=True)]
               + [stem + end for stem, end in zip(STEMS, PLANTED_B, strict=True)])
    model = lazarus.load(str(planted_dir))
    result = model.neurons(prompts, 1, labels=["a"] * 8 + ["b"] * 8, auto_discover=True,
                           permutations=300, top_k=2)
    found = result.layers[0].discovery
    assert found.permutations == 300
    assert found.findings[0].neuron == PLANTED_DIM
    assert result.neurons[0] == PLANTED_DIM
    assert result.to_json()["discovery"]["findings"][0]["neuron"] == PLANTED_DIM
