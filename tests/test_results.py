"""Results that chain and share one surface: a probe result is the direction its .npz reads back,
a neurons (or examples) result gives its neuron ids, and every result type is exported, its
JSON plain, its array and its table holding the JSON's numbers."""

from __future__ import annotations

import json
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import lazarus
from lazarus.errors import LazarusError
from lazarus.io.directions import load_direction
from lazarus.text import json_plain

HARD = ["47*47=", "67*83=", "53*59=", "38*76=", "91*23=", "64*58=", "29*84=", "73*36="]
EASY = ["20+30=", "10*10=", "11+11=", "40+50=", "10+20=", "30*10=", "12+12=", "20*20="]
PROMPTS = ["2+3=", "4*2=", "10*10=", "45*45=", "58*67=", "94*39="]
LABELS = ["easy", "easy", "easy", "hard", "hard", "hard"]
WIDTH = 192  # the demo model's hidden_size (its config.json)
DEMO_LAYERS = 4  # and its num_hidden_layers
RESULT_TYPES = ("Activations", "NeuronsResult", "ProbeResult", "AblationResult", "SteerResult",
                "ExamplesResult")


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """Every result type, once, from the demo model (a probe that beats chance there)."""
    root = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAZARUS_CACHE_DIR", str(root / "cache"))
        model = lazarus.load("lazarus:demo", use_cache=False)
        probe = model.probe(HARD, EASY, label_a="hard", label_b="easy",
                            test=["45*45=", "2+3="], test_labels=["hard", "easy"])
        assert probe.significant, "the chaining tests need a probe that beats chance"
        npz = str(root / "difficulty.npz")
        probe.save_direction(npz)
        corpus = root / "corpus.txt"
        corpus.write_text("\n".join(f"{a}*{b}={a * b}" for a in range(3, 12) for b in range(5, 9))
                          + "\n")
        yield SimpleNamespace(
            model=model, probe=probe, npz=npz, corpus=str(corpus), root=root,
            activations=model.capture(PROMPTS, layers="0,-1"),
            neurons=model.neurons(PROMPTS, layers="0,2", neurons=[5, 3, 9, 100, 17, 60],
                                  labels=LABELS),
            ablation=model.ablate(PROMPTS[:3], 1, answers=["5", "8", "100"], neurons=[3, 40],
                                  controls=0),
            sweep=model.ablate(PROMPTS[:3], "0,1", neurons=[3, 40], controls=2, sweep=True),
            steer=model.steer(PROMPTS[:2], 1, neurons={3: 4.0}, coefficients=[-2, 2],
                              tokens=["1", "0"], max_tokens=4),
            examples=model.examples(str(corpus), 1, neurons=[5, 3, 9], examples=4, window=8,
                                    work_dir=str(root / "work")))


def without(document: dict, *keys: str) -> dict:
    return {key: value for key, value in document.items() if key not in keys}


# --- chaining ---------------------------------------------------------------------------------


def test_a_probe_result_is_the_direction_its_npz_reads_back(found):
    given, saved = found.probe.to_direction(), load_direction(found.npz)
    assert given.direction.dtype == saved.direction.dtype == np.float32
    assert np.array_equal(given.direction, saved.direction)
    assert np.array_equal(given.importance, saved.importance)
    for key in ("layer", "label_positive", "label_negative", "model_id", "method", "ranking",
                "site", "position"):
        assert getattr(given, key) == getattr(saved, key), key
    assert given.layer == found.probe.best_layer


def test_neurons_of_a_probe_result_equal_the_npz_route(found):
    layer = found.probe.best_layer
    chained = found.model.neurons(PROMPTS, layers=layer, direction=found.probe, top_k=6,
                                  labels=LABELS)
    filed = found.model.neurons(PROMPTS, layers=layer, direction=found.npz, top_k=6,
                                labels=LABELS)
    assert len(chained.neurons) == 6
    assert chained.neurons == filed.neurons
    assert chained.weights == filed.weights
    assert np.array_equal(chained.to_numpy(), filed.to_numpy())
    assert without(chained.to_json(), "neuron_selection") == without(filed.to_json(),
                                                                     "neuron_selection")
    assert chained.selection.startswith(f"top 6 of the probe's direction (layer {layer})")
    assert filed.selection.startswith(f"top 6 of {found.npz}")


