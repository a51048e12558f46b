"""The attn_head and resid_pre sites against independent routes, batched with padding, on llama,
gpt2 (whose W_O is a transposed Conv1D) and gpt-oss (MoE).

Oracles, none of them lazarus's hooks: a forward pre-hook written here on the attention output
projection, each prompt run alone; W_O's weights sliced per head by hand; the model's own
`output_hidden_states`; copies of the model with W_O's columns for a head set to zero, or with
a hook here that substitutes a head's columns (mean, resample, patch). The families refused are
built on the meta device from tests/tiny_configs.py.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from tiny_configs import tiny_config
from tiny_models import LAYERS, _spread_weights, build_tokenizer

import lazarus
from lazarus.engine import measures
from lazarus.engine.capture import capture, tokenize
from lazarus.engine.interventions import Edit
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.patching import Metric, as_sources, score_jobs
from lazarus.engine.sites import check_neurons_early, decoder_blocks, locate
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError

PROMPTS = ["2+2=", "The capital of France is", "x y", "47*47=2209"]  # padded in one batch
FAMILIES = ("llama", "gpt2", "gpt_oss")
LAYERS_READ = (0, 2)
HEADS = 4
TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {arch: load_model(read_model_info(str(tiny_model_dirs[arch]))) for arch in FAMILIES}


def projection(loaded, layer: int) -> torch.nn.Module:
    """W_O, found here by each family's own attribute names."""
    block = decoder_blocks(loaded.model, LAYERS)[layer]
    return block.attn.c_proj if hasattr(block, "attn") else block.self_attn.o_proj


def per_head(loaded, layer: int) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 ([heads, head_dim, out] W_O rows per head, [out] bias or None)."""
    module = projection(loaded, layer)
    weight = module.weight.detach().double().numpy()
    rows = weight if type(module).__name__ == "Conv1D" else weight.T  # [in, out]
    bias = None if module.bias is None else module.bias.detach().double().numpy()
    return rows.reshape(HEADS, rows.shape[0] // HEADS, rows.shape[1]), bias


def alone(loaded, prompt: str, layer: int) -> np.ndarray:
    """[tokens, heads * head_dim]: W_O's input for one prompt, by a pre-hook written here."""
    seen = {}
    handle = projection(loaded, layer).register_forward_pre_hook(
        lambda module, args: seen.__setitem__("z", args[0][0].double().numpy()))
    try:
        with torch.inference_mode():
            loaded.model(**loaded.tokenizer(prompt, return_tensors="pt"))
    finally:
        handle.remove()
    return seen["z"]


def worst(actual, expected) -> float:
    difference = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    print(f"max |difference| {difference:.2g}")
    return difference


@pytest.mark.parametrize("arch", FAMILIES)
def test_raw_heads_equal_a_pre_hook_on_the_output_projection(models, arch):
    loaded = models[arch]
    raw = capture(loaded, PROMPTS, CaptureRequest(LAYERS_READ, "attn_head", "all", raw=True),
                  token_budget=40, max_batch=3)
    for layer in LAYERS_READ:
        for index, prompt in enumerate(PROMPTS):
            assert worst(raw[layer][index], alone(loaded, prompt, layer)) <= TOLERANCE


@pytest.mark.parametrize("arch", FAMILIES)
def test_heads_through_their_w_o_slices_sum_to_attn_out(models, arch):
    loaded = models[arch]
    raw = capture(loaded, PROMPTS, CaptureRequest(LAYERS_READ, "attn_head", "all", raw=True))
    attn = capture(loaded, PROMPTS, CaptureRequest(LAYERS_READ, "attn_out", "all"))
    for layer in LAYERS_READ:
        weights, bias = per_head(loaded, layer)
        for index in range(len(PROMPTS)):
            z = raw[layer][index].astype(np.float64).reshape(-1, HEADS, weights.shape[1])
            summed = sum(z[:, h] @ weights[h] for h in range(HEADS))
            summed = summed if bias is None else summed + bias
            assert worst(summed, attn[layer][index]) <= TOLERANCE
            assert np.abs(attn[layer][index]).max() > 1e-2  # not trivially zero


