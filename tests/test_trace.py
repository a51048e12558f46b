"""`engine.trace.Trace`, the one hook owner, on tiny models: which modules it hooks, that every
hook goes away whatever happens, the early stop, and its edits against independent routes
(Hugging Face's own `output_hidden_states` and copies of the model whose weights do the edit).

The forwards here are driven by hand, as `capture.run_batches` and `measures` drive them, so
that each test sees `Trace` alone.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lazarus.engine import interventions
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.trace import CaptureRequest, StopForward, Trace
from lazarus.errors import LazarusError

SAME_LENGTH = ["abcd", "wxyz"]  # one token per character: no padding when batched together
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    loaded = {arch: load_model(read_model_info(str(tiny_model_dirs[arch])), "cpu", "float32")
              for arch in ("llama", "gpt2", "gpt_oss")}
    for each in loaded.values():  # a first forward, so that nothing lazy happens inside a test
        with torch.inference_mode():
            each.model(**each.tokenizer(["ab"], return_tensors="pt"))
    return loaded


@pytest.fixture
def llama(models):
    return models["llama"]


@pytest.fixture
def gpt2(models):
    return models["gpt2"]


def hook_counts(model) -> dict[str, tuple[int, int]]:
    """Per module: (forward hooks, forward pre-hooks)."""
    return {name: (len(m._forward_hooks), len(m._forward_pre_hooks))
            for name, m in model.named_modules()}


def added(before: dict, now: dict) -> dict[str, tuple[int, int]]:
    return {name: (now[name][0] - before[name][0], now[name][1] - before[name][1])
            for name in now if now[name] != before[name]}


def encode(loaded, prompts):
    """(input ids, attention mask) right-padded, as the engine batches."""
    encoded = loaded.tokenizer(prompts, return_tensors="pt", padding=True)
    return encoded["input_ids"], encoded["attention_mask"]


def forward(loaded, trace, prompts, stops: bool = True):
    """One forward under `trace`, with its per-batch fields set as the engine sets them; the
    logits, or None when a reading hook stopped the forward."""
    ids, mask = encode(loaded, prompts)
    trace.lengths = mask.sum(-1)
    trace.rows = torch.arange(len(prompts))
    trace.positions = torch.arange(ids.shape[1]).expand(len(prompts), ids.shape[1])
    with torch.inference_mode():
        if not stops:
            return loaded.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        with pytest.raises(StopForward):
            loaded.model(input_ids=ids, attention_mask=mask, use_cache=False)
    return None


def hidden_states(model, loaded, prompt):
    """HF's own hidden states of one prompt alone: [layers + 1] of [tokens, hidden]."""
    with torch.inference_mode():
        out = model(**loaded.tokenizer(prompt, return_tensors="pt"), output_hidden_states=True)
    return [h[0] for h in out.hidden_states]


def logits_alone(model, loaded, prompts):
    with torch.inference_mode():
        return model(**loaded.tokenizer(prompts, return_tensors="pt")).logits


def collector():
    kept: list[tuple[int, torch.Tensor]] = []
    return kept, lambda layer, values: kept.append((layer, values.clone()))


def assert_close(actual, expected, what: str = "") -> None:
    worst = float((actual - expected).abs().max())
    print(f"{what} max |difference| = {worst:.2e}")
    assert worst <= TOLERANCE


# --- hooks: registered on exactly the modules asked for, removed afterwards ---


def test_hooks_sit_on_exactly_the_asked_modules_and_go_on_exit(llama):
    model = llama.model
    before = hook_counts(model)
    request = CaptureRequest(layers=(3, 1), site="resid_post")
    edits = [interventions.zero(2, "mlp_post", (5,)), interventions.zero(0, "attn_out"),
             interventions.add(1, "resid_post", np.ones(64, np.float32))]  # shares layer 1's hook
    with Trace(llama, request, on_kept=lambda layer, values: None, edits=edits):
        inside = hook_counts(model)
    assert added(before, inside) == {
        "model.layers.1": (1, 0),  # read and edited by one hook
        "model.layers.3": (1, 0),
        "model.layers.2.mlp.down_proj": (0, 1),  # mlp_post is the down projection's input
        "model.layers.0.self_attn": (1, 0),
    }
    assert hook_counts(model) == before


