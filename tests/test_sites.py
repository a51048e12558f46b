"""Every site and position equals an independent route, on every test architecture, batched with
padding, one layer and several at once.

Oracles, none of them lazarus's hooks: the model's own `output_hidden_states` of each prompt run
alone (resid_pre = hidden_states[L], resid_post = hidden_states[L+1]); a forward pre-hook on the
MLP's down projection; a hand-run MLP; for MoE, each expert's formula written out in
tests/test_moe.py and the router module's own forward; and the identity
resid_post = resid_pre + attn_out + mlp_out, which pins what the two sub-blocks add.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from test_moe import MOE_LAYERS, ROUTER_NAME, build_moe, hand_units
from tiny_models import ARCHITECTURES, LAYERS

from lazarus.engine.capture import capture
from lazarus.engine.collect import ModelSettings, collect
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.positions import parse_position
from lazarus.engine.sites import decoder_blocks
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError

PROMPTS = ["2+2=", "The capital of France is", "x y", "47*47=2209", "  padded  prompt\n"]
LAYERS_READ = (0, 2)  # several at once, and not the last (HF applies the final norm there)
TOLERANCE = 2e-5
POSITIONS = ("last", "first", "1", "-2", "mean", "all")


@pytest.fixture(scope="module")
def loaded_models(tiny_model_dirs):
    return {arch: load_model(read_model_info(str(path))) for arch, path in tiny_model_dirs.items()}


def alone(loaded, prompt: str) -> dict:
    """One prompt, no padding, the whole model: hidden states and the down projections' inputs."""
    blocks = decoder_blocks(loaded.model, LAYERS)
    down = {}
    handles = []
    for layer, block in enumerate(blocks):
        projection = next((getattr(getattr(block, "mlp", None), name, None)
                           for name in ("down_proj", "c_proj")
                           if isinstance(getattr(getattr(block, "mlp", None), name, None),
                                         torch.nn.Module)), None)
        if projection is not None:
            handles.append(projection.register_forward_pre_hook(
                lambda module, args, layer=layer: down.__setitem__(layer, args[0][0].float())))
    try:
        with torch.inference_mode():
            ids = loaded.tokenizer(prompt, return_tensors="pt")
            hidden = loaded.model(**ids, output_hidden_states=True).hidden_states
    finally:
        for handle in handles:
            handle.remove()
    return {"hidden": [h[0].float() for h in hidden], "down": down}


def worst(actual, expected) -> float:
    difference = float(np.nanmax(np.abs(np.asarray(actual) - np.asarray(expected))))
    print(f"max |difference| {difference:.2g}")
    return difference


def at(values: torch.Tensor, position: str) -> torch.Tensor:
    """The oracle's reading of [tokens, width] at a position."""
    parsed = parse_position(position)
    if parsed == "all":
        return values
    if parsed == "mean":
        return values.mean(dim=0)
    index = {"last": -1, "first": 0}.get(parsed, parsed)
    return values[index]


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_resid_post_at_every_position_equals_the_prompt_alone(loaded_models, arch, position):
    loaded = loaded_models[arch]
    request = CaptureRequest(layers=LAYERS_READ, position=parse_position(position))
    captured = capture(loaded, PROMPTS, request, token_budget=40, max_batch=3)
    for index, prompt in enumerate(PROMPTS):
        hidden = alone(loaded, prompt)["hidden"]
        for layer in LAYERS_READ:
            assert worst(captured[layer][index], at(hidden[layer + 1], position)) <= TOLERANCE


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_attn_out_plus_mlp_out_is_what_the_block_adds(loaded_models, arch):
    loaded = loaded_models[arch]
    attn = capture(loaded, PROMPTS, CaptureRequest(LAYERS_READ, "attn_out", "all"),
                   token_budget=40, max_batch=3)
    mlp = capture(loaded, PROMPTS, CaptureRequest(LAYERS_READ, "mlp_out", "all"),
                  token_budget=40, max_batch=3)
    for index, prompt in enumerate(PROMPTS):
        hidden = alone(loaded, prompt)["hidden"]
        for layer in LAYERS_READ:
            added = attn[layer][index] + mlp[layer][index]
            assert worst(added, hidden[layer + 1] - hidden[layer]) <= TOLERANCE
            assert np.abs(attn[layer][index]).max() > 1e-3  # neither part is trivially zero
            assert np.abs(mlp[layer][index]).max() > 1e-3