@pytest.mark.parametrize("position", ["all", "last", "mean"])
@pytest.mark.parametrize("arch", FAMILIES)
def test_a_head_is_read_as_the_norm_of_what_it_writes(models, arch, position):
    loaded = models[arch]
    read = capture(loaded, PROMPTS, CaptureRequest(LAYERS_READ, "attn_head", position),
                   token_budget=40, max_batch=3)
    for layer in LAYERS_READ:
        weights, _ = per_head(loaded, layer)
        for index, prompt in enumerate(PROMPTS):
            z = alone(loaded, prompt, layer).reshape(-1, HEADS, weights.shape[1])
            norms = np.stack([np.linalg.norm(z[:, h] @ weights[h], axis=-1)
                              for h in range(HEADS)], axis=-1)  # [tokens, heads]
            expected = {"all": norms, "last": norms[-1], "mean": norms.mean(axis=0)}[position]
            assert np.shape(read[layer][index]) == expected.shape
            assert worst(read[layer][index], expected) <= TOLERANCE


@pytest.mark.parametrize("arch", FAMILIES)
def test_resid_pre_is_the_stream_entering_the_block(models, arch):
    loaded = models[arch]
    pre = capture(loaded, PROMPTS, CaptureRequest((0, 1, 2), "resid_pre", "all"),
                  token_budget=40, max_batch=3)
    post = capture(loaded, PROMPTS, CaptureRequest((0, 1), "resid_post", "all"),
                   token_budget=40, max_batch=3)
    for index, prompt in enumerate(PROMPTS):
        with torch.inference_mode():
            hidden = loaded.model(**loaded.tokenizer(prompt, return_tensors="pt"),
                                  output_hidden_states=True).hidden_states
        for layer in (0, 1, 2):
            assert worst(pre[layer][index], hidden[layer][0].double().numpy()) <= TOLERANCE
        for layer in (0, 1):
            assert worst(pre[layer + 1][index], post[layer][index]) <= TOLERANCE


@pytest.mark.parametrize("arch", FAMILIES)
def test_zero_ablating_a_head_equals_zeroing_its_w_o_columns(models, arch):
    loaded, layer, head = models[arch], 1, 2
    ids = tokenize(loaded, PROMPTS)
    edited = measures.next_token(loaded, ids, [Edit(layer, "attn_head", "set", (head,))])
    model = copy.deepcopy(loaded.model)
    module = projection(dataclasses.replace(loaded, model=model), layer)
    size = module.weight.shape[0 if type(module).__name__ == "Conv1D" else 1] // HEADS
    with torch.no_grad():
        if type(module).__name__ == "Conv1D":
            module.weight[head * size:(head + 1) * size] = 0
        else:
            module.weight[:, head * size:(head + 1) * size] = 0
    copied = measures.next_token(dataclasses.replace(loaded, model=model), ids)
    baseline = measures.next_token(loaded, ids)
    for mine, theirs, base in zip(edited, copied, baseline, strict=True):
        assert worst(mine, theirs) <= 1e-5
        assert np.abs(mine - base).max() > 1e-3  # the head mattered


def hooked_answer_log_prob(loaded, layer: int, head: int, prompt: str, answer: str,
                           values: np.ndarray) -> float:
    """The answer's log-probability with head `head`'s columns of W_O's input replaced, at
    token t, by `values[min(t, last)]` (a hook written here; one prompt alone)."""
    size = values.shape[-1]
    prompt_ids, answer_ids = measures.answer_ids(loaded, prompt, answer)

    def substitute(module, args):
        z = args[0].clone()
        index = torch.arange(z.shape[1]).clamp(max=values.shape[0] - 1)
        z[0, :, head * size:(head + 1) * size] = torch.as_tensor(values, dtype=z.dtype)[index]
        return (z, *args[1:])

    handle = projection(loaded, layer).register_forward_pre_hook(substitute)
    try:
        with torch.inference_mode():
            logits = loaded.model(torch.tensor([prompt_ids + answer_ids])).logits[0].double()
    finally:
        handle.remove()
    log_p = torch.log_softmax(logits, dim=-1)
    return float(sum(log_p[len(prompt_ids) - 1 + j, token]
                     for j, token in enumerate(answer_ids)))