def test_gpt2_mlp_post_hooks_its_own_projection(gpt2):
    before = hook_counts(gpt2.model)
    with Trace(gpt2, CaptureRequest(layers=(2,), site="mlp_post"), on_kept=lambda *a: None):
        assert added(before, hook_counts(gpt2.model)) == {"transformer.h.2.mlp.c_proj": (0, 1)}
    assert hook_counts(gpt2.model) == before


def test_moe_units_hook_the_experts(models):
    loaded = models["gpt_oss"]
    before = hook_counts(loaded.model)
    with Trace(loaded, CaptureRequest(layers=(1,), site="mlp_post"), on_kept=lambda *a: None):
        assert added(before, hook_counts(loaded.model)) == {"model.layers.1.mlp.experts": (0, 1)}
    assert hook_counts(loaded.model) == before


def test_hooks_go_when_the_model_raises(llama):
    before = hook_counts(llama.model)
    kept, on_kept = collector()
    with pytest.raises(IndexError), Trace(llama, CaptureRequest(layers=(0, 2)), on_kept) as trace:
        ids = torch.tensor([[1, 10**6]])  # no such token: the embedding raises
        trace.lengths = torch.tensor([2])
        with torch.inference_mode():
            llama.model(input_ids=ids)
    assert kept == []
    assert hook_counts(llama.model) == before


def test_hooks_go_when_an_edit_raises(llama):
    before = hook_counts(llama.model)
    wrong_width = interventions.add(1, "resid_post", np.ones(5, np.float32))  # the stream is 64
    with pytest.raises(RuntimeError, match="size"), \
            Trace(llama, CaptureRequest(layers=(2,)), lambda *a: None, [wrong_width]) as trace:
        forward(llama, trace, SAME_LENGTH, stops=False)
    assert hook_counts(llama.model) == before


def test_hooks_go_when_a_reading_hook_refuses(llama):
    before = hook_counts(llama.model)
    kept, on_kept = collector()
    request = CaptureRequest(layers=(0, 1), columns=(3, 64))  # the stream has columns 0..63
    with pytest.raises(LazarusError, match="neuron 64 is out of range"), \
            Trace(llama, request, on_kept) as trace:
        forward(llama, trace, SAME_LENGTH, stops=False)
    assert kept == []
    assert hook_counts(llama.model) == before


def test_hooks_go_when_registering_fails_midway(llama, models):
    before = hook_counts(llama.model)
    # Layers 0 and 1 are hooked before layer 2's router turns out not to exist (a dense block).
    router = Trace(llama, CaptureRequest(layers=(0, 1)), lambda *a: None,
                   [interventions.zero(2, "router")])
    with pytest.raises(LazarusError, match="layer 2 .* has no MoE router"), router:
        pass
    assert hook_counts(llama.model) == before
    moe = models["gpt_oss"]
    before = hook_counts(moe.model)
    both = Trace(moe, CaptureRequest(layers=(0, 1), site="mlp_post"), lambda *a: None,
                 [interventions.zero(1, "mlp_post", (0,))])
    with pytest.raises(LazarusError, match="cannot be read and edited in one pass"), both:
        pass
    assert hook_counts(moe.model) == before


def test_unknown_site_is_refused_before_any_hook(llama):
    before = hook_counts(llama.model)
    with pytest.raises(LazarusError, match="unknown site 'resid_mid'"):
        Trace(llama, CaptureRequest(layers=(0,), site="resid_mid"))
    assert hook_counts(llama.model) == before


# --- the early stop ---


