"""The card's corpus view of MoE expert units, against a hand computation: each document through
the Hugging Face model with a hook of the test's own on the router (its top-k choice and its
input), the expert's units act(gate) * up computed from the raw weights (`test_moe.hand_units`)
on the tokens the router sent to that expert. The view's count is the router's choice count, its
moments, extremes and top values are those of the hand values; unrouted tokens of a shown context
have no value; a scan of several experts' units is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_moe import build_moe, hand_units
from transformers import AutoModelForCausalLM, AutoTokenizer

import lazarus
from lazarus.analyses.scan_summary import summarize
from lazarus.cli.main import main
from lazarus.errors import LazarusError
from lazarus.render.card import render_card
from lazarus.render.card_html import render_card_html

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "big"]
WINDOW = 24
UNITS = 24  # the tiny Mixtral's intermediate size: column e*UNITS + u
LAYER = 1
EXAMPLES = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe_card")
    folder = build_moe("mixtral", root / "mixtral")
    rng = np.random.default_rng(1)
    lines = [" ".join(rng.choice(WORDS, size=12))[:WINDOW].ljust(WINDOW, ".")
             for _ in range(10)]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    return folder, str(corpus), lines, root


def hand(folder, lines) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per document (its tokens after the BOS): the experts the router chose [tokens, k] and
    every expert's units by hand [tokens, E, UNITS] (NaN where not routed)."""
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    mlp = hf.model.layers[LAYER].mlp
    seen: dict = {}

    def on_router(module, args, output):
        seen["x"], seen["index"] = args[0].reshape(-1, args[0].shape[-1]), output[2]

    handle = mlp.gate.register_forward_hook(on_router)
    chosen, units = [], []
    try:
        with torch.no_grad():
            for line in lines:
                ids = tokenizer(line, return_tensors="pt")["input_ids"]
                assert int(ids[0, 0]) == tokenizer.bos_token_id
                hf(input_ids=ids, use_cache=False)
                x, index = seen["x"][1:], seen["index"][1:]  # the BOS is not scored
                values = torch.full((len(x), 4, UNITS), float("nan"))
                for expert in range(4):
                    routed = (index == expert).any(dim=-1)
                    values[routed, expert] = hand_units("mixtral", mlp.experts, expert,
                                                        x[routed])
                chosen.append(index)
                units.append(values)
    finally:
        handle.remove()
    return chosen, units


def test_corpus_view_of_expert_units_equals_the_hand_computation(setup):
    folder, corpus, lines, root = setup
    chosen, units = hand(folder, lines)
    columns = [1 * UNITS + 3, 1 * UNITS + 17, 2 * UNITS + 5]  # two of expert 1, one of 2
    result = lazarus.Model(str(folder)).card(LAYER, neurons=columns, corpus=corpus,
                                             window=WINDOW, examples=EXAMPLES,
                                             work_dir=str(root / "work"))
    scored = sum(len(index) for index in chosen)
    assert result.corpus_tokens == scored
    unrouted = 0
    for unit, column in zip(result.units, columns, strict=True):
        expert, u = divmod(column, UNITS)
        view = unit.corpus
        routed = sum(int((index == expert).any(dim=-1).sum()) for index in chosen)
        values = torch.cat([v[:, expert, u] for v in units]).double().numpy()
        values = values[~np.isnan(values)]
        print(f"E{expert} U{u}: {routed} of {scored} tokens routed, mean {values.mean():.6f}")
        assert 0 < routed < scored
        assert (view.expert, view.count, view.scored_tokens) == (expert, routed, scored)
        assert len(values) == routed
        np.testing.assert_allclose([view.mean, view.std, view.min, view.max],
                                   [values.mean(), values.std(), values.min(), values.max()],
                                   rtol=1e-5, atol=1e-6)
        assert view.fraction_active == pytest.approx(float((values > 0).mean()))
        np.testing.assert_allclose([c.value for c in view.top],
                                   np.sort(values)[::-1][:EXAMPLES], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([c.value for c in view.bottom], np.sort(values)[:EXAMPLES],
                                   rtol=1e-5, atol=1e-6)
        assert sum(view.histogram_counts) == routed
        for context in (*view.top, *view.bottom):  # each shown token: its hand value or none
            first = context.position - context.focus
            want = units[context.document][first:first + len(context.values), expert, u]
            np.testing.assert_allclose(context.values, want.numpy(), rtol=1e-5, atol=1e-6)
            unrouted += int(np.isnan(context.values).sum())
    assert unrouted > 0  # the contexts do show tokens not routed to the expert
    text = render_card(result)
    assert f"routed to expert 1 ({100 * result.units[0].corpus.count / scored:.1f}% of the " \
           f"{scored} scored tokens" in text
    page = render_card_html(result)
    assert 'title="not routed"' in page
    assert "routed to expert 2" in page
    document = result.to_json()["units"][2]["corpus"]
    assert (document["expert"], document["routed_tokens"], document["scored_tokens"]) == (
        2, result.units[2].corpus.count, scored)


def test_examples_of_one_expert_and_refusal_of_several(setup, tmp_path, capsys):
    folder, corpus, lines, root = setup
    chosen, _units = hand(folder, lines)
    routed = sum(int((index == 3).any(dim=-1).sum()) for index in chosen)
    out = tmp_path / "one.json"
    args = ["introspect", "examples", "-m", str(folder), "-l", str(LAYER), "--corpus", corpus,
            "--site", "mlp_post", "--window", str(WINDOW), "--work-dir", str(tmp_path / "w")]
    assert main([*args, "--neurons", f"{3 * UNITS},{3 * UNITS + 1}", "-o", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["tokens"] == routed
    assert document["scored_tokens"] == sum(len(index) for index in chosen)
    capsys.readouterr()
    assert main([*args, "--neurons", f"{3 * UNITS},{3 * UNITS + 1}"]) == 0
    shown = capsys.readouterr().out
    scored = document["scored_tokens"]
    assert (f"10 documents, 10 windows of 24 tokens (stride 24), statistics over the "
            f"{routed} tokens routed to the units' expert ({100 * routed / scored:.1f}% of the "
            f"{scored} scored tokens") in shown
    mixed = tmp_path / "mixed.json"
    assert main([*args, "--neurons", f"{UNITS},{3 * UNITS}", "-o", str(mixed)]) == 2
    err = capsys.readouterr().err.strip()
    print(err)
    assert len(err.splitlines()) == 1
    assert "several experts" in err
    assert not mixed.exists()


def test_summarize_drops_the_unrouted_rows_and_refuses_partly_missing_ones():
    values = np.array([[1, 2], [np.nan, np.nan], [3, -4], [np.nan, np.nan]], np.float32)
    summary = summarize(torch.from_numpy(values), np.arange(12).reshape(4, 3), 2, routed=True)
    assert summary.count == 2
    np.testing.assert_allclose(summary.mean, [2.0, -1.0])
    values[1, 0] = 5.0
    with pytest.raises(LazarusError, match="several experts"):
        summarize(torch.from_numpy(values), np.arange(12).reshape(4, 3), 2, routed=True)