@pytest.mark.parametrize("method", ["mean", "resample"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_mean_and_resample_of_a_head_set_its_raw_columns(models, tiny_model_dirs, arch, method):
    loaded, layer, head = models[arch], 1, 3
    answers = ["4", "Paris", "z", "0"]
    result = lazarus.load(str(tiny_model_dirs[arch])).ablate(
        PROMPTS, layer, answers=answers, neurons=[head], site="attn_head", method=method,
        controls=0, seed=3)
    raw = [alone(loaded, prompt, layer) for prompt in PROMPTS]
    size = raw[0].shape[1] // HEADS
    columns = [z[:, head * size:(head + 1) * size] for z in raw]  # [tokens, head_dim] each
    for index, (prompt, answer) in enumerate(zip(PROMPTS, answers, strict=True)):
        if method == "mean":
            values = np.concatenate(columns).mean(axis=0, keepdims=True)
        else:
            values = columns[result.resampled_from[index]]
        expected = hooked_answer_log_prob(loaded, layer, head, prompt, answer, values)
        got = result.conditions[0].outcomes[index].answer_log_prob
        assert abs(got - expected) <= 1e-4, (got, expected)
        assert abs(got - result.baseline[index].answer_log_prob) > 1e-4  # something changed


@pytest.mark.parametrize("arch", FAMILIES)
def test_patching_one_head_equals_a_hook_substituting_its_columns(models, arch):
    loaded, layer, head = models[arch], 1, 1
    clean, corrupt = "47*47=2209", "47*46=2209"
    ids = tokenize(loaded, [clean, corrupt, "x y"])  # the third, shorter, pads the batch
    source = capture(loaded, [clean], CaptureRequest((layer,), "attn_head", "all",
                                                     raw=True))[layer][0]
    answer, wrong = ids[0][-1], ids[1][-2]
    metric = Metric("logit_diff", answer=(answer,) * 3, wrong=(wrong,) * 3)
    edit = Edit(layer, "attn_head", "patch", sources=as_sources(loaded, [source]),
                jobs=(None, (0, None, (head,)), None))  # job 1: the corrupt run, patched
    scores = score_jobs(loaded, ids, [0, 1, 2], [edit], metric)
    size = source.shape[1] // HEADS
    values = source[:, head * size:(head + 1) * size]

    def substitute(module, args):
        z = args[0].clone()
        z[0, :, head * size:(head + 1) * size] = torch.as_tensor(values, dtype=z.dtype)
        return (z, *args[1:])

    handle = projection(loaded, layer).register_forward_pre_hook(substitute)
    try:
        with torch.inference_mode():
            logits = loaded.model(torch.tensor([ids[1]])).logits[0, -1].double()
    finally:
        handle.remove()
    expected = float(logits[answer] - logits[wrong])
    print(f"patched {scores[1]:.6f} hooked {expected:.6f}")
    assert abs(scores[1] - expected) <= 1e-4
    with torch.inference_mode():
        plain = loaded.model(torch.tensor([ids[1]])).logits[0, -1].double()
    assert abs(float(plain[answer] - plain[wrong]) - expected) > 1e-4  # the patch mattered


def test_a_head_id_beyond_the_configs_count_is_refused_before_loading(llama_dir):
    config = read_model_info(str(llama_dir)).config
    with pytest.raises(LazarusError, match="head 4 is out of range: the attn_head site has "
                                           r"4 heads at layer 1 \(use ids 0 to 3\)"):
        check_neurons_early(config, 64, "attn_head", 1, [1, 4])
    check_neurons_early(config, 64, "attn_head", 1, [0, 3])  # within: no error


def test_steering_a_head_is_refused_in_one_line(llama_dir):
    model = lazarus.load(str(llama_dir))
    with pytest.raises(LazarusError) as caught:
        model.steer(["2+2="], 1, neurons={1: 2.0}, site="attn_head")
    assert "\n" not in str(caught.value)
    assert "an attn_head unit is read as a head's write norm" in str(caught.value)


def meta_model(family: str):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(tiny_config(family))


# Families whose attention does not hand its output projection the heads side by side, or whose
# blocks have no attention: refused in one line naming the family (part of the reason here).
REFUSED = {
    "mamba": "has no attention module",  # state-space blocks
    "rwkv": "no attention output projection",  # a linear-attention recurrence
    "jetmoe": "no attention output projection",  # mixture of attention heads (experts)
    "deepseek_v4": "no attention output projection",  # grouped low-rank output projection
    "longcat_flash": "no attention output projection",  # two attentions per block
    "inkling_text": "its heads are not side by side",  # heads counted under other keys
}
# Families accepted, with the module that is W_O: the names the brief of issue 21 lists.
ACCEPTED = {
    "gpt_neox": "attention.dense", "opt": "self_attn.out_proj", "falcon": "self_attention.dense",
    "bloom": "self_attention.dense", "phi": "self_attn.dense", "phi3": "self_attn.o_proj",
    "mixtral": "self_attn.o_proj", "qwen3_moe": "self_attn.o_proj",
    "gpt_neo": "attn.attention.out_proj",
}


@pytest.mark.parametrize("family", sorted(REFUSED))
def test_a_family_without_heads_side_by_side_is_refused_in_one_line(family):
    model = meta_model(family)
    with pytest.raises(LazarusError) as caught:
        locate(model, 3, 0, "attn_head")
    message = str(caught.value)
    assert "\n" not in message
    assert REFUSED[family] in message
    assert family in message


@pytest.mark.parametrize("family", sorted(ACCEPTED))
def test_the_output_projection_of_each_family_is_found(family):
    model = meta_model(family)
    block = decoder_blocks(model, 3)[1]
    site = locate(model, 3, 1, "attn_head")
    module = block
    for name in ACCEPTED[family].split("."):
        module = getattr(module, name)
    assert site.module is module
    assert site.group == 8  # tiny_configs: 4 heads of 8


@pytest.mark.parametrize("family", sorted(ACCEPTED))
def test_each_accepted_family_reads_its_heads_exactly(family, tmp_path):
    """Built for real (width 32, 4 heads of 8): the raw capture equals a pre-hook here on the
    module named in ACCEPTED, and the read value each head's write norm by hand."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(family), dtype=torch.float32)
    _spread_weights(model, 0)
    model.save_pretrained(tmp_path)
    build_tokenizer(add_bos=True).save_pretrained(tmp_path)
    loaded = load_model(read_model_info(str(tmp_path)))
    module = decoder_blocks(loaded.model, 3)[1]
    for name in ACCEPTED[family].split("."):
        module = getattr(module, name)
    raw = capture(loaded, PROMPTS, CaptureRequest((1,), "attn_head", "all", raw=True))[1]
    read = capture(loaded, PROMPTS, CaptureRequest((1,), "attn_head", "all"))[1]
    rows = module.weight.detach().double().numpy().T.reshape(HEADS, 8, -1)  # [heads, 8, out]
    seen = {}
    handle = module.register_forward_pre_hook(
        lambda _module, args: seen.__setitem__("z", args[0][0].double().numpy()))
    try:
        for index, prompt in enumerate(PROMPTS):
            with torch.inference_mode():
                loaded.model(**loaded.tokenizer(prompt, return_tensors="pt"))
            assert worst(raw[index], seen["z"]) <= TOLERANCE
            z = seen["z"].reshape(-1, HEADS, 8)
            norms = np.stack([np.linalg.norm(z[:, h] @ rows[h], axis=-1)
                              for h in range(HEADS)], -1)
            assert worst(read[index], norms) <= TOLERANCE
    finally:
        handle.remove()