def counting_hooks(model, modules):
    """Our own forward hooks: how many times each module ran (an independent witness)."""
    runs = dict.fromkeys(modules, 0)

    def count(name):
        def hook(module, args, output):
            runs[name] += 1
        return hook

    named = dict(model.named_modules())
    return runs, [named[name].register_forward_hook(count(name)) for name in modules]


LLAMA_PARTS = ["model.layers.0", "model.layers.1", "model.layers.2", "model.layers.3",
               "model.norm", "lm_head"]


@pytest.mark.parametrize(("layers", "ran"), [((0, 1), 2), ((1,), 2), ((3, 0), 4), ((2,), 3)])
def test_the_forward_stops_after_the_deepest_asked_layer(llama, layers, ran):
    runs, handles = counting_hooks(llama.model, LLAMA_PARTS)
    kept, on_kept = collector()
    try:
        with Trace(llama, CaptureRequest(layers=layers), on_kept) as trace:
            forward(llama, trace, ["hello world", "ab"])
            assert trace.reached == set(layers)
            assert set(trace.widths) == set(layers)
        assert trace.reached == set()  # cleared on exit, ready for the next forward
    finally:
        for handle in handles:
            handle.remove()
    assert runs == {name: int(i < ran) for i, name in enumerate(LLAMA_PARTS)}
    assert [layer for layer, _ in kept] == sorted(layers)  # in the order the blocks run
    for index, prompt in enumerate(["hello world", "ab"]):
        hidden = hidden_states(llama.model, llama, prompt)
        for layer, values in kept:
            mine = values[index]
            if layer == 3:  # HF's last hidden state is after the final norm; ours before it
                with torch.inference_mode():
                    mine = llama.model.model.norm(mine)
            assert_close(mine, hidden[layer + 1][-1], f"layer {layer} {prompt!r}")


def test_a_stop_layer_that_never_runs_lets_the_forward_finish(llama):
    """A block the forward skips: no stop, and `reached` says which layers ran. (Here a copy
    whose config runs only its first two blocks; `run_batches` turns this into an error.)"""
    clone = copy.deepcopy(llama)
    clone.model.config.num_hidden_layers = 2  # Llama's forward runs layers[:num_hidden_layers]
    blocks = list(clone.model.model.layers)
    before = [len(block._forward_hooks) for block in blocks]
    runs, handles = counting_hooks(clone.model, LLAMA_PARTS)
    kept, on_kept = collector()
    try:
        with Trace(clone, CaptureRequest(layers=(1, 3)), on_kept) as trace:
            logits = forward(clone, trace, SAME_LENGTH, stops=False)
            assert trace.reached == {1}
    finally:
        for handle in handles:
            handle.remove()
    assert logits.shape[:2] == (2, 5)  # the forward went on to the LM head
    assert runs == {**dict.fromkeys(LLAMA_PARTS[:2], 1), **dict.fromkeys(LLAMA_PARTS[2:4], 0),
                    "model.norm": 1, "lm_head": 1}
    assert [layer for layer, _ in kept] == [1]
    assert [len(block._forward_hooks) for block in blocks] == before


def test_run_batches_reports_a_layer_the_forward_never_reached(llama):
    from lazarus.engine.capture import run_batches, tokenize

    clone = copy.deepcopy(llama)
    clone.model.config.num_hidden_layers = 2
    with pytest.raises(RuntimeError, match=r"never reached layer\(s\) \[3\]"):
        run_batches(clone, tokenize(clone, SAME_LENGTH), CaptureRequest(layers=(1, 3)),
                    on_kept=lambda *a: None)


def test_columns_and_positions_are_gathered_inside_the_hook(llama):
    prompts = ["hello world", "ab", "xyz"]  # padded: lengths 12, 3 and 4 with the BOS
    kept, on_kept = collector()
    request = CaptureRequest(layers=(1,), position=-2, columns=(40, 2, 7))
    with Trace(llama, request, on_kept) as trace:
        forward(llama, trace, prompts)
        assert trace.widths == {1: 64}  # the site's full width, not the kept columns'
    [(layer, values)] = kept
    for index, prompt in enumerate(prompts):
        expected = hidden_states(llama.model, llama, prompt)[2][-2, [40, 2, 7]]
        assert_close(values[index], expected, f"{prompt!r}")


