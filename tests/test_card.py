"""The unit card: each view against an independent route. The weight view against the weights
read by hand from the Hugging Face model (llama, GPT-2's transposed Conv1D, Gemma 2's (1 +
weight) norms, a gpt-oss expert unit, a saved direction); the corpus view against `examples`'
JSON and the shaded contexts against `capture` of each window's text; the ablation against
the loss Hugging Face computes with the neuron zeroed by a hook of the test's own; the CLI's
JSON keys and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import lazarus
from lazarus.cli.main import main
from lazarus.io.directions import Direction
from lazarus.render.card import render_card

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "big",
         "red", "house"]
WINDOW = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Documents of exactly WINDOW characters (one token each, for these tokenizers), so that
    every window is one document."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(12):
        text = " ".join(rng.choice(WORDS, size=12))
        lines.append(text[:WINDOW].ljust(WINDOW, "."))
    path = tmp_path_factory.mktemp("card") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _hand_write(hf, arch: str, layer: int, column: int) -> torch.Tensor:
    """The neuron's write vector and scales, read from the HF modules by hand."""
    if arch == "gpt2":
        block = hf.transformer.h[layer]
        return block.mlp.c_proj.weight[column, :] * hf.transformer.ln_f.weight
    block = hf.model.layers[layer]
    if arch == "gpt_oss":
        down = block.mlp.experts.down_proj  # [E, I, H] or [E, H, I]
        units = down.shape[1] if down.shape[2] == hf.config.hidden_size else down.shape[2]
        expert, unit = divmod(column, units)
        vector = down[expert, unit, :] if down.shape[2] == hf.config.hidden_size \
            else down[expert, :, unit]
        return vector * hf.model.norm.weight
    vector = block.mlp.down_proj.weight[:, column]
    if arch == "gemma2":  # Gemma's norms scale by (1 + weight); the post-MLP norm too
        return vector * (1 + block.post_feedforward_layernorm.weight) * (1 + hf.model.norm.weight)
    return vector * hf.model.norm.weight


@pytest.mark.parametrize(("arch", "column"), [("llama", 5), ("gpt2", 70), ("gemma2", 9),
                                               ("gpt_oss", 262)])
def test_weight_view_equals_the_hand_computation(tiny_model_dirs, arch, column):
    folder = tiny_model_dirs[arch]
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        expected = (hf.lm_head.weight.double() @ _hand_write(hf, arch, 1, column).double()).numpy()
    result = lazarus.load(str(folder)).card(1, neurons=[column], top_k=4)
    unit = result.units[0]
    assert unit.kind == ("expert_unit" if arch == "gpt_oss" else "neuron")
    if arch == "gpt_oss":
        assert (unit.expert, unit.expert_unit) == divmod(column, hf.config.intermediate_size)
    np.testing.assert_allclose(result.to_numpy()[0], expected, rtol=1e-5, atol=1e-6)
    order = np.argsort(-expected, kind="stable")
    assert [t.value for t in unit.weights.promoted] == pytest.approx(expected[order[:4]])
    assert [t.value for t in unit.weights.suppressed] == pytest.approx(
        expected[order[::-1][:4]])
    print(arch, "largest |difference|", np.abs(result.to_numpy()[0] - expected).max())


def test_direction_and_residual_neuron_logit_lens_and_head_has_no_weight_view(llama_dir):
    hf = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    vector = np.random.default_rng(1).normal(size=hf.config.hidden_size).astype(np.float32)
    model = lazarus.load(str(llama_dir))
    result = model.card(2, direction=Direction(vector, layer=2, site="resid_post"), top_k=3)
    with torch.no_grad():
        expected = (hf.lm_head.weight.double() @ (torch.from_numpy(vector).double()
                                                  * hf.model.norm.weight.double())).numpy()
    np.testing.assert_allclose(result.to_numpy()[0], expected, rtol=1e-6)
    assert result.units[0].kind == "direction"
    assert result.units[0].weights.method == "logit lens (final norm x W_U)"
    basis = model.card(2, site="resid_post", neurons=[3]).to_numpy()[0]  # e_3's logit lens
    with torch.no_grad():
        column = (hf.lm_head.weight[:, 3] * hf.model.norm.weight[3]).double().numpy()
    np.testing.assert_allclose(basis, column, rtol=1e-6)
    heads = model.card(1, site="attn_head", neurons=[0, 3])
    assert [u.kind for u in heads.units] == ["head", "head"]
    assert all(u.weights is None and "subspace" in u.notes[0] for u in heads.units)


