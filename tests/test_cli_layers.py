"""Several layers, other sites and per-token positions through the real entry point.

Oracles: HF's `output_hidden_states` of each prompt alone; the tokenizer's own tokens; single
layer runs (themselves checked against HF in test_cli_neurons.py); numpy's nan-aware statistics
over the values the JSON holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lazarus.analyses import selection
from lazarus.cli.main import main
from lazarus.io.directions import Direction, load_direction

PROMPTS = ["2+2=", "10*10=", "45*45=", "47*47=", "x"]
LABELS = ["easy", "easy", "hard", "hard", "easy"]
SPEC_KEYS = {"model_id", "layer", "neurons", "prompts", "labels", "activations", "stats"}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def neurons_json(capsys, tmp_path: Path, model: Path, *extra) -> tuple[dict, str]:
    output = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", model, "-p", "|".join(PROMPTS),
                         "-o", output, *extra)
    assert code == 0, err
    return json.loads(output.read_text()), out


def test_a_repeated_layer_option_is_an_error(capsys, llama_dir):
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "0", "-l",
                         "2", "-p", "a", "-n", "1")
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "-l was given twice" in err


@pytest.mark.parametrize(("given", "words"), [("5", "layer 5 is out of range"),
                                              ("0-99", "layer 99 is out of range"),
                                              ("0,0", "layer 0 is listed twice"),
                                              ("3-1", "runs backwards"),
                                              ("all,1", "'all' stands alone"),
                                              ("one", "is not a layer number")])
def test_bad_layer_lists_are_one_line(capsys, llama_dir, given, words):
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", given, "-p", "a")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert words in err


def test_several_layers_equal_one_at_a_time_with_a_cross_layer_view(capsys, llama_dir,
                                                                    tmp_path):
    labels = ["--labels", "|".join(LABELS), "-n", "3,17"]
    several, out = neurons_json(capsys, tmp_path, llama_dir, "-l", "0,2-3", *labels)
    assert several["layers"] == [0, 2, 3]
    assert out.index("AT LAYER 0") < out.index("AT LAYER 2") < out.index("AT LAYER 3") \
        < out.index("NEURONS ACROSS LAYERS")
    # the marks are uncorrected, and each layer examines the neurons again: the note says so
    assert out.count("uncorrected, 2 neurons examined at each of 3 layers") == 3
    for layer in (0, 2, 3):
        single, _ = neurons_json(capsys, tmp_path, llama_dir, "-l", str(layer), *labels)
        part = several["by_layer"][str(layer)]
        assert part["activations"] == single["activations"]
        assert part["stats"] == single["stats"]
        assert part["label_correlation"] == single["label_correlation"]
        for neuron in ("3", "17"):
            mean = np.mean(np.array(single["activations"])[:, [3, 17].index(int(neuron))])
            assert several["across_layers"]["mean"][neuron][str(layer)] == pytest.approx(mean)
            hard = [row for row, label in zip(single["activations"], LABELS, strict=True)
                    if label == "hard"]
            assert several["across_layers"]["label_means"]["hard"][neuron][str(layer)] == \
                pytest.approx(np.mean(np.array(hard)[:, [3, 17].index(int(neuron))]))


def test_one_layer_keeps_the_spec_format(capsys, llama_dir, tmp_path):
    document, _ = neurons_json(capsys, tmp_path, llama_dir, "-l", "1", "-n", "3")
    assert document.keys() >= SPEC_KEYS
    assert "by_layer" not in document
    assert (document["site"], document["position"]) == ("resid_post", "last")


def hidden_states(model_dir: Path, prompt: str, layer: int) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        output = model(**tokenizer(prompt, return_tensors="pt"), output_hidden_states=True)
    return output.hidden_states[layer + 1][0].numpy()


def test_every_token_position_gives_tokens_and_their_values(capsys, llama_dir, tmp_path):
    document, out = neurons_json(capsys, tmp_path, llama_dir, "-l", "1", "--position", "all",
                                 "-n", "3,17")
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    assert document["position"] == "all"
    for index, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt)["input_ids"]
        assert document["tokens"][index] == [tokenizer.decode([i]) for i in ids]
        expected = hidden_states(llama_dir, prompt, 1)[:, [3, 17]]
        assert np.allclose(document["activations"][index], expected, atol=1e-5)
        assert f"{index + 1}. {prompt}" in out
    # the statistics are over the prompts' own tokens: the BOS the tokenizer puts first is not
    skip = [int(tokenizer(p)["input_ids"][0] == tokenizer.bos_token_id) for p in PROMPTS]
    assert all(skip)  # this tokenizer adds BOS, so the test tells the two rules apart
    own = np.concatenate([np.array(a)[n:] for a, n in zip(document["activations"], skip,
                                                          strict=True)])
    assert document["stats"]["3"]["mean"] == pytest.approx(own[:, 0].mean())
    assert "PER-TOKEN VALUES AT LAYER 1" in out
    assert "NEURON ACTIVATION MAP" not in out


@pytest.mark.parametrize("position", ["first", "-2", "mean"])
def test_other_positions_equal_the_prompt_alone(capsys, llama_dir, tmp_path, position):
    document, _ = neurons_json(capsys, tmp_path, llama_dir, "-l", "2", "--position", position,
                               "-n", "3,17")
    for index, prompt in enumerate(PROMPTS):
        states = hidden_states(llama_dir, prompt, 2)[:, [3, 17]]
        expected = {"first": states[0], "-2": states[-2], "mean": states.mean(axis=0)}[position]
        assert np.allclose(document["activations"][index], expected, atol=1e-5)


def test_moe_units_count_only_routed_tokens(capsys, tiny_model_dirs, tmp_path):
    experts_units = 4 * 128
    document, out = neurons_json(capsys, tmp_path, tiny_model_dirs["gpt_oss"], "-l", "1",
                                 "--site", "mlp_post", "-n", "0,130,260,390")
    assert document["site_width"] == experts_units
    assert document["moe"]["expert_unit"]["260"] == [2, 4]
    values = np.array([[np.nan if v is None else v for v in row]
                       for row in document["activations"]])
    routed = ~np.isnan(values)
    assert routed.sum() == 2 * len(PROMPTS)  # each last token went to 2 of the 4 experts
    for column, neuron in enumerate(document["neurons"]):
        stats = document["stats"][str(neuron)]
        count = int(routed[:, column].sum())
        if count == 0:
            assert stats["mean"] is None
            continue
        assert stats["mean"] == pytest.approx(np.nanmean(values[:, column]))
        assert stats["std"] == pytest.approx(np.nanstd(values[:, column]))
        if count < len(PROMPTS):
            assert stats["count"] == count
            assert f"n={count} of {len(PROMPTS)}" in out


def test_a_neuron_beyond_the_sites_width_is_one_line(capsys, llama_dir):
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "0", "--site",
                       "mlp_post", "-p", "a", "-n", "128")
    assert code == 2
    assert err.strip().splitlines() == [
        "lazarus: error: neuron 128 is out of range: the mlp_post site has at most 128 neurons "
        "at any layer of this model (config.json: intermediate_size = 128; use ids 0 to 127)"]


def test_probe_on_mlp_neurons_at_the_mean_saves_where_it_read(capsys, llama_dir, tmp_path):
    saved = tmp_path / "direction.npz"
    code, _, err = run(capsys, "introspect", "probe", "-m", llama_dir, "--class-a",
                       "2+2=|3+3=|4+4=", "--class-b", "abc|xyz|qrs", "-l", "1-2", "--site",
                       "mlp_post", "--position", "mean", "--save-direction", saved, "--force-save")
    assert code == 3, err  # 3 + 3 prompts cannot beat chance; the file is forced
    direction = load_direction(str(saved))
    assert (direction.site, direction.position, direction.hidden_size) == ("mlp_post", "mean",
                                                                          128)
    assert direction.layer in (1, 2)


@pytest.mark.parametrize(("extra", "words"), [
    (["--position", "all"], "this command needs one per prompt"),
    (["--position", "middle"], "position 'middle' is not one of"),
])
def test_probe_positions_it_cannot_use_are_one_line(capsys, llama_dir, extra, words):
    code, _, err = run(capsys, "introspect", "probe", "-m", llama_dir, "--class-a", "a|b",
                       "--class-b", "c|d", *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert words in err


def test_per_token_columns_beyond_the_sites_width_are_one_line(capsys, llama_dir, tmp_path):
    output = tmp_path / "never.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1", "--site",
                         "mlp_post", "--position", "all", "-p", "ab|c", "-n", "5,200", "-o",
                         output)
    assert code == 2
    assert out == ""
    assert err.strip().splitlines() == [  # from config.json, before the weights load
        "lazarus: error: neuron 200 is out of range: the mlp_post site has at most 128 neurons "
        "at any layer of this model (config.json: intermediate_size = 128; use ids 0 to 127)"]
    assert not output.exists()


def test_negative_layer_lists_are_values_not_options(capsys, llama_dir, tmp_path):
    negative, _ = neurons_json(capsys, tmp_path, llama_dir, "-l", "-1,-3", "-n", "3")
    positive, _ = neurons_json(capsys, tmp_path, llama_dir, "-l", "3,1", "-n", "3")
    assert negative["layers"] == positive["layers"] == [3, 1]
    assert negative["by_layer"] == positive["by_layer"]


def test_labels_over_tokens_count_tokens(capsys, llama_dir, tmp_path):
    document, out = neurons_json(capsys, tmp_path, llama_dir, "-l", "1", "--position", "all",
                                 "-n", "3", "--labels", "|".join(LABELS))
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    bos = tokenizer.convert_ids_to_tokens(tokenizer.bos_token_id)
    assert all(t[0] == bos for t in document["tokens"])  # BOS first: counted in the map only
    tokens = {label: sum(len(t) - 1 for t, lab in zip(document["tokens"], LABELS, strict=True)
                         if lab == label) for label in set(LABELS)}
    assert document["label_correlation"]["hard"]["count"] == tokens["hard"]
    assert f"hard ({tokens['hard']} tokens):" in out


def test_a_direction_from_another_site_or_position_is_named(capsys, llama_dir, tmp_path):
    saved = tmp_path / "mlp.npz"
    code, _, err = run(capsys, "introspect", "probe", "-m", llama_dir, "--class-a",
                       "2+2=|3+3=|4+4=", "--class-b", "abc|xyz|qrs", "-l", "1", "--site",
                       "mlp_post", "--save-direction", saved, "--force-save")
    assert code == 3, err  # 3 + 3 prompts cannot beat chance; the file is forced
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1", "-p", "a|b",
                       "--from-direction", saved, "--site", "mlp_post", "--position", "mean")
    assert code == 0, err
    assert (f"lazarus: warning: {saved} was made at position last, you are reading position "
            "mean (add --position last to match)") in err
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1", "-p", "a|b",
                       "--from-direction", saved, "--position", "-1")
    assert code == 2
    assert err.splitlines() == [f"lazarus: error: {saved} was made at site mlp_post, not "
                                "resid_post (add --site mlp_post)"]
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1", "-p", "a|b",
                       "--from-direction", saved, "--site", "mlp_post", "--position", "-1")
    assert code == 0, err
    assert "position" not in err  # -1 is the last token


@pytest.mark.parametrize("option", [["-n", "1", "-n", "2"], ["--site", "mlp_post", "--site",
                                                              "attn_out"],
                                    ["--position", "last", "--position", "first"]])
def test_options_given_twice_are_an_error(capsys, llama_dir, option):
    code, out, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "0", "-p", "a",
                         *option)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"{option[0]} was given twice" in err


def test_a_direction_used_at_more_layers_than_its_own_is_a_warning(capsys, llama_dir, tmp_path):
    saved = tmp_path / "resid.npz"
    code, _, err = run(capsys, "introspect", "probe", "-m", llama_dir, "--class-a",
                       "2+2=|3+3=|4+4=", "--class-b", "abc|xyz|qrs", "-l", "1",
                       "--save-direction", saved, "--force-save")
    assert code == 3, err  # 3 + 3 prompts cannot beat chance; the file is forced
    code, _, err = run(capsys, "introspect", "neurons", "-m", llama_dir, "-l", "1,3", "-p",
                       "a|b", "--from-direction", saved)
    assert code == 0, err
    assert f"lazarus: warning: {saved} was made at layer 1, and is also used at layer 3" in err


@pytest.mark.parametrize(("layers", "source", "said"), [
    ((2,), "d.npz", "d.npz was made at layer 1, you are analysing layer 2"),
    ((2, 3), "d.npz", "d.npz was made at layer 1, you are analysing layers 2, 3"),
    ((1, 2, 3), "d.npz", "d.npz was made at layer 1, and is also used at layers 2, 3"),
    ((1, 3), "probe (layer 1)", "probe (layer 1): also used at layer 3"),
    ((3,), "probe (layer 1)", "probe (layer 1): you are analysing layer 3"),
])
def test_a_direction_used_at_other_layers_says_which(layers, source, said):
    warned = []
    direction = Direction(np.ones(4) / 2, layer=1, source=source)
    selection._check_made(direction, "m", layers, "resid_post", None, warned.append)
    assert warned == [said]
