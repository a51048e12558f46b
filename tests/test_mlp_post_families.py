"""mlp_post in families whose down projection has a name of its own: GPT-J's and CodeGen's
`mlp.fc_out` (after act(fc_in)), LFM2's `feed_forward.w2`, RecurrentGemma's
`mlp_block.down_proj`, ModernBERT-decoder's `mlp.Wo` (each after act(gate)·up). Their neurons
are read, and ablated, as a hook on that projection's input sees them and as zeroing its input
columns does, in a padded batch against each prompt run alone."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tiny_configs import tiny_config
from tiny_models import build_config

from lazarus.engine import interventions, measures
from lazarus.engine.capture import capture
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.trace import CaptureRequest

PROMPTS = ["hello world", "ab", "the quick brown fox"]  # of different lengths: padded
# family: (its blocks, the down projection inside a block)
DOWN = {"gptj": ("transformer.h", "mlp.fc_out"), "codegen": ("transformer.h", "mlp.fc_out"),
        "lfm2": ("model.layers", "feed_forward.w2"),
        "recurrent_gemma": ("model.layers", "mlp_block.down_proj"),
        "modernbert-decoder": ("model.layers", "mlp.Wo")}
FAMILIES = tuple(DOWN)
LAYER = 1


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    # weights wider than HF's init, so that the MLP is not nearly linear
    return {family: load_model(read_model_info(str(build_config(
        tiny_config(family), tmp_path_factory.mktemp(family), add_bos=False, scale=0.1))),
        "cpu", "float32") for family in FAMILIES}


def _down(model, family, layer):
    blocks, down = DOWN[family]
    return model.get_submodule(blocks)[layer].get_submodule(down)


def _ids(loaded):
    return [list(loaded.tokenizer(p)["input_ids"]) for p in PROMPTS]


@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_post_is_the_input_of_fc_out(loaded, family):
    model = loaded[family]
    seen = []
    handle = _down(model.model, family, LAYER).register_forward_pre_hook(
        lambda _m, args: seen.append(args[0][0, -1].clone()))
    try:
        with torch.no_grad():
            for ids in _ids(model):
                model.model(torch.tensor([ids]))
    finally:
        handle.remove()
    rows = capture(model, PROMPTS, CaptureRequest((LAYER,), "mlp_post"))[LAYER]
    difference = float(np.abs(np.asarray(rows) - torch.stack(seen).numpy()).max())
    print(f"max |difference| {difference:.2g}")
    assert difference < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_zeroing_mlp_post_neurons_equals_zeroing_fc_out_inputs(loaded, family):
    model = loaded[family]
    neurons = [3, 17, 30]
    clone = copy.deepcopy(model.model)
    with torch.no_grad():
        _down(clone, family, LAYER).weight[:, neurons] = 0
    edited = measures.next_token(model, _ids(model),
                                 [interventions.zero(LAYER, "mlp_post", tuple(neurons))])
    plain = measures.next_token(model, _ids(model))
    with torch.no_grad():
        expected = [torch.log_softmax(clone(torch.tensor([ids])).logits[0, -1].double(),
                                      -1).numpy() for ids in _ids(model)]
    worst = max(float(np.abs(a - b).max()) for a, b in zip(edited, expected, strict=True))
    print(f"max |log p difference| {worst:.2g}")
    assert worst < 1e-4
    # and the edit changes the outputs, so the comparison is not empty
    assert max(float(np.abs(a - b).max()) for a, b in zip(edited, plain, strict=True)) > 1e-3