def test_mlp_out_of_llama_equals_a_hand_run_mlp(loaded_models):
    loaded = loaded_models["llama"]
    attn = capture(loaded, PROMPTS, CaptureRequest((1,), "attn_out", "all"))
    mlp = capture(loaded, PROMPTS, CaptureRequest((1,), "mlp_out", "all"))
    block = decoder_blocks(loaded.model, LAYERS)[1]
    for index, prompt in enumerate(PROMPTS):
        middle = alone(loaded, prompt)["hidden"][1] + torch.from_numpy(attn[1][index])
        with torch.inference_mode():
            expected = block.mlp(block.post_attention_layernorm(middle))
        assert worst(mlp[1][index], expected) <= TOLERANCE


@pytest.mark.parametrize("position", ["last", "all", "mean"])
@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "gpt_oss"])
def test_dense_mlp_post_equals_a_hook_on_the_down_projection(loaded_models, arch, position):
    loaded = loaded_models[arch]
    request = CaptureRequest(LAYERS_READ, "mlp_post", parse_position(position))
    captured = capture(loaded, PROMPTS, request, token_budget=40, max_batch=3)
    for index, prompt in enumerate(PROMPTS):
        down = alone(loaded, prompt)["down"]
        for layer in LAYERS_READ:
            assert worst(captured[layer][index], at(down[layer], position)) <= TOLERANCE


@pytest.fixture(scope="module")
def moe_models(tmp_path_factory, loaded_models):
    """gpt-oss from the shared tiny models; Mixtral and Qwen3-MoE (layer 1 dense) built here."""
    root = tmp_path_factory.mktemp("moe")
    models = {family: load_model(read_model_info(str(build_moe(family, root / family))))
              for family in ("mixtral", "qwen3_moe")}
    return {"gpt_oss": loaded_models["gpt_oss"], **models}


def routing_alone(loaded, family: str, prompt: str, layer: int) -> dict:
    """The router module's own forward and the experts' input, for one prompt alone."""
    blocks = decoder_blocks(loaded.model, loaded.model.config.num_hidden_layers)
    mlp = blocks[layer].mlp
    seen = {}

    def on_router(module, args, output):
        seen["logits"], seen["weights"], seen["index"] = output
        seen["x"] = args[0].reshape(-1, args[0].shape[-1])

    handle = getattr(mlp, ROUTER_NAME[family]).register_forward_hook(on_router)
    try:
        with torch.inference_mode():
            loaded.model(**loaded.tokenizer(prompt, return_tensors="pt"))
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("family", ["gpt_oss", "mixtral", "qwen3_moe"])
def test_moe_units_are_the_experts_own_for_routed_tokens_and_nan_elsewhere(moe_models, family):
    loaded = moe_models[family]
    parts_layer = MOE_LAYERS[family][0]
    blocks = decoder_blocks(loaded.model, loaded.model.config.num_hidden_layers)
    experts = blocks[parts_layer].mlp.experts
    experts_count = experts.num_experts
    layers = (parts_layer,)
    every = capture(loaded, PROMPTS, CaptureRequest(layers, "mlp_post", "all"),
                    token_budget=40, max_batch=3)
    last = capture(loaded, PROMPTS, CaptureRequest(layers, "mlp_post", "last"))
    for index, prompt in enumerate(PROMPTS):
        seen = routing_alone(loaded, family, prompt, parts_layer)
        values = every[parts_layer][index]  # [tokens, E * I]
        values = values.reshape(values.shape[0], experts_count, -1)  # [tokens, E, I]
        routed = ~np.isnan(values).all(axis=-1)  # [tokens, E]
        chosen = np.zeros_like(routed)
        np.put_along_axis(chosen, seen["index"].numpy(), True, axis=-1)
        assert np.array_equal(routed, chosen)
        assert not np.isnan(values[routed]).any()
        for expert in range(experts_count):
            tokens = np.flatnonzero(chosen[:, expert])
            if tokens.size:
                with torch.no_grad():
                    expected = hand_units(family, experts, expert, seen["x"][tokens])
                assert worst(values[tokens, expert], expected) <= TOLERANCE
        assert np.array_equal(np.isnan(last[parts_layer][index]),
                              np.isnan(every[parts_layer][index][-1]))
        assert worst(last[parts_layer][index], every[parts_layer][index][-1]) <= TOLERANCE


