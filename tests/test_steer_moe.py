"""Steering at an MoE layer's mlp_post (expert units, which exist only for the experts each
token was routed to) against an independent route: the units computed by hand from the raw
expert weights in a hook on Hugging Face's experts module, and the steered model as a forward
hook adding routing weight x the expert's down projection of the vector, by hand, to each token
routed to that expert; one prompt at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_moe import EXPERTS, build_moe, hand_down, hand_units

import lazarus
from lazarus.cli.main import main

LAYER = 0
PROMPTS = ["hello", "the fox"]
POSITIVE, NEGATIVE = ["abc", "xyz"], ["hello", "world"]


@pytest.fixture(scope="module")
def mixtral_dir(tmp_path_factory):
    return build_moe("mixtral", tmp_path_factory.mktemp("steer_moe") / "mixtral")


@pytest.fixture(scope="module")
def model(mixtral_dir):
    return lazarus.load(str(mixtral_dir), device="cpu", use_cache=False)


def _experts(model):
    return model.whole_weights().model.model.layers[LAYER].mlp.experts


def _routed_units(model, prompt: str) -> list[dict[int, np.ndarray]]:
    """Per token of `prompt`, {expert: its units} for the experts it was routed to, by hand."""
    loaded = model.whole_weights()
    experts = _experts(model)
    seen: list[dict[int, np.ndarray]] = []

    def pre(_module, args):
        x, index = args[0], args[1]
        for t in range(x.shape[0]):
            seen.append({int(e): hand_units("mixtral", experts, int(e), x[t:t + 1])[0]
                         .double().numpy() for e in index[t]})

    handle = experts.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            loaded.model(**loaded.tokenizer(prompt, return_tensors="pt"), use_cache=False)
    finally:
        handle.remove()
    return seen


def _hand_log_prob(model, prompt: str, word: str, vector: np.ndarray) -> float:
    """log p(`word`'s tokens | prompt), teacher-forced, with `vector` (all experts' units)
    added to the units of each token's routed experts, by hand."""
    loaded = model.whole_weights()
    experts = _experts(model)
    units = experts.down_proj.shape[2]
    added = torch.tensor(vector, dtype=torch.float32).reshape(EXPERTS, units)

    def post(_module, args, output):
        index, weights = args[1], args[2]
        extra = torch.zeros_like(output)
        for t in range(output.shape[0]):
            for k, e in enumerate(index[t].tolist()):
                extra[t] += weights[t, k] * hand_down("mixtral", experts, e, added[e:e + 1])[0]
        return output + extra

    prompt_ids = loaded.tokenizer(prompt)["input_ids"]
    word_ids = loaded.tokenizer(word, add_special_tokens=False)["input_ids"]
    handle = experts.register_forward_hook(post)
    try:
        with torch.no_grad():
            logits = loaded.model(torch.tensor([prompt_ids + word_ids]), use_cache=False).logits
    finally:
        handle.remove()
    logp = torch.log_softmax(logits[0].double(), dim=-1)
    return float(sum(logp[len(prompt_ids) - 1 + i, w] for i, w in enumerate(word_ids)))


def test_norm_is_over_the_routed_experts_units(model):
    result = model.steer(PROMPTS, LAYER, site="mlp_post", neurons={5: 2.0},
                         coefficients=[1.0], max_tokens=1)
    norms = [float(np.sqrt(sum(np.sum(u ** 2) for u in token.values())))
             for prompt in PROMPTS for token in _routed_units(model, prompt)[1:]]  # BOS out
    assert result.routed_only
    assert result.norm_tokens == len(norms)
    assert result.activation_norm == pytest.approx(float(np.mean(norms)), rel=1e-5)
    assert result.added_fraction(result.runs[1]) == pytest.approx(2.0 / np.mean(norms),
                                                                  rel=1e-5)


def test_contrastive_direction_is_the_routed_mean_difference(model):
    result = model.steer(PROMPTS, LAYER, site="mlp_post", positive=POSITIVE,
                         negative=NEGATIVE, coefficients=[0.3], max_tokens=1)
    units = _experts(model).down_proj.shape[2]

    def means(prompts):
        total, count = np.zeros(EXPERTS * units), np.zeros(EXPERTS * units)
        for prompt in prompts:
            for e, values in _routed_units(model, prompt)[-1].items():  # the last token
                total[e * units:(e + 1) * units] += values
                count[e * units:(e + 1) * units] += 1
        return total, count

    (pos, n_pos), (neg, n_neg) = means(POSITIVE), means(NEGATIVE)
    both = (n_pos > 0) & (n_neg > 0)
    assert both.any()
    assert not both.all()  # some unit is missing on a side: it gets 0
    diff = np.where(both, pos / np.maximum(n_pos, 1) - neg / np.maximum(n_neg, 1), 0.0)
    np.testing.assert_allclose(result.vector, diff / np.linalg.norm(diff), atol=1e-5)
    assert np.isfinite(result.activation_norm)
    assert result.activation_norm > 0


@pytest.mark.filterwarnings("ignore::lazarus.LazarusWarning")  # coefficient 3: past 0.3x
@pytest.mark.parametrize("how", ["neurons", "contrastive"])
def test_steered_log_probs_equal_a_hand_hook_on_the_routed_tokens(model, how):
    word = "abc"
    kwargs = ({"neurons": {5: 2.0, 30: -1.5}, "coefficients": [1.5]} if how == "neurons"
              else {"positive": POSITIVE, "negative": NEGATIVE, "coefficients": [3.0]})
    result = model.steer(PROMPTS, LAYER, site="mlp_post", tokens=[word], max_tokens=1,
                         **kwargs)
    run = result.runs[1]
    added = run.coefficient * result.scale * np.asarray(result.vector, np.float64)
    for index, prompt in enumerate(PROMPTS):
        hand = _hand_log_prob(model, prompt, word, added)
        assert run.log_probs[index][0] == pytest.approx(hand, abs=1e-4)
        unsteered = _hand_log_prob(model, prompt, word, np.zeros_like(added))
        assert result.runs[0].log_probs[index][0] == pytest.approx(unsteered, abs=1e-4)
        assert abs(hand - unsteered) > 1e-3  # the vector moves the model


def test_cli_prints_the_routed_norm(mixtral_dir, tmp_path, capsys):
    out = tmp_path / "s.json"
    code = main(["introspect", "steer", "-m", str(mixtral_dir), "-p", "hello", "-l", "0",
                 "--site", "mlp_post", "--neurons", "5:2", "--compare", "--max-tokens", "2",
                 "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "nan" not in text
    assert "the experts it was routed to" in text

    data = json.loads(out.read_text())
    assert data["norm_routed_units_only"] is True
    assert data["activation_norm"] > 0
