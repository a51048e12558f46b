"""The capture engine returns what the model really computes, on every architecture.

Oracle: the model's own `output_hidden_states`, run one prompt at a time with no padding, against
our batched, padded, early-stopped capture of all prompts together.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import ARCHITECTURES, LAYERS

from lazarus.capture import CaptureRequest, capture, plan_batches
from lazarus.loading import load_model, read_model_info

PROMPTS = ["2+2=", "47*47=", "The capital of France is", "x", "67*83=", "  padded  prompt\n"]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def loaded_models(tiny_model_dirs):
    return {arch: load_model(read_model_info(str(path))) for arch, path in tiny_model_dirs.items()}


def hidden_states_alone(loaded, prompt: str) -> tuple[torch.Tensor, ...]:
    encoded = loaded.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        return loaded.model(**encoded, output_hidden_states=True).hidden_states


def final_norm(model):
    base = getattr(model, "model", None) or model.transformer
    return getattr(base, "norm", None) or base.ln_f


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    worst = float(np.max(np.abs(actual - expected)))
    assert worst <= TOLERANCE, f"{what}: max |difference| = {worst:.3g} > {TOLERANCE}"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_capture_equals_hidden_states_for_each_prompt_alone(loaded_models, arch):
    loaded = loaded_models[arch]
    layers = tuple(range(LAYERS))
    captured = capture(loaded, PROMPTS, CaptureRequest(layers=layers), max_batch=len(PROMPTS),
                       token_budget=10_000)
    for index, prompt in enumerate(PROMPTS):
        hidden = hidden_states_alone(loaded, prompt)
        for layer in layers[:-1]:
            expected = hidden[layer + 1][0, -1].numpy()
            assert_close(captured[layer][index], expected, f"{arch} layer {layer} {prompt!r}")
        # HF's last hidden state has the final norm applied; ours is the block's raw output.
        last = layers[-1]
        with torch.inference_mode():
            normed = final_norm(loaded.model)(torch.from_numpy(captured[last][index]))
        assert_close(normed.numpy(), hidden[-1][0, -1].numpy(), f"{arch} last layer {prompt!r}")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batch_grouping_does_not_change_values(loaded_models, arch):
    loaded = loaded_models[arch]
    request = CaptureRequest(layers=(1, 2))
    one_batch = capture(loaded, PROMPTS, request, max_batch=64, token_budget=100_000)
    one_by_one = capture(loaded, PROMPTS, request, max_batch=1)
    small_budget = capture(loaded, PROMPTS, request, token_budget=40)
    for layer in request.layers:
        assert_close(one_batch[layer], one_by_one[layer], f"{arch} layer {layer} batched")
        assert_close(small_budget[layer], one_by_one[layer], f"{arch} layer {layer} budget")


def test_forward_stops_after_the_deepest_layer(loaded_models):
    loaded = loaded_models["llama"]
    blocks = loaded.model.model.layers
    calls: list[int] = []
    handles = [block.register_forward_hook(lambda *_, i=i: calls.append(i))
               for i, block in enumerate(blocks)]
    handles.append(loaded.model.lm_head.register_forward_hook(lambda *_: calls.append(-1)))
    try:
        capture(loaded, PROMPTS[:2], CaptureRequest(layers=(1,)), max_batch=1)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [0, 1, 0, 1]  # two prompts, blocks 0 and 1 each; no later block, no LM head


def test_hooks_are_removed_after_capture(loaded_models):
    loaded = loaded_models["gpt2"]
    blocks = loaded.model.transformer.h
    before = [dict(block._forward_hooks) for block in blocks]  # transformers has its own
    capture(loaded, PROMPTS[:1], CaptureRequest(layers=(0, 3)))
    assert [dict(block._forward_hooks) for block in blocks] == before


def test_mlp_site_equals_the_input_of_the_output_projection(loaded_models):
    loaded = loaded_models["llama"]
    layer = 2
    seen = {}
    projection = loaded.model.model.layers[layer].mlp.down_proj
    handle = projection.register_forward_pre_hook(lambda _, args: seen.update(x=args[0]))
    try:
        for index, prompt in enumerate(PROMPTS):
            hidden_states_alone(loaded, prompt)
            captured = capture(loaded, [prompt], CaptureRequest(layers=(layer,), site="mlp"))
            expected = seen["x"][0, -1].numpy()
            assert captured[layer].shape == (1, 128), "the MLP's hidden width, not the model's"
            assert_close(captured[layer][0], expected, f"mlp site, prompt {index}")
    finally:
        handle.remove()


def test_plan_batches_groups_by_length_within_budget():
    lengths = [5, 1, 9, 1, 5, 3]
    batches = plan_batches(lengths, token_budget=12, max_batch=3)
    assert sorted(i for batch in batches for i in batch) == list(range(6))
    for batch in batches:
        assert max(lengths[i] for i in batch) * len(batch) <= 12
        assert len(batch) <= 3
    assert batches[0] == [1, 3, 5]  # the shortest prompts come first, together
