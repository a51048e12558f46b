"""MoE sites give what the model really computes: per-expert units and the router's choices.

Oracles, all independent of `lazarus.engine.moe`: the router module's own forward (hooked on its
own)
for the routing and the experts' input; each family's documented expert formula, written out
here from the raw 3-D parameters, for the units; the experts module's real output (whichever
experts implementation runs) for the claim that the units are what the model multiplies by its
down projection. Batched, right-padded runs are compared with each prompt alone.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_models import VOCAB_SIZE, _spread_weights, build, build_tokenizer, configs
from transformers import AutoModelForCausalLM, MixtralConfig, Qwen3MoeConfig

from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.moe import (
    MoeParts,
    find_moe,
    routed_mask,
    router_from_hook,
    units_from_hook,
)
from lazarus.engine.sites import decoder_blocks
from lazarus.errors import LazarusError

TOLERANCE = 1e-5
EXPERTS = 4
TOP_K = 2
PROMPTS = ["2+2=", "The capital of France is", "x", "routing  tokens\n", "47*47=2209"]
FAMILIES = ("mixtral", "qwen3_moe", "gpt_oss")
ROUTER_NAME = {"mixtral": "gate", "qwen3_moe": "gate", "gpt_oss": "router"}
MOE_LAYERS = {"mixtral": (0, 1), "qwen3_moe": (0, 2), "gpt_oss": (0, 1, 2, 3)}


def _common() -> dict:
    return {"vocab_size": VOCAB_SIZE, "pad_token_id": 0, "bos_token_id": 2,
            "eos_token_id": 3, "hidden_size": 32, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 256}


GPT_OSS_LIMIT = 2.0  # low enough that gpt-oss's clamps engage on these weights


def moe_configs() -> dict:
    """Mixtral (all layers MoE, renormalised top-k), Qwen3-MoE (layer 1 dense, raw top-k) and
    gpt-oss (4 layers, 64 wide, 4 experts, top-2) with a SwiGLU limit its values cross."""
    gpt_oss = configs()["gpt_oss"]
    gpt_oss.swiglu_limit = GPT_OSS_LIMIT
    return {
        "gpt_oss": gpt_oss,
        "mixtral": MixtralConfig(**_common(), intermediate_size=24, num_hidden_layers=2,
                                 num_local_experts=EXPERTS, num_experts_per_tok=TOP_K),
        "qwen3_moe": Qwen3MoeConfig(**_common(), intermediate_size=40, moe_intermediate_size=24,
                                    num_hidden_layers=3, head_dim=8, num_experts=EXPERTS,
                                    num_experts_per_tok=TOP_K, mlp_only_layers=[1],
                                    norm_topk_prob=False),
    }


def build_moe(family: str, folder: Path, seed: int = 0) -> Path:
    config = moe_configs()[family]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _spread_weights(model, seed)
    model.save_pretrained(folder)
    build_tokenizer(add_bos=True).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def no_grad():
    """The hand computations read the parameters; no autograd graph is wanted."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("moe_models")
    folders = {family: build_moe(family, root / family) for family in moe_configs()}
    folders["llama"] = build("llama", root / "llama")  # dense
    return {family: load_model(read_model_info(str(path))) for family, path in folders.items()}


def blocks(model) -> list:
    return decoder_blocks(model.model if hasattr(model, "model") else model,
                          model.config.num_hidden_layers)