@pytest.mark.parametrize("family", ["gpt_oss", "mixtral", "qwen3_moe"])
def test_router_site_is_the_routers_own_top_k(moe_models, family):
    loaded = moe_models[family]
    layer = MOE_LAYERS[family][0]
    captured = capture(loaded, PROMPTS, CaptureRequest((layer,), "router", "all"),
                       token_budget=40, max_batch=3)
    for index, prompt in enumerate(PROMPTS):
        seen = routing_alone(loaded, family, prompt, layer)
        expected = np.zeros(captured[layer][index].shape, np.float32)
        np.put_along_axis(expected, seen["index"].numpy(), seen["weights"].float().numpy(),
                          axis=-1)
        assert worst(captured[layer][index], expected) <= TOLERANCE
        assert np.array_equal(captured[layer][index] > 0, expected > 0)


def test_dense_layers_of_a_moe_model_read_their_dense_mlp(moe_models):
    loaded = moe_models["qwen3_moe"]  # layer 1 is dense (mlp_only_layers)
    captured = capture(loaded, PROMPTS, CaptureRequest((1,), "mlp_post"))
    assert captured[1].shape == (len(PROMPTS), loaded.model.config.intermediate_size)
    assert not np.isnan(captured[1]).any()
    with pytest.raises(LazarusError, match="has no MoE router"):
        capture(loaded, PROMPTS, CaptureRequest((1,), "router"))