def test_corpus_view_equals_examples_and_capture(llama_dir, corpus, tmp_path):
    model = lazarus.load(str(llama_dir))
    neurons = [3, 50]
    result = model.card(1, neurons=neurons, corpus=corpus, window=WINDOW, examples=3,
                        work_dir=str(tmp_path))
    card = result.to_json()
    pytest.importorskip("pandas")
    frame = result.to_pandas()
    assert list(frame["neuron"]) == neurons
    assert list(frame["max"]) == [u["corpus"]["max"] for u in card["units"]]
    examples = model.examples(corpus, 1, site="mlp_post", neurons=neurons, window=WINDOW,
                              examples=3, work_dir=str(tmp_path / "other")).to_json()
    documents = Path(corpus).read_text().splitlines()
    assert card["corpus"] == {"path": corpus, "windows": 12, "tokens": 12 * WINDOW}
    largest = 0.0
    for unit, expected in zip(card["units"], examples["neurons"], strict=True):
        view = unit["corpus"]
        assert view["histogram"] == {"edges": expected["histogram_edges"],
                                     "counts": expected["histogram_counts"]}
        assert {f"p{round(q['q'] * 100)}": q["value"] for q in view["quantiles"]} \
            == expected["quantiles"]
        for key, other in (("count", "count"), ("mean", "mean"), ("std", "std"),
                           ("min", "min"), ("max", "max"), ("fraction_active",
                                                            "fraction_positive")):
            assert view[key] == expected[other]
        for kind in ("top", "bottom"):
            assert [c["value"] for c in view[kind]] == [e["value"] for e in expected[kind]]
            for context in view[kind]:
                text = documents[context["document"]]  # one window per document
                first = context["position"] - context["focus"]
                assert "".join(context["tokens"]) == text[first:first + len(context["tokens"])]
                rows = model.capture([text], 1, site="mlp_post", position="all")
                values = rows.to_numpy(1)[0][1:, unit["neuron"]]  # after <s>
                shown = values[first:first + len(context["tokens"])]
                np.testing.assert_allclose(context["values"], shown, atol=1e-5)
                assert context["values"][context["focus"]] == pytest.approx(context["value"],
                                                                           abs=1e-5)
                largest = max(largest, float(np.abs(np.array(context["values"]) - shown).max()))
    print("shaded values against capture: largest |difference|", largest)


def test_ablation_equals_the_loss_change_hugging_face_computes(llama_dir, corpus, tmp_path):
    column, layer = 7, 1
    model = lazarus.load(str(llama_dir))
    result = model.card(layer, neurons=[column], corpus=corpus, window=WINDOW, causal=True,
                        causal_windows=2, controls=3, coefficients=[1.0], max_tokens=3,
                        work_dir=str(tmp_path))
    hf = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    tokenizer = model.tokenizer()
    texts = Path(corpus).read_text().splitlines()[:2]
    ids = torch.tensor([tokenizer(t)["input_ids"] for t in texts])  # <s> + WINDOW tokens

    def zero_input(module, args):
        x = args[0].clone()
        x[..., column] = 0
        return (x,)

    with torch.no_grad():
        base = hf(input_ids=ids, labels=ids).loss.item()
        handle = hf.model.layers[layer].mlp.down_proj.register_forward_pre_hook(zero_input)
        ablated = hf(input_ids=ids, labels=ids).loss.item()
        handle.remove()
    ablation = result.units[0].causal.ablation
    assert (ablation.windows, ablation.tokens, ablation.controls) == (2, 2 * WINDOW, 3)
    assert ablation.effect == pytest.approx(ablated - base, abs=1e-5)
    below = round(ablation.percentile * 3 / 100)  # controls below the unit's effect
    assert ablation.percentile == pytest.approx(100 * below / 3)
    assert ablation.p == pytest.approx((1 + 3 - below) / 4)  # no ties among float effects
    assert f"percentile {ablation.percentile:.0f}, p {ablation.p:.3g} (one-sided: loss " \
        "rising)" in render_card(result)
    steering = result.units[0].causal.steering
    assert [k for k, _ in steering.runs] == [0.0, 1.0]
    assert steering.prompt == texts[0][:8]
    print("ablation effect", ablation.effect, "hugging face", ablated - base)


