"""Interventions against independent routes: Hugging Face's own forward and `generate` (KV cache
on) on a copy of the model whose weights do what the edit does.

Every edited run here is batched with padding (prompts of different lengths); every reference
run is one prompt at a time through the unhooked copy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lazarus.engine import interventions, measures
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info

PROMPTS = ["hello world", "ab", "the quick brown fox", "x = 3*4"]
NEW_TOKENS = 6
ARCHITECTURES = ("llama", "gpt2")


@pytest.fixture(scope="module")
def loaded_models(tiny_model_dirs):
    return {arch: load_model(read_model_info(str(tiny_model_dirs[arch])), "cpu", "float32")
            for arch in ARCHITECTURES}


def _ids(loaded):
    return [list(loaded.tokenizer(p)["input_ids"]) for p in PROMPTS]


def _reference(model, ids):
    """Per prompt, alone: log-softmax of the next token after the prompt (float64) and the
    greedy continuation from HF's generate with its KV cache."""
    logs, made = [], []
    with torch.no_grad():
        for row in ids:
            logits = model(torch.tensor([row])).logits[0, -1].double()
            logs.append(torch.log_softmax(logits, -1).numpy())
            out = model.generate(torch.tensor([row]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=0, use_cache=True)
            made.append(out[0, len(row):].tolist())
    return logs, made


def _edited(loaded, edits):
    ids = _ids(loaded)
    return measures.next_token(loaded, ids, edits), measures.generate(loaded, ids, NEW_TOKENS,
                                                                     edits)


def _assert_same(loaded, edits, model_copy):
    logs, made = _edited(loaded, edits)
    expected_logs, expected_made = _reference(model_copy, _ids(loaded))
    worst = max(float(np.abs(a - b).max()) for a, b in zip(logs, expected_logs, strict=True))
    print(f"max |log p difference| = {worst:.2e}")
    assert worst < 1e-4
    stop = loaded.tokenizer.eos_token_id
    expected_made = [row[:row.index(stop) + 1] if stop in row else row for row in expected_made]
    assert made == expected_made


def _parts(loaded, layer):
    """(attention output projection, MLP down projection) of block `layer`."""
    model = loaded.model
    if loaded.info.model_type == "gpt2":
        block = model.transformer.h[layer]
        return block.attn.c_proj, block.mlp.c_proj
    block = model.model.layers[layer]
    return block.self_attn.o_proj, block.mlp.down_proj


def _copy_parts(loaded, layer):
    clone = copy.deepcopy(loaded)
    return clone, _parts(clone, layer)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_no_edit_reproduces_the_model(loaded_models, arch):
    loaded = loaded_models[arch]
    _assert_same(loaded, [], loaded.model)
    # An edit of no neurons, and a zero vector added, are exactly the unedited run.
    plain_logs, plain_made = _edited(loaded, [])
    for edit in (interventions.zero(1, "mlp_post", columns=()),
                 interventions.add(2, "resid_post", np.zeros(64, np.float32))):
        logs, made = _edited(loaded, [edit])
        assert all(np.array_equal(a, b) for a, b in zip(logs, plain_logs, strict=True))
        assert made == plain_made


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("site", ["attn_out", "mlp_out"])
def test_zeroing_a_component_equals_zeroing_its_output_weights(loaded_models, arch, site):
    loaded = loaded_models[arch]
    clone, (attention, down) = _copy_parts(loaded, 1)
    projection = attention if site == "attn_out" else down
    with torch.no_grad():
        projection.weight.zero_()
        if projection.bias is not None:
            projection.bias.zero_()
    _assert_same(loaded, [interventions.zero(1, site)], clone.model)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_zeroing_mlp_neurons_equals_zeroing_their_down_projection_inputs(loaded_models, arch):
    loaded = loaded_models[arch]
    neurons = (3, 17, 90, 127)
    clone, (_, down) = _copy_parts(loaded, 2)
    with torch.no_grad():
        if arch == "gpt2":  # Conv1D: weight is [in, out]
            down.weight[list(neurons), :] = 0
        else:  # Linear: weight is [out, in]
            down.weight[:, list(neurons)] = 0
    _assert_same(loaded, [interventions.zero(2, "mlp_post", neurons)], clone.model)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_setting_mlp_neurons_to_values_equals_a_bias_through_the_down_projection(
        loaded_models, arch):
    loaded = loaded_models[arch]
    neurons = [5, 40, 41]
    values = np.array([0.7, -1.3, 2.0], np.float32)
    clone, (_, down) = _copy_parts(loaded, 0)
    with torch.no_grad():
        weight = down.weight.T if arch == "gpt2" else down.weight  # [out, in]
        shift = weight[:, neurons] @ torch.tensor(values)
        weight[:, neurons] = 0
        if down.bias is None:
            down.bias = torch.nn.Parameter(shift.clone())
        else:
            down.bias += shift
    edit = interventions.Edit(0, "mlp_post", "set", tuple(neurons), values=values)
    _assert_same(loaded, [edit], clone.model)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_steering_equals_a_bias_added_at_the_layer(loaded_models, arch):
    loaded = loaded_models[arch]
    vector = np.random.default_rng(1).normal(size=64).astype(np.float32) * 3
    clone, (_, down) = _copy_parts(loaded, 1)  # resid_post of block 1 = ... + down(...)
    with torch.no_grad():
        if down.bias is None:
            down.bias = torch.nn.Parameter(torch.tensor(vector))
        else:
            down.bias += torch.tensor(vector)
    edit = interventions.add(1, "resid_post", vector)
    _assert_same(loaded, [edit], clone.model)
    # and it changes the model's outputs, so the comparison above is not empty
    logs, _ = _edited(loaded, [edit])
    plain, _ = _edited(loaded, [])
    assert max(float(np.abs(a - b).max()) for a, b in zip(logs, plain, strict=True)) > 0.01


def test_hooks_are_removed_even_when_the_forward_fails(loaded_models):
    loaded = loaded_models["llama"]
    bad = interventions.add(1, "resid_post", np.zeros(7, np.float32))  # wrong width
    with pytest.raises(RuntimeError):
        measures.next_token(loaded, _ids(loaded), [bad])
    modules = [m for m in loaded.model.modules()
               if m._forward_hooks or m._forward_pre_hooks]
    assert modules == []


@pytest.mark.parametrize("site", ["attn_out", "mlp_out"])
def test_zeroing_a_component_of_gpt_oss_equals_zeroing_its_output_weights(tiny_model_dirs, site):
    """An MoE model with sliding-window attention: the MLP's output is the experts' weighted
    down projections, so zeroing every expert's down projection and bias zeroes it."""
    loaded = load_model(read_model_info(str(tiny_model_dirs["gpt_oss"])), "cpu", "float32")
    clone = copy.deepcopy(loaded)
    block = clone.model.model.layers[1]
    with torch.no_grad():
        if site == "attn_out":
            block.self_attn.o_proj.weight.zero_()
            block.self_attn.o_proj.bias.zero_()
        else:
            block.mlp.experts.down_proj.zero_()
            block.mlp.experts.down_proj_bias.zero_()
    _assert_same(loaded, [interventions.zero(1, site)], clone.model)


def test_steering_gpt_oss_equals_a_bias_on_every_expert(tiny_model_dirs):
    """gpt-oss weighs its top-k experts by a softmax over them (weights summing to 1), so a vector
    added to every expert's down-projection bias is added once to the block's output."""
    loaded = load_model(read_model_info(str(tiny_model_dirs["gpt_oss"])), "cpu", "float32")
    width = loaded.info.hidden_size
    vector = np.random.default_rng(2).normal(size=width).astype(np.float32) * 3
    clone = copy.deepcopy(loaded)
    with torch.no_grad():
        clone.model.model.layers[1].mlp.experts.down_proj_bias += torch.tensor(vector)
    _assert_same(loaded, [interventions.add(1, "resid_post", vector)], clone.model)