# --- edits, against models whose weights do the same ---


def run_edited(loaded, edits, prompts=SAME_LENGTH):
    with Trace(loaded, None, edits=edits) as trace:
        return forward(loaded, trace, prompts, stops=False)


def test_zeroing_llama_neurons_equals_zeroing_their_weights(llama):
    neurons = (3, 17, 90)
    clone = copy.deepcopy(llama.model)
    with torch.no_grad():
        clone.model.layers[2].mlp.down_proj.weight[:, list(neurons)] = 0
    edited = run_edited(llama, [interventions.zero(2, "mlp_post", neurons)])
    assert_close(edited, logits_alone(clone, llama, SAME_LENGTH), "zeroed neurons")
    assert float((edited - logits_alone(llama.model, llama, SAME_LENGTH)).abs().max()) > 1e-3


def test_adding_to_the_residual_equals_a_bias_on_the_block_s_last_projection(gpt2):
    vector = np.random.default_rng(0).normal(size=64).astype(np.float32)
    clone = copy.deepcopy(gpt2.model)
    with torch.no_grad():  # GPT-2's MLP ends its block: its output bias adds to resid_post
        clone.transformer.h[0].mlp.c_proj.bias += torch.from_numpy(vector)
    edited = run_edited(gpt2, [interventions.add(0, "resid_post", vector)])
    assert_close(edited, logits_alone(clone, gpt2, SAME_LENGTH), "added vector")


def test_setting_neurons_to_values_equals_moving_them_into_the_bias(gpt2):
    neurons, values = [4, 60, 100], np.array([1.5, -2.0, 0.25], np.float32)
    clone = copy.deepcopy(gpt2.model)
    projection = clone.transformer.h[1].mlp.c_proj  # Conv1D: weight [in, out]
    with torch.no_grad():
        projection.bias += torch.from_numpy(values) @ projection.weight[neurons]
        projection.weight[neurons] = 0
    edit = interventions.Edit(1, "mlp_post", "set", tuple(neurons), values)
    edited = run_edited(gpt2, [edit])
    assert_close(edited, logits_alone(clone, gpt2, SAME_LENGTH), "neurons set")


def test_replacing_the_residual_with_another_prompt_s_gives_that_prompt_s_run(llama):
    """Every token's whole residual at layer 1 swapped between two prompts of the same length:
    from there on each row computes the other prompt's forward."""
    states = [hidden_states(llama.model, llama, p) for p in SAME_LENGTH]
    references = tuple(s[2].numpy() for s in reversed(states))  # row 0 takes prompt 1's
    swap = interventions.Edit(1, "resid_post", "set", None, per_prompt=references)
    kept, on_kept = collector()
    with Trace(llama, CaptureRequest(layers=(1, 2)), on_kept, [swap]) as trace:
        forward(llama, trace, SAME_LENGTH)
    read = dict(kept)
    for row, other in ((0, 1), (1, 0)):
        # A hook that edits and reads keeps the edited values.
        assert_close(read[1][row], states[other][2][-1], f"row {row} at layer 1")
        assert_close(read[2][row], states[other][3][-1], f"row {row} at layer 2")


def test_a_read_after_an_edit_sees_the_edit(llama):
    vector = np.random.default_rng(1).normal(size=64).astype(np.float32)
    kept, on_kept = collector()
    with Trace(llama, CaptureRequest(layers=(1,)), on_kept,
               [interventions.add(1, "resid_post", vector)]) as trace:
        forward(llama, trace, SAME_LENGTH)
    for row, prompt in enumerate(SAME_LENGTH):
        expected = hidden_states(llama.model, llama, prompt)[2][-1] + torch.from_numpy(vector)
        assert_close(kept[0][1][row], expected, f"{prompt!r}")