def test_cli_json_and_refusals(llama_dir, corpus, tmp_path, capsys):
    out = tmp_path / "card.json"
    base = ["introspect", "card", "-m", str(llama_dir), "-l", "1"]
    assert main([*base, "--site", "attn_head", "-n", "1,2", "--corpus", corpus, "--window",
                 str(WINDOW), "--examples", "2", "--work-dir", str(tmp_path / "w"),
                 "-o", str(out)]) == 0
    report = capsys.readouterr().out
    assert "UNIT CARDS - layer 1, attn_head" in report and "L1 H2 (head 2)" in report
    document = json.loads(out.read_text())
    assert list(document) == ["model", "site", "layer", "corpus", "units"]
    assert [u["id"] for u in document["units"]] == ["L1 H1", "L1 H2"]
    assert set(document["units"][0]) == {"id", "kind", "neuron", "expert", "expert_unit",
                                         "weights", "corpus", "causal", "notes"}
    assert document["units"][0]["corpus"]["top"][0]["tokens"]
    for bad, message in (
            (["-n", "1", "--from-direction", str(tmp_path / "d.npz")], "not both"),
            (["-n", "1", "--causal"], "give --corpus"),
            (["-n", "1", "-o", str(tmp_path / "card.csv")], "must end in .json or .html"),
            (["-n", "1", "--top-k", "0"], "--top-k must be at least 1"),
            (["-n", "1", "--prompt", "the cat"], "--prompt steers the unit in the causal view"),
            (["-n", "1", "--corpus", corpus, "--coefficients", "1"],
             "--coefficients steers the unit in the causal view (add --causal"),
            (["-n", "1", "--causal", "--corpus", corpus, "--coefficients", "0"],
             "nothing would be steered: 0 is the unsteered run, always shown (give a "
             "coefficient other than 0, e.g. --coefficients 0.1,0.2)")):
        target = tmp_path / "never.json"
        args = [*base, *bad] if "-o" in bad else [*base, *bad, "-o", str(target)]
        assert main(args) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error
        assert not target.exists()
        assert not (tmp_path / "card.csv").exists()


def test_a_prompt_the_model_ends_at_once_is_said(tmp_path):
    """The demo corpus' first line, "3*4=12", is a whole problem: the demo model ends the text
    after it, so every continuation is empty and the card says why (with --prompt, it does
    not)."""
    model = lazarus.load("lazarus:demo")
    corpus = str(Path(__file__).parent / "data" / "corpus.txt")
    common = {"neurons": [154], "corpus": corpus, "causal": True, "causal_windows": 1,
              "controls": 0, "coefficients": [1.0], "max_tokens": 4, "examples": 1,
              "work_dir": str(tmp_path)}
    unit = model.card(3, **common).units[0]
    assert unit.causal.steering.prompt == "3*4=12"
    assert dict(unit.causal.steering.runs)[0.0] == ""
    assert any(note.startswith("unsteered, the model ends the text right after '3*4=12'")
               for note in unit.notes), unit.notes
    given = model.card(3, prompt="47*47=", **common).units[0]
    assert dict(given.causal.steering.runs)[0.0] != ""
    assert not any(note.startswith("unsteered") for note in given.notes)


def test_controls_are_distinct_units_and_fewer_when_the_site_has_fewer(llama_dir, corpus,
                                                                        tmp_path):
    """A head's controls are the other heads, each once (drawn with replacement, 20 draws of 3
    heads counted some twice and claimed 20 units): their mean and std are those heads' own
    effects'."""
    model = lazarus.load(str(llama_dir))
    heads = AutoModelForCausalLM.from_pretrained(llama_dir).config.num_attention_heads
    common = {"site": "attn_head", "corpus": corpus, "window": WINDOW, "causal": True,
              "causal_windows": 2, "work_dir": str(tmp_path)}
    ablation = model.card(1, neurons=[0], controls=20, **common).units[0].causal.ablation
    assert ablation.controls == heads - 1
    assert ablation.note == (f"the site has {heads - 1} other units: each is a control once "
                             f"({heads - 1}, not the 20 asked)")
    others = [u.causal.ablation.effect for u in model.card(
        1, neurons=list(range(1, heads)), controls=0, **common).units]
    assert ablation.controls_mean == pytest.approx(np.mean(others), abs=1e-9)
    assert ablation.controls_std == pytest.approx(np.std(others, ddof=1), abs=1e-9)
