"""Every causal-LM family of the installed transformers: lazarus reads exactly what a hook on the
decoder block sees, or refuses in one line. Never a silent difference, never a traceback.

Per family, a tiny seeded random model is saved like a Hub checkpoint. Oracle: that model loaded
whole by transformers, a forward hook on each decoder block, each prompt run alone. lazarus:
`read_model_info` → `load_model(up_to_layer=L)` (the partial load) → `capture`, both prompts in
one padded batch, for a middle layer L and for the last.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_configs import LAYERS, tiny_config
from tiny_models import build_tokenizer
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from lazarus.capture import CaptureRequest, capture
from lazarus.errors import LazarusError
from lazarus.loading import load_model
from lazarus.model_info import read_model_info

PROMPTS = ["The capital of France is", "2+2="]  # of different lengths: the batch is padded
LOADS = ((0,), (0, 1), (LAYERS - 1,))  # layers read per partial load: first, middle, last
TOLERANCE = 1e-4  # relative to the largest value of the oracle's row

FAMILIES = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)

# Families this sweep cannot build or run tinily here, and why. Everything else must be read
# exactly or refused.
SKIPPED: dict[str, str] = {
    "gemma3n": "needs timm and Pillow for its vision tower (gemma3n_text is swept)",
    "emu3": "not a causal LM: its text config has no causal-LM class",
    "mllama": "not a causal LM: its text config has no causal-LM class",
    "musicgen": "an audio model: its config has no text decoder to build",
    "musicgen_melody": "an audio model: its config has no text decoder to build",
    "xmod": "needs a language adapter chosen before any forward",
}

# Families lazarus refuses, with a part of its one-line reason.
# Where the oracle reads the number of blocks, when not from num_hidden_layers.
COUNT_KEY = {"longcat_flash": "num_layers"}  # its num_hidden_layers counts 2 sub-layers a block

_NOT_ONE_STREAM = "not one vector per token"
REFUSED: dict[str, str] = {
    "cpmant": _NOT_ONE_STREAM,  # its blocks see learned prompt tokens before the text
    "deepseek_v4": _NOT_ONE_STREAM,  # hyper-connections: four residual streams
    "hy_v4": _NOT_ONE_STREAM,  # hyper-connections
    "gemma3n_text": _NOT_ONE_STREAM,  # AltUp: four parallel predictions of the stream
    "xlnet": _NOT_ONE_STREAM,  # [tokens, batch, width]
    "reformer": _NOT_ONE_STREAM,  # pads the tokens up to its chunk length
    "qwen4_exp": "model is 128 wide but its config says 32",  # hyper-connections
    "qwen4_exp_text": "model is 128 wide but its config says 32",
    "dory": "cannot find the",  # num_hidden_layers counts attention and MLP apart; blocks loop
    "git": "cannot find the",  # image encoder and text blocks of the same count
    "hrm_text": "cannot find the",  # two nested recurrent stacks
    "prophetnet": "names no layer count or hidden size",  # num_decoder_layers, of n-gram streams
    "nemotron_h": "names no layer count or hidden size",  # a pattern string, no count
    "blt": "names no layer count or hidden size",  # byte models around one over patches
    "xlm": "cannot find the",  # attention and MLP in separate lists, no block modules
    "gemma4_assistant": "is an assistant (draft) model",  # needs its target's KV states
    "gemma4_unified_assistant": "is an assistant (draft) model",
    "inkling2_loop_text": "times per forward",  # a loop runs some blocks several times
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small run fastest on one thread; more only spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(family: str, folder: Path) -> Path:
    config = tiny_config(family)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _spread_weights(model)
    model.save_pretrained(folder)
    build_tokenizer(add_bos=True).save_pretrained(folder)
    return folder


def _spread_weights(model: torch.nn.Module) -> None:
    """Wider weight matrices than HF's init (see tiny_models), so that a difference shows; other
    parameters (norms, state-space decay rates, convolutions) keep their own init."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2 and "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def block_list(model: torch.nn.Module, count: int) -> torch.nn.ModuleList:
    """The decoder blocks, found without lazarus: of the module lists with one entry per layer,
    outside any vision or audio tower, the one holding the most parameters."""
    lists = [(sum(p.numel() for p in module.parameters()), name, module)
             for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and len(module) == count
             and not any(part in name for part in ("vision", "audio"))]
    assert lists, f"no list of {count} blocks in {type(model).__name__}"
    return max(lists, key=lambda entry: entry[0])[2]