def run(model, family: str, prompts: list[str], tokenizer) -> dict:
    """One right-padded batch; per MoE layer, what the router, lazarus and the experts saw.

    Returns {layer: {"x", "logits", "weights", "index" (router's own forward), "units",
    "router" (lazarus, from a pre-hook on the experts), "out" (experts' real output)}} plus
    "mask" [batch, tokens].
    """
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(row) for row in ids)
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    seen: dict = {"mask": mask}
    handles = []
    for layer in MOE_LAYERS[family]:
        mlp = blocks(model)[layer].mlp
        parts = find_moe(blocks(model)[layer])
        record = seen.setdefault(layer, {})

        def on_router(module, args, output, record=record):
            record["x"] = args[0].reshape(-1, args[0].shape[-1])
            record["logits"], record["weights"], record["index"] = output

        def on_experts_pre(module, args, kwargs, record=record, parts=parts):
            record["units"] = units_from_hook(parts, args, kwargs)
            record["router"] = router_from_hook(parts, args, kwargs)
            record["routed"] = routed_mask(parts, args[1])

        def on_experts(module, args, output, record=record):
            record["out"] = output

        handles += [getattr(mlp, ROUTER_NAME[family]).register_forward_hook(on_router),
                    mlp.experts.register_forward_pre_hook(on_experts_pre, with_kwargs=True),
                    mlp.experts.register_forward_hook(on_experts)]
    try:
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=mask, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def hand_units(family: str, experts, expert: int, x: torch.Tensor) -> torch.Tensor:
    """Each family's documented expert MLP up to its down projection, from the raw weights."""
    if family == "gpt_oss":  # [E, H, 2I], gate and up interleaved, biases, clamped SwiGLU
        gate_up = x @ experts.gate_up_proj[expert] + experts.gate_up_proj_bias[expert]
        gate, up = gate_up[:, 0::2], gate_up[:, 1::2]
        gate = gate.clamp(max=experts.limit)
        up = up.clamp(min=-experts.limit, max=experts.limit)
        return (up + 1) * (gate * torch.sigmoid(experts.alpha * gate))
    units = experts.gate_up_proj.shape[1] // 2  # [E, 2I, H]: gate rows first, then up rows
    gate = x @ experts.gate_up_proj[expert, :units].T
    up = x @ experts.gate_up_proj[expert, units:].T
    return F.silu(gate) * up


def hand_down(family: str, experts, expert: int, units: torch.Tensor) -> torch.Tensor:
    if family == "gpt_oss":  # [E, I, H] with a bias
        return units @ experts.down_proj[expert] + experts.down_proj_bias[expert]
    return units @ experts.down_proj[expert].T  # [E, H, I]