def test_ablate_steer_and_examples_take_a_probe_result_as_its_npz(found):
    model, layer = found.model, found.probe.best_layer
    ablated = [model.ablate(PROMPTS[:3], layer, answers=["5", "8", "100"], direction=given,
                            top_k=3, controls=2).to_json() for given in (found.probe, found.npz)]
    assert without(ablated[0], "neuron_selection") == without(ablated[1], "neuron_selection")
    neurons = model.neurons(PROMPTS[:3], layers=layer, direction=found.npz, top_k=3)
    assert ablated[1]["neuron_selection"] == neurons.selection  # said the same way, once
    steered = [model.steer(PROMPTS[:2], direction=given, coefficients=[0.3], tokens=["1"],
                           max_tokens=3).to_json() for given in (found.probe, found.npz)]
    assert steered[0]["layer"] == layer
    assert without(steered[0], "source") == without(steered[1], "source")
    examples = [model.examples(found.corpus, layer, direction=given, top_k=3, examples=2,
                               window=8, work_dir=str(found.root / f"chained{k}")).to_json()
                for k, given in enumerate((found.probe, found.npz))]
    assert len(examples[0]["neurons"]) == 3
    assert (without(examples[0], "work_dir", "neuron_choice")
            == without(examples[1], "work_dir", "neuron_choice"))


def test_a_probe_result_beating_no_chance_is_refused_as_its_save_direction_is(llama_dir,
                                                                             tmp_path):
    model = lazarus.Model(str(llama_dir))
    probe = model.probe(["2+2=", "3+3=", "1+1=", "4+4="], ["47*47=", "38*92=", "74*21=", "19*83="],
                        layers=0, permutations=10)
    assert not probe.significant
    with pytest.raises(LazarusError) as saving:
        probe.save_direction(str(tmp_path / "d.npz"))
    with pytest.raises(LazarusError) as chaining:
        model.ablate(["2+3="], 0, direction=probe)
    assert str(chaining.value) == str(saving.value)
    assert str(saving.value).startswith("no layer beats chance (p = ")
    assert not (tmp_path / "d.npz").exists()


def test_a_neurons_result_gives_its_neuron_ids(found):
    model, ids = found.model, [7, 3, 150]
    first = model.neurons(PROMPTS[:2], layers=0, neurons=ids)
    assert list(first.neurons) == ids
    assert (model.neurons(PROMPTS[2:], layers=1, neurons=first, labels=LABELS[2:]).to_json()
            == model.neurons(PROMPTS[2:], layers=1, neurons=ids, labels=LABELS[2:]).to_json())
    assert (model.ablate(PROMPTS[:2], 1, neurons=first, controls=3, seed=4).to_json()
            == model.ablate(PROMPTS[:2], 1, neurons=ids, controls=3, seed=4).to_json())


def test_an_examples_result_gives_its_neuron_ids(found):
    chained = found.model.neurons(PROMPTS, layers=1, neurons=found.examples)
    assert list(chained.neurons) == [5, 3, 9]  # the ids the examples were asked for, in order
    assert chained.to_json() == found.model.neurons(PROMPTS, layers=1, neurons=[5, 3, 9]).to_json()


# --- one surface ------------------------------------------------------------------------------


def test_every_result_type_is_exported_from_lazarus():
    for name in RESULT_TYPES:
        assert name in lazarus.__all__
        kind = getattr(lazarus, name)
        assert kind.__name__ == name
        assert kind.__module__.startswith("lazarus.results.")
        for method in ("to_json", "to_numpy", "to_pandas"):
            assert callable(getattr(kind, method)), (name, method)
    assert callable(lazarus.NeuronsResult.plot)
    assert callable(lazarus.ProbeResult.plot)


@pytest.mark.parametrize("name", ["activations", "neurons", "probe", "ablation", "sweep", "steer",
                                  "examples"])