def hooked_rows(family: str, folder: Path) -> tuple[int, dict[int, np.ndarray | None]]:
    """(layer count, {layer: last-token rows of block L's output for each prompt alone}); None
    for a layer whose block does not output one [batch, tokens, width] residual stream."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)  # as a user would: it depends on the family
    count = getattr(model.config.get_text_config(), COUNT_KEY.get(family, "num_hidden_layers"))
    outputs: dict[int, torch.Tensor] = {}

    def keep(layer: int) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, out: Any) -> None:
            outputs[layer] = out[0] if isinstance(out, (tuple, list)) else out

        return hook

    handles = [block.register_forward_hook(keep(i))
               for i, block in enumerate(block_list(model, count))]
    rows: dict[int, list[np.ndarray]] = {layer: [] for layer in range(count)}
    try:
        for prompt in PROMPTS:
            with torch.inference_mode():
                model(**tokenizer(prompt, return_tensors="pt"), use_cache=False)
            for layer, output in outputs.items():
                rows[layer].append(output[0, -1].numpy() if output.dim() == 3 else None)
    finally:
        for handle in handles:
            handle.remove()
    return count, {layer: None if any(r is None for r in found) else np.stack(found)
                   for layer, found in rows.items()}


def lazarus_reads(folder: Path) -> list[dict[int, np.ndarray] | LazarusError]:
    """For each of LOADS, what lazarus's partial load and capture give: rows, or its refusal."""
    outcomes: list[dict[int, np.ndarray] | LazarusError] = []
    for layers in LOADS:
        try:
            info = read_model_info(str(folder))
            loaded = load_model(info, up_to_layer=max(layers))
            outcomes.append(capture(loaded, PROMPTS, CaptureRequest(layers=layers),
                                    token_budget=10_000, max_batch=len(PROMPTS)))
        except LazarusError as err:
            outcomes.append(err)
    return outcomes


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), 1e-12))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_read_exactly_or_refused_in_one_line(family, tmp_path):
    if family in SKIPPED:
        pytest.skip(SKIPPED[family])
    folder = build(family, tmp_path / family)
    outcomes = lazarus_reads(folder)
    refusals = [str(o) for o in outcomes if isinstance(o, LazarusError)]
    if family in REFUSED:
        assert len(refusals) == len(LOADS), f"{family}: read at some layers, refused at others"
        assert all("\n" not in reason for reason in refusals)
        assert REFUSED[family] in refusals[0]
        return
    assert refusals == [], f"{family} refused: {refusals}"
    count, expected = hooked_rows(family, folder)
    info = read_model_info(str(folder))
    assert info.layer_count == count
    for rows in outcomes:
        for layer, values in rows.items():
            assert expected[layer] is not None, f"{family} block {layer} has no single output"
            assert info.hidden_size == expected[layer].shape[1]
            difference = relative_difference(values, expected[layer])
            print(f"{family} layer {layer}: relative difference {difference:.2g}")
            assert difference <= TOLERANCE, f"{family} layer {layer} differs by {difference:.2g}"


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_encoder_decoder_models_are_refused_at_every_layer(family, tmp_path):
    """Their decoder blocks need the encoder's output; reading the encoder's blocks instead, or
    the decoder's without it, would be silently something else."""
    config = tiny_config(family)
    torch.manual_seed(0)
    folder = tmp_path / family
    AutoModelForSeq2SeqLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    build_tokenizer(add_bos=False).save_pretrained(folder)
    outcomes = lazarus_reads(folder)
    assert all(isinstance(outcome, LazarusError) for outcome in outcomes)
    for outcome in outcomes:
        assert "\n" not in str(outcome)
        assert f"is an encoder-decoder model ({family})" in str(outcome)


def test_the_tables_name_only_families_transformers_offers():
    """A family that leaves transformers must leave the tables too (no stale skips)."""
    assert set(SKIPPED) <= set(FAMILIES)
    assert set(REFUSED) <= set(FAMILIES)
    assert set(SKIPPED).isdisjoint(REFUSED)