def expert_block(units: torch.Tensor, expert: int) -> torch.Tensor:
    return units[:, expert * units.shape[1] // EXPERTS:(expert + 1) * units.shape[1] // EXPERTS]


def worst(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_find_moe_reads_the_layout(loaded, family):
    model = loaded[family].model
    config = model.config
    for layer in MOE_LAYERS[family]:
        parts = find_moe(blocks(model)[layer])
        mlp = blocks(model)[layer].mlp
        assert isinstance(parts, MoeParts)
        assert parts.experts is mlp.experts
        assert parts.router is getattr(mlp, ROUTER_NAME[family])
        expected_units = getattr(config, "moe_intermediate_size", config.intermediate_size)
        assert (parts.num_experts, parts.units, parts.top_k) == (EXPERTS, expected_units, TOP_K)
        assert parts.width == EXPERTS * expected_units
        assert parts.expert_unit(parts.column(3, 5)) == (3, 5)
        assert parts.transposed == (family == "gpt_oss")
        assert parts.has_bias == (family == "gpt_oss")


@pytest.mark.parametrize("family", FAMILIES)
def test_units_equal_hand_computation_for_routed_tokens_only(loaded, family):
    model = loaded[family].model
    seen = run(model, family, PROMPTS, loaded[family].tokenizer)
    for layer in MOE_LAYERS[family]:
        record = seen[layer]
        experts = blocks(model)[layer].mlp.experts
        units = record["units"]  # [tokens, E*I]
        assert units.dtype == torch.float32
        assert units.shape == (record["x"].shape[0], EXPERTS * units.shape[1] // EXPERTS)
        for expert in range(EXPERTS):
            routed = (record["index"] == expert).any(dim=-1)  # the router's own choice
            assert int(routed.sum()) > 0, f"{family} layer {layer}: expert {expert} unused"
            block = expert_block(units, expert)
            expected = hand_units(family, experts, expert, record["x"][routed])
            difference = worst(block[routed], expected)
            print(f"{family} layer {layer} expert {expert}: {int(routed.sum())} tokens, "
                  f"max |difference| {difference:.2g}")
            assert difference <= TOLERANCE
            assert bool(torch.isnan(block[~routed]).all())
            assert not bool(torch.isnan(block[routed]).any())
        if family == "gpt_oss":  # the clamps of the formula were exercised, not just written
            gate_up = torch.einsum("th,ehi->tei", record["x"], experts.gate_up_proj)
            gate_up = gate_up + experts.gate_up_proj_bias
            assert bool((gate_up[..., 0::2] > GPT_OSS_LIMIT).any())
            assert bool((gate_up[..., 1::2].abs() > GPT_OSS_LIMIT).any())
        live_experts = (~torch.isnan(units)).reshape(units.shape[0], EXPERTS, -1).all(-1)
        assert live_experts.sum(dim=-1).tolist() == [TOP_K] * units.shape[0]
        assert torch.equal(live_experts, record["routed"])


@pytest.mark.parametrize("implementation", ["eager", "grouped_mm", "batched_mm"])
@pytest.mark.parametrize("family", FAMILIES)
def test_units_through_down_projection_give_the_experts_real_output(loaded, family,
                                                                     implementation):
    model = loaded[family].model
    before = model.get_experts_implementation()
    model.set_experts_implementation(implementation)
    try:
        seen = run(model, family, PROMPTS, loaded[family].tokenizer)
    finally:
        model.set_experts_implementation(before)
    for layer in MOE_LAYERS[family]:
        record = seen[layer]
        experts = blocks(model)[layer].mlp.experts
        rebuilt = torch.zeros_like(record["out"])
        for expert in range(EXPERTS):
            routed = record["routed"][:, expert]
            down = hand_down(family, experts, expert, expert_block(record["units"], expert)[routed])
            rebuilt[routed] += record["router"][routed, expert, None] * down
        difference = worst(rebuilt, record["out"])
        print(f"{family} {implementation} layer {layer}: max |difference| {difference:.2g}")
        assert difference <= TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_router_weights_are_the_routers_own_top_k(loaded, family):
    model = loaded[family].model
    seen = run(model, family, PROMPTS, loaded[family].tokenizer)
    for layer in MOE_LAYERS[family]:
        record = seen[layer]
        weights = record["router"]  # [tokens, E]
        assert weights.shape == (record["x"].shape[0], EXPERTS)
        expected = torch.zeros_like(weights)
        expected.scatter_(1, record["index"], record["weights"].float())
        assert torch.equal(weights, expected)
        chosen = torch.zeros_like(weights, dtype=torch.bool)
        chosen.scatter_(1, record["index"], True)
        assert torch.equal(weights != 0, chosen)
        probabilities = torch.softmax(record["logits"].float(), dim=-1)
        top = probabilities.topk(TOP_K, dim=-1)
        assert torch.equal(top.indices.sort(-1).values, record["index"].sort(-1).values)
        if family == "qwen3_moe":  # norm_topk_prob=False: the top-k softmax probabilities as-is
            totals = top.values.sum(-1)
            assert float(totals.max()) < 1.0
        else:  # Mixtral renormalises the top-k; gpt-oss takes a softmax over the top-k logits
            totals = torch.ones(weights.shape[0])
        assert worst(weights.sum(-1), totals) <= TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_values_do_not_depend_on_batching(loaded, family):
    model = loaded[family].model
    batch = run(model, family, PROMPTS, loaded[family].tokenizer)
    width = batch["mask"].shape[1]
    for row, prompt in enumerate(PROMPTS):
        alone = run(model, family, [prompt], loaded[family].tokenizer)
        length = int(batch["mask"][row].sum())
        for layer in MOE_LAYERS[family]:
            for key in ("units", "router"):
                batched = batch[layer][key][row * width:row * width + length]
                single = alone[layer][key]
                assert torch.equal(torch.isnan(batched), torch.isnan(single))
                assert worst(batched.nan_to_num(), single.nan_to_num()) <= TOLERANCE


def test_tokens_keep_only_the_asked_rows(loaded):
    model = loaded["mixtral"].model
    parts = find_moe(blocks(model)[0])
    kept: dict = {}

    def hook(module, args, kwargs):
        kept["all"] = units_from_hook(parts, args, kwargs)
        kept["last"] = units_from_hook(parts, args, kwargs, tokens=torch.tensor([4, 1]))
        kept["router"] = router_from_hook(parts, args, kwargs, tokens=torch.tensor([4, 1]))
        kept["weights"] = router_from_hook(parts, args, kwargs)

    handle = parts.experts.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            model(**loaded["mixtral"].tokenizer("hello", return_tensors="pt"), use_cache=False)
    finally:
        handle.remove()
    assert kept["last"].shape == (2, parts.width)
    assert torch.equal(torch.isnan(kept["last"]), torch.isnan(kept["all"][[4, 1]]))
    assert worst(kept["last"].nan_to_num(), kept["all"][[4, 1]].nan_to_num()) <= TOLERANCE
    assert torch.equal(kept["router"], kept["weights"][[4, 1]])


def test_dense_blocks_have_no_moe(loaded):
    qwen = loaded["qwen3_moe"].model
    assert find_moe(blocks(qwen)[1]) is None  # in mlp_only_layers
    llama = loaded["llama"].model
    assert [find_moe(block) for block in blocks(llama)] == [None] * len(blocks(llama))


class _ListExperts(torch.nn.Module):
    """Experts as a list of dense MLPs: a layout lazarus refuses rather than guesses."""

    def __init__(self) -> None:
        super().__init__()
        self.experts = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(EXPERTS)])


class _UnflaggedExperts(torch.nn.Module):
    """Fused 3-D weights without transformers' layout flags: their orientation is unknown."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_up_proj = torch.nn.Parameter(torch.zeros(EXPERTS, 8, 8))
        self.down_proj = torch.nn.Parameter(torch.zeros(EXPERTS, 8, 4))


@pytest.mark.parametrize("block", [_ListExperts(), torch.nn.Sequential(_UnflaggedExperts())])
def test_unknown_expert_layouts_are_refused(block):
    with pytest.raises(LazarusError, match="use the residual site"):
        find_moe(block)


@pytest.mark.parametrize("family", FAMILIES)
def test_keyword_calls_read_like_positional_ones(loaded, family):
    """The families name the routing arguments differently; a keyword call must not confuse."""
    parts = find_moe(blocks(loaded[family].model)[0])
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, loaded[family].model.config.hidden_size, generator=generator)
    index = torch.stack([torch.randperm(EXPERTS, generator=generator)[:TOP_K] for _ in range(6)])
    weights = torch.rand(6, TOP_K, generator=generator)
    names = list(inspect.signature(parts.experts.forward).parameters)[:3]
    seen = []

    def hook(module, args, kwargs):
        seen.append((units_from_hook(parts, args, kwargs), router_from_hook(parts, args, kwargs)))

    model = loaded[family].model
    before = model.get_experts_implementation()
    model.set_experts_implementation("eager")  # the fused kernels take positional routing only
    handle = parts.experts.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        parts.experts(x, index, weights)
        parts.experts(**dict(zip(names, (x, index, weights), strict=True)))
    finally:
        handle.remove()
        model.set_experts_implementation(before)
    (units, router), (units_kw, router_kw) = seen
    assert torch.equal(units.isnan(), units_kw.isnan())
    assert torch.equal(units.nan_to_num(), units_kw.nan_to_num())
    assert torch.equal(router, router_kw)
    expected = torch.zeros(6, EXPERTS).scatter_(1, index, weights)
    assert torch.equal(router, expected)


def test_bfloat16_model_gives_float32_units_of_its_own_precision(tmp_path):
    folder = build_moe("mixtral", tmp_path / "mixtral")
    loaded = load_model(read_model_info(str(folder)), dtype="bfloat16")
    seen = run(loaded.model, "mixtral", PROMPTS[:2], loaded.tokenizer)
    experts = blocks(loaded.model)[0].mlp.experts
    record = seen[0]
    assert record["units"].dtype == torch.float32
    assert record["router"].dtype == torch.float32
    for expert in range(EXPERTS):
        routed = (record["index"] == expert).any(dim=-1)
        expected = hand_units("mixtral", experts, expert, record["x"][routed]).float()
        difference = worst(expert_block(record["units"], expert)[routed], expected)
        scale = float(expected.abs().max()) if expected.numel() else 1.0
        assert difference <= 2**-7 * scale  # bfloat16 rounding of the same operations


OTHER_FAMILIES = {  # more users of transformers' fused experts, each with its own twist
    "DeepseekV3Config": {  # grouped routing with a scaling factor, shared expert, dense layer 0
        "n_routed_experts": 8, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1,
        "first_k_dense_replace": 1, "n_shared_experts": 1, "num_key_value_heads": 4,
        "q_lora_rank": 16, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
        "v_head_dim": 8},
    "Qwen2MoeConfig": {"num_experts": 4, "num_experts_per_tok": 2,  # plus a shared expert
                       "shared_expert_intermediate_size": 24},
    "OlmoeConfig": {"num_experts": 4, "num_experts_per_tok": 2},
    "AriaTextConfig": {"moe_num_experts": 4, "moe_topk": 2},  # transposed weights, no bias
}


@pytest.mark.parametrize("name", OTHER_FAMILIES)
def test_other_fused_families_rebuild_the_experts_output(name):
    """Built in memory from a config (no tokenizer needed): find_moe reads each layout by its
    flags, and the units through the down projections, weighted, give the experts' output."""
    import transformers

    small = {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
             "num_hidden_layers": 2, "vocab_size": 100, "intermediate_size": 48,
             "moe_intermediate_size": 16, "head_dim": 8, "pad_token_id": 0,
             "bos_token_id": 1, "eos_token_id": 2}
    config = getattr(transformers, name)(**{**small, **OTHER_FAMILIES[name]})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    _spread_weights(model, 0)
    found = [find_moe(block) for block in blocks(model)]
    assert found[-1] is not None
    seen: dict = {}
    handles = []
    for layer, parts in enumerate(found):
        if parts is None:
            continue

        def before(module, args, kwargs, layer=layer, parts=parts):
            seen[layer] = {"units": units_from_hook(parts, args, kwargs),
                           "router": router_from_hook(parts, args, kwargs)}

        def after(module, args, output, layer=layer):
            seen[layer]["out"] = output

        handles += [parts.experts.register_forward_pre_hook(before, with_kwargs=True),
                    parts.experts.register_forward_hook(after)]
    try:
        model(torch.randint(3, 100, (2, 9), generator=torch.Generator().manual_seed(0)),
              use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    for layer, parts in enumerate(found):
        if parts is None:
            continue
        record = seen[layer]
        units = record["units"].reshape(-1, parts.num_experts, parts.units)  # [tokens, E, I]
        rebuilt = torch.zeros_like(record["out"])
        for expert in range(parts.num_experts):
            routed = ~units[:, expert, 0].isnan()
            down = parts.experts.down_proj[expert]
            values = units[routed, expert] @ (down if parts.transposed else down.T)
            rebuilt[routed] += record["router"][routed, expert, None] * values
        assert (~units[:, :, 0].isnan()).sum(-1).tolist() == [parts.top_k] * units.shape[0]
        assert worst(rebuilt, record["out"]) <= TOLERANCE