def test_to_json_is_plain_json(found, name):
    document = getattr(found, name).to_json()
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_json_plain_leaves_only_json_types():
    given = {"a": (1, np.int64(2), (np.float32(0.5), float("nan"))), "b": [np.bool_(True), None],
             "c": float("-inf"), "d": "text", "e": np.float64(1e300)}
    assert json_plain(given) == {"a": [1, 2, [0.5, None]], "b": [True, None], "c": None,
                                 "d": "text", "e": 1e300}
    assert [type(v) for v in json_plain(given)["a"][:2]] == [int, int]
    assert type(json_plain(given)["b"][0]) is bool


def test_activations_as_array_and_table(found):
    document, acts = found.activations.to_json(), found.activations
    assert document["layers"] == [0, DEMO_LAYERS - 1]
    values = acts.to_numpy()
    assert values.shape == (2, len(PROMPTS), WIDTH)
    for k, layer in enumerate(document["layers"]):
        assert np.array_equal(values[k], np.array(document["activations"][str(layer)],
                                                  dtype=np.float32))
    table = acts.to_pandas()
    assert list(table.columns) == ["layer", "prompt_index", "prompt", "neuron", "value"]
    assert len(table) == 2 * len(PROMPTS) * WIDTH
    row = table[(table.layer == 3) & (table.prompt_index == 4) & (table.neuron == 17)]
    assert row.prompt.tolist() == [PROMPTS[4]]
    assert row.value.tolist() == [document["activations"]["3"][4][17]]


def test_neurons_as_array_and_table(found):
    result, document = found.neurons, found.neurons.to_json()
    values = result.to_numpy()
    assert values.shape == (2, len(PROMPTS), 6)
    for k, layer in enumerate((0, 2)):
        assert values[k].tolist() == document["by_layer"][str(layer)]["activations"]
    ids = [5, 3, 9, 100, 17, 60]  # the capture of every neuron, another route to layer 0's
    assert np.array_equal(values[0], found.activations.to_numpy(0)[:, ids])
    table = result.to_pandas()
    assert list(table.columns) == ["layer", "prompt_index", "prompt", "label", "neuron", "value"]
    assert len(table) == 2 * len(PROMPTS) * 6
    assert document["neurons"] == ids
    cells = table[(table.layer == 2) & (table.neuron == 3)]
    assert cells.label.tolist() == LABELS
    assert cells.value.tolist() == [row[1] for row in document["by_layer"]["2"]["activations"]]


def test_probe_as_array_and_table(found):
    scores = ["accuracy", "accuracy_std", "baseline", "baseline_std", "heldout_separation"]
    document = found.probe.to_json()
    assert [row["layer"] for row in document["layers"]] == list(range(DEMO_LAYERS))
    expected = [[math.nan if row[key] is None else row[key] for key in scores]
                for row in document["layers"]]
    assert np.array_equal(found.probe.to_numpy(), np.array(expected), equal_nan=True)
    table = found.probe.to_pandas()
    assert list(table.columns) == ["layer", *scores]
    assert table.layer.tolist() == list(range(DEMO_LAYERS))
    assert table.accuracy.tolist() == [row["accuracy"] for row in document["layers"]]


def test_ablation_with_answers_as_array_and_table(found):
    document = found.ablation.to_json()
    (condition,) = document["conditions"]
    drops = [prompt["baseline"]["answer_log_prob"] - ablated["answer_log_prob"]
             for prompt, ablated in zip(document["prompts"], condition["ablated"], strict=True)]
    values = found.ablation.to_numpy()
    assert values.shape == (1, 3)
    assert values[0].tolist() == drops
    assert values[0].mean() == pytest.approx(condition["effect"], rel=1e-6, abs=1e-9)
    table = found.ablation.to_pandas()
    assert list(table.columns) == [
        "condition", "layers", "prompt_index", "prompt", "answer", "label",
        "baseline_continuation", "continuation", "baseline_log_prob", "log_prob",
        "baseline_reproduces", "reproduces", "change"]
    assert table.prompt.tolist() == PROMPTS[:3]
    assert table.answer.tolist() == ["5", "8", "100"]
    assert table.layers.tolist() == ["1"] * 3
    assert table.log_prob.tolist() == [o["answer_log_prob"] for o in condition["ablated"]]
    assert table.change.tolist() == drops


