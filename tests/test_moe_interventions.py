"""Interventions on MoE sites (expert units at mlp_post, routing weights at router) against an
independent route: a copy of the model whose expert weights do what the edit does, run by
Hugging Face alone, one prompt at a time; the edited runs are batched with padding."""

from __future__ import annotations

import copy

import pytest
import torch
from test_interventions import _assert_same
from test_moe import MOE_LAYERS, build_moe

from lazarus.engine import interventions
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.moe import find_moe

FAMILIES = ("mixtral", "gpt_oss")


@pytest.fixture(scope="module")
def moe_loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe_edit_models")
    return {family: load_model(read_model_info(str(build_moe(family, root / family))), "cpu",
                               "float32")
            for family in FAMILIES}


def _experts(model, layer):
    return find_moe(model.model.layers[layer]).experts


@pytest.mark.parametrize("family", FAMILIES)
def test_zeroing_expert_units_equals_zeroing_their_down_projection_inputs(moe_loaded, family):
    loaded = moe_loaded[family]
    layer = MOE_LAYERS[family][-1]
    parts = find_moe(loaded.model.model.layers[layer])
    chosen = [(0, 1), (0, 5), (2, 3), (parts.num_experts - 1, parts.units - 1)]  # (expert, unit)
    clone = copy.deepcopy(loaded)
    down = _experts(clone.model, layer).down_proj  # [E, I, H] if transposed, else [E, H, I]
    with torch.no_grad():
        for expert, unit in chosen:
            if parts.transposed:
                down[expert, unit, :] = 0
            else:
                down[expert, :, unit] = 0
    columns = tuple(parts.column(e, u) for e, u in chosen)
    _assert_same(loaded, [interventions.zero(layer, "mlp_post", columns)], clone.model)


@pytest.mark.parametrize("family", FAMILIES)
def test_zeroing_a_routing_weight_equals_silencing_that_expert(moe_loaded, family):
    loaded = moe_loaded[family]
    layer = MOE_LAYERS[family][0]
    clone = copy.deepcopy(loaded)
    experts = _experts(clone.model, layer)
    with torch.no_grad():  # expert 1 then adds nothing, wherever it is routed
        experts.down_proj[1] = 0
        if experts.has_bias:
            experts.down_proj_bias[1] = 0
    _assert_same(loaded, [interventions.zero(layer, "router", (1,))], clone.model)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_expert_routed_everywhere_at_a_fixed_weight_equals_its_output_added(moe_loaded,
                                                                               family):
    """Setting expert 2's routing weight to 0.5 for every token (routed or not) equals the model
    with expert 2 removed from the routing plus half of expert 2's output added by hand: the
    copy's route is a forward hook that does exactly that arithmetic on the unhooked module."""
    loaded = moe_loaded[family]
    layer = MOE_LAYERS[family][0]
    clone = copy.deepcopy(loaded)
    experts = _experts(clone.model, layer)
    expert_copy = copy.deepcopy(experts)
    with torch.no_grad():  # only expert 2 left in the copy: its output for every token
        keep = torch.zeros(expert_copy.num_experts, dtype=torch.bool)
        keep[2] = True
        for tensor in expert_copy.parameters():
            tensor[~keep] = 0
        experts.down_proj[2] = 0  # expert 2 silenced where it was routed
        if experts.has_bias:
            experts.down_proj_bias[2] = 0

    def add_half_of_expert_2(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        flat = hidden.reshape(-1, hidden.shape[-1])
        everyone = torch.full((flat.shape[0], 1), 2, dtype=torch.long)
        half = torch.full((flat.shape[0], 1), 0.5, dtype=flat.dtype)
        return output + expert_copy(flat, everyone, half).reshape(output.shape)

    experts.register_forward_hook(add_half_of_expert_2, with_kwargs=True)
    edit = interventions.Edit(layer, "router", "set", (2,),
                              values=torch.tensor([0.5]).numpy())
    _assert_same(loaded, [edit], clone.model)