@pytest.mark.parametrize("site", ["router"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_site_the_block_does_not_have_is_one_line(loaded_models, arch, site):
    with pytest.raises(LazarusError, match="has no MoE router"):
        capture(loaded_models[arch], PROMPTS, CaptureRequest((0,), site))


def test_the_capture_hook_still_refuses_columns_beyond_the_site(loaded_models):
    """The backstop behind the commands' check from config.json: the width the hook sees."""
    with pytest.raises(LazarusError, match=re.escape(
            "neuron 200 is out of range: the mlp_post site has 128 neurons at layer 1 (use ids "
            "0 to 127)")):
        capture(loaded_models["llama"], PROMPTS,
                CaptureRequest((1,), "mlp_post", "all", columns=(5, 200)))


def test_an_index_beyond_a_prompt_is_refused(loaded_models):
    with pytest.raises(LazarusError, match=re.escape("'2+2=' has 5 tokens, so it has no token "
                                                     "at position 5")):
        capture(loaded_models["llama"], PROMPTS, CaptureRequest((0,), position=5))


@pytest.mark.parametrize(("site", "position"), [("mlp_post", "all"), ("attn_out", "mean"),
                                                ("resid_post", "-2")])
def test_several_layers_in_one_pass_equal_one_at_a_time_and_cached_equals_fresh(
        tiny_model_dirs, site, position):
    info = read_model_info(str(tiny_model_dirs["gpt_oss"]))
    request = CaptureRequest((0, 1, 3), site, parse_position(position))
    together = collect(info, PROMPTS, request, ModelSettings(use_cache=False)).rows
    first = collect(info, PROMPTS, request).rows  # computes and writes the cache
    cached = collect(info, PROMPTS, request)
    assert cached.prompts_from_cache == len(PROMPTS)
    for layer in request.layers:
        single = collect(info, PROMPTS, CaptureRequest((layer,), site, request.position),
                         ModelSettings(use_cache=False)).rows[layer]
        for index in range(len(PROMPTS)):
            expected = single[index]
            for rows in (together, first, cached.rows):
                assert np.array_equal(np.isnan(rows[layer][index]), np.isnan(expected))
                assert worst(rows[layer][index], expected) <= TOLERANCE


def test_mixed_widths_without_neurons_are_one_line(moe_models, tiny_model_dirs, tmp_path):
    import lazarus

    folder = build_moe("qwen3_moe", tmp_path / "qwen3_moe")  # layer 0 MoE (96), layer 1 dense
    model = lazarus.load(str(folder), use_cache=False)
    with pytest.raises(LazarusError, match="these layers have different widths at this site "
                                           r"\(96 at layer 0, 40 at layer 1\)"):
        model.neurons(PROMPTS, [0, 1], site="mlp_post")


def test_mean_keeps_the_models_own_nan_but_skips_missing_units():
    from lazarus.engine.positions import gather

    values = torch.tensor([[[1.0, 2.0], [float("nan"), 4.0], [5.0, 6.0], [9.0, 9.0]]])
    lengths = torch.tensor([3])  # the fourth token is padding
    dense = gather(values, lengths, "mean")
    units = gather(values, lengths, "mean", skip_missing=True)
    assert torch.isnan(dense[0, 0])
    assert dense[0, 1] == 4.0
    assert units[0].tolist() == [3.0, 4.0]


@pytest.mark.parametrize(("config", "expected"), [
    ({"hidden_size": 4096, "intermediate_size": 11008}, (11008, "intermediate_size = 11008")),
    ({"n_embd": 768, "n_inner": None}, (3072, "n_inner unset: 4 x hidden size 768")),
    ({"hidden_size": 4096, "num_local_experts": 8, "intermediate_size": 14336},
     (8 * 14336, "8 experts x 14336 units")),
    # DeepSeek: dense first layers (18432 wide) under the experts' 256 x 2048
    ({"hidden_size": 7168, "intermediate_size": 18432, "n_routed_experts": 256,
      "moe_intermediate_size": 2048}, (256 * 2048, "256 experts x 2048 units")),
    ({"text_config": {"hidden_size": 8, "intermediate_size": [16, 48, 32]}},
     (48, "the largest intermediate_size, 48 at layer 1")),
    ({"hidden_size": 8, "intermediate_size": 16, "use_double_wide_mlp": True},
     (32, "intermediate_size = 16, x 2 for use_double_wide_mlp")),
    # LFM2: 2/3 of it x the multiplier, rounded up to a multiple of 256 (here past it)
    ({"hidden_size": 32, "intermediate_size": 64, "block_auto_adjust_ff_dim": True,
      "block_ffn_dim_multiplier": 1.0, "block_multiple_of": 256},
     (256, "intermediate_size = 64 adjusted: 2/3 x 1.0, rounded up to a multiple of 256")),
    ({"hidden_size": 32, "intermediate_size": 6656, "block_auto_adjust_ff_dim": True,
      "block_ffn_dim_multiplier": 1.0, "block_multiple_of": 256},
     (4608, "intermediate_size = 6656 adjusted: 2/3 x 1.0, rounded up to a multiple of 256")),
    ({"hidden_size": 32}, None),  # Bloom: no width key
    ({"hidden_size": 32, "intermediate_size": 64, "moe_num_experts": 8}, None),  # an unknown key
])
def test_mlp_post_bound_from_the_config(config, expected):
    from lazarus.engine.widths import mlp_post_bound

    assert mlp_post_bound(config) == expected


WIDTH_FAMILIES = ["llama", "gpt2", "falcon", "moshi", "gpt_oss", "qwen2_moe", "deepseek_v2",
                  "glm4_moe", "jamba", "lfm2"]


@pytest.mark.parametrize("family", WIDTH_FAMILIES)
def test_mlp_post_bound_holds_every_layer_of_the_family(family, tmp_path, monkeypatch):
    """Every width key a different size, so that reading the wrong one shows: the bound is at
    least the width the hook sees at each layer, and dense families' is that width exactly."""
    import tiny_configs
    from tiny_models import build_tokenizer
    from transformers import AutoModelForCausalLM

    from lazarus.engine.widths import mlp_post_bound

    for key, value in {"intermediate_size": 64, "ffn_dim": 72, "n_inner": 88,
                       "ffn_hidden_size": 96, "moe_intermediate_size": 40,
                       "shared_expert_intermediate_size": 48}.items():
        monkeypatch.setitem(tiny_configs.SIZES, key, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_configs.tiny_config(family))
    model.save_pretrained(tmp_path)
    build_tokenizer(add_bos=True).save_pretrained(tmp_path)
    info = read_model_info(str(tmp_path))
    loaded = load_model(info)
    widths: dict[int, int] = {}
    capture(loaded, ["ab"], CaptureRequest(tuple(range(info.layer_count)), "mlp_post"),
            widths=widths)
    bound, _ = mlp_post_bound(info.config)
    assert max(widths.values()) <= bound, widths
    if family in ("llama", "gpt2", "falcon", "lfm2"):
        assert set(widths.values()) == {bound}
