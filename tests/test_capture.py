"""The capture engine returns what the model really computes, on every architecture.

Oracle: the model's own `output_hidden_states`, run one prompt at a time with no padding, against
our batched, padded, early-stopped capture of all prompts together.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import ARCHITECTURES, LAYERS

from lazarus.engine.budget import CPU_TOKEN_BUDGET, batch_limits, plan_batches
from lazarus.engine.capture import capture
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError

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
            captured = capture(loaded, [prompt], CaptureRequest(layers=(layer,), site="mlp_post"))
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


def brute_force_cost(lengths, token_budget, max_batch, overhead):
    """The least cost over every way to cut the length-sorted prompts into batches."""
    ordered = sorted(lengths)
    best = [0.0] + [float("inf")] * len(ordered)
    for end in range(1, len(ordered) + 1):
        for begin in range(end):
            rows, longest = end - begin, ordered[end - 1]
            if rows == 1 or (rows <= max_batch and rows * longest <= token_budget):
                best[end] = min(best[end], best[begin] + overhead + rows * longest)
    return best[-1]


@pytest.mark.parametrize("seed", range(6))
def test_plan_batches_computes_the_least_padding_plus_calls(seed):
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in rng.integers(1, 12, size=int(rng.integers(1, 14)))]
    budget, max_batch, overhead = int(rng.integers(8, 40)), int(rng.integers(1, 6)), 3
    batches = plan_batches(lengths, budget, max_batch, overhead)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    cost = 0
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or (len(batch) <= max_batch and len(batch) * longest <= budget)
        cost += overhead + len(batch) * longest
    assert cost == brute_force_cost(lengths, budget, max_batch, overhead)


def test_plan_batches_keeps_equal_lengths_together_without_padding():
    lengths = [7] * 40 + [8] * 40
    batches = plan_batches(lengths, token_budget=10_000, max_batch=64, overhead_tokens=8)
    assert [sorted({lengths[i] for i in batch}) for batch in batches] == [[7], [8]]


GROUPINGS = [  # (token_budget, max_batch): one batch, one by one, and mixes between
    (100_000, 64), (10_000, 1), (40, 64), (60, 3), (25, 2), (None, None)]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_batch_grouping_gives_the_same_values(loaded_models, arch):
    loaded = loaded_models[arch]
    request = CaptureRequest(layers=(0, 2))
    prompts = PROMPTS + ["2+2=", "a longer prompt than the others, by far", "47*47="]
    reference = capture(loaded, prompts, request, max_batch=1)
    for budget, max_batch in GROUPINGS:
        got = capture(loaded, prompts, request, token_budget=budget, max_batch=max_batch)
        for layer in request.layers:
            assert_close(got[layer], reference[layer], f"{arch} {budget}/{max_batch} L{layer}")


def oom_above(loaded, rows: int):
    """A hook of the test's own on the embeddings: batches of more than `rows` prompts fail as
    if the device's memory ran out."""
    seen: list[int] = []

    def hook(module, args):
        seen.append(args[0].shape[0])
        if args[0].shape[0] > rows:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by the test)")

    handle = loaded.model.get_input_embeddings().register_forward_pre_hook(hook)
    return handle, seen


def test_out_of_memory_halves_the_batch_instead_of_failing(loaded_models):
    loaded = loaded_models["llama"]
    prompts = [f"{a}*{b}=" for a in range(10, 22) for b in (11, 12)]  # 24 of 6 tokens
    request = CaptureRequest(layers=(1,))
    reference = capture(loaded, prompts, request, max_batch=1)
    handle, seen = oom_above(loaded, 5)
    notes: list[str] = []
    try:
        got = capture(loaded, prompts, request, token_budget=10_000, max_batch=24,
                      notify=notes.append)
    finally:
        handle.remove()
    assert seen[:3] == [24, 12, 6], "halved after each failure"
    assert max(seen[3:]) <= 3
    assert sum(seen[3:]) == len(prompts), "then each prompt ran once"
    assert notes[0] == "out of memory with 24 prompts in a batch; continuing with at most 12"
    assert_close(got[1], reference[1], "after out-of-memory retries")


def test_out_of_memory_with_one_prompt_is_a_user_error(loaded_models):
    loaded = loaded_models["llama"]
    handle, _ = oom_above(loaded, 0)
    try:
        with pytest.raises(LazarusError, match="out of memory running one prompt of 5 tokens"):
            capture(loaded, ["2+2="], CaptureRequest(layers=(1,)))
    finally:
        handle.remove()


def test_default_batch_limits_fit_the_memory_and_the_cpu(loaded_models):
    loaded = loaded_models["llama"]
    budget, max_batch = batch_limits(loaded, longest=12)
    assert 12 <= budget <= CPU_TOKEN_BUDGET
    assert max_batch >= 1