def test_a_sweep_without_answers_as_array_and_table(found):
    document = found.sweep.to_json()
    kl = [[o["kl"] for o in condition["ablated"]] for condition in document["conditions"]]
    values = found.sweep.to_numpy()
    assert values.shape == (2, 3)  # two layers swept, three prompts
    assert values.tolist() == kl
    for row, condition in zip(values, document["conditions"], strict=True):
        assert row.mean() == pytest.approx(condition["effect"], rel=1e-6, abs=1e-12)
    table = found.sweep.to_pandas()
    assert list(table.columns) == ["condition", "layers", "prompt_index", "prompt", "answer",
                                   "label", "baseline_continuation", "continuation", "kl",
                                   "change"]
    assert table.layers.tolist() == ["0"] * 3 + ["1"] * 3
    assert table.kl.tolist() == kl[0] + kl[1]


def test_steer_as_array_and_table(found):
    document = found.steer.to_json()
    runs = [[run["coefficient"] for run in prompt["runs"]] for prompt in document["prompts"]]
    assert runs == [[0.0, -2.0, 2.0]] * 2  # coefficient 0 first
    values = found.steer.to_numpy()
    assert values.shape == (3, 2, 2)  # runs x prompts x tokens
    for i, prompt in enumerate(document["prompts"]):
        for r, run in enumerate(prompt["runs"]):
            assert values[r, i].tolist() == [run["token_log_probs"][t] for t in ("1", "0")]
    table = found.steer.to_pandas()
    assert list(table.columns) == ["coefficient", "prompt_index", "prompt", "added_norm",
                                   "added_fraction", "continuation", "token", "log_prob",
                                   "log_prob_change"]
    assert len(table) == 3 * 2 * 2
    cells = table[(table.coefficient == 2.0) & (table.prompt_index == 1) & (table.token == "0")]
    run = document["prompts"][1]["runs"][2]
    assert cells.log_prob.tolist() == [run["token_log_probs"]["0"]]
    assert cells.log_prob_change.tolist() == [run["token_log_prob_changes"]["0"]]
    assert cells.continuation.tolist() == [run["continuation"]]
    assert cells.added_norm.tolist() == [2.0 * 4.0]  # absolute: coefficient x the value
    assert cells.added_fraction.tolist() == [run["added_fraction"]]


def test_examples_as_array_and_table(found):
    document = found.examples.to_json()
    assert [n["neuron"] for n in document["neurons"]] == [5, 3, 9]
    values = found.examples.to_numpy()
    assert values.shape == (3, 2, 4)  # neurons x (top, bottom) x examples
    for k, neuron in enumerate(document["neurons"]):
        assert values[k, 0].tolist() == [e["value"] for e in neuron["top"]]
        assert values[k, 1].tolist() == [e["value"] for e in neuron["bottom"]]
    assert (np.diff(values[:, 0], axis=1) <= 0).all()  # highest first
    table = found.examples.to_pandas()
    assert list(table.columns) == [
        "model", "layer", "site", "kind", "rank", "value", "doc", "window", "token", "before",
        "text", "after", "neuron", "count", "mean", "std", "fraction_positive", "min", "max",
        "p1", "p5", "p25", "p50", "p75", "p95", "p99"]
    assert len(table) == 3 * 2 * 4
    bottom = table[(table.neuron == 3) & (table.kind == "bottom")]
    assert bottom["rank"].tolist() == [1, 2, 3, 4]
    assert bottom.text.tolist() == [e["text"] for e in document["neurons"][1]["bottom"]]


def test_to_pandas_without_pandas_names_the_extra(found, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    for result in (found.activations, found.probe, found.steer):
        with pytest.raises(LazarusError, match=r"pip install 'lazarus\[pandas\]'"):
            result.to_pandas()
