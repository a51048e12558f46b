"""Generation under edits on families that hand back no cache to continue from: RWKV (its
`state`) and RecurrentGemma (its cache lives inside its layers). They are fed the whole sequence
at every step, one prompt at a time (RWKV reads no attention mask, so padding would enter its
recurrence); the continuations and the ablation's numbers equal Hugging Face's own forward on
each prompt alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_configs import tiny_config
from tiny_models import build_config

from lazarus.engine import interventions, measures
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info

PROMPTS = ["hello world", "ab", "the quick brown fox"]  # of different lengths
FAMILIES = ("rwkv", "recurrent_gemma")
NEW_TOKENS = 5


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    # weights wider than HF's init, so that the tokens depend on the prompt
    return {family: load_model(read_model_info(str(build_config(
        tiny_config(family), tmp_path_factory.mktemp(family), add_bos=True, scale=0.3))),
        "cpu", "float32") for family in FAMILIES}


def _greedy_alone(model, ids, hook=None):
    """Greedy tokens from a plain loop of full forwards on the prompt alone (no cache)."""
    handle = None if hook is None else model.get_submodule(hook[0]).register_forward_hook(hook[1])
    try:
        row = list(ids)
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                row.append(int(model(torch.tensor([row]), use_cache=False).logits[0, -1].argmax()))
    finally:
        if handle is not None:
            handle.remove()
    return row[len(ids):]


def _zero_column(column):
    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[..., column] = 0
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


BLOCKS = {"rwkv": "rwkv.blocks", "recurrent_gemma": "model.layers"}


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_equals_each_prompt_alone(loaded, family):
    model = loaded[family]
    ids = [list(model.tokenizer(p)["input_ids"]) for p in PROMPTS]
    stop = model.tokenizer.eos_token_id

    def cut(row):
        return row[:row.index(stop) + 1] if stop in row else row

    assert measures.generate(model, ids, NEW_TOKENS) == [
        cut(_greedy_alone(model.model, row)) for row in ids]
    edit = interventions.zero(1, "resid_post", (5, 9))
    hook = (f"{BLOCKS[family]}.1", _zero_column([5, 9]))
    assert measures.generate(model, ids, NEW_TOKENS, [edit]) == [
        cut(_greedy_alone(model.model, row, hook)) for row in ids]
    # and the edit's next-token log-probabilities equal the hooked forward alone
    edited = measures.next_token(model, ids, [edit])
    handle = model.model.get_submodule(hook[0]).register_forward_hook(hook[1])
    try:
        with torch.no_grad():
            expected = [torch.log_softmax(model.model(torch.tensor([row]), use_cache=False)
                                          .logits[0, -1].double(), -1).numpy() for row in ids]
    finally:
        handle.remove()
    assert max(float(np.abs(a - b).max()) for a, b in zip(edited, expected, strict=True)) < 1e-4
