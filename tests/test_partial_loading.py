"""Loading only the first blocks gives the values of a full load, on every architecture.

Oracle: the whole model (with its LM head) loaded by `from_pretrained`, captured the same way;
and, independently of lazarus's loader, the model's own `output_hidden_states`.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_models import ARCHITECTURES, LAYERS
from transformers import AutoModelForCausalLM, AutoTokenizer

from lazarus.engine.capture import capture
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.prefetch import prefetch_blocks
from lazarus.engine.sites import decoder_blocks
from lazarus.engine.trace import CaptureRequest

PROMPTS = ["2+2=", "47*47=", "The capital of France is", "x", "  padded  prompt\n"]
ALL_LAYERS = tuple(range(LAYERS))


@pytest.fixture(scope="module")
def full_rows(tiny_model_dirs):
    """Every layer's rows from the whole model, per architecture."""
    rows = {}
    for arch, path in tiny_model_dirs.items():
        loaded = load_model(read_model_info(str(path)))
        rows[arch] = capture(loaded, PROMPTS, CaptureRequest(layers=ALL_LAYERS))
    return rows


def worst(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("deepest", [0, 2, LAYERS - 1])
def test_first_blocks_alone_give_the_full_models_values(tiny_model_dirs, full_rows, arch,
                                                         deepest):
    notes: list[str] = []
    info = read_model_info(str(tiny_model_dirs[arch]))
    loaded = load_model(info, up_to_layer=deepest, notify=notes.append)
    assert notes == [], "no fallback to a full load"
    assert loaded.blocks_loaded == deepest + 1
    assert len(decoder_blocks(loaded.model, deepest + 1)) == deepest + 1
    assert loaded.model.get_output_embeddings() is None, "no LM head is built"
    layers = tuple(range(deepest + 1))
    partial = capture(loaded, PROMPTS, CaptureRequest(layers=layers))
    for layer in layers:
        difference = worst(partial[layer], full_rows[arch][layer])
        print(f"{arch} up to {deepest}, layer {layer}: max |difference| {difference:.2g}")
        assert difference <= 1e-6


def test_first_blocks_equal_hidden_states_of_a_plain_transformers_load(llama_dir):
    model = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    loaded = load_model(read_model_info(str(llama_dir)), up_to_layer=1)
    captured = capture(loaded, PROMPTS, CaptureRequest(layers=(1,)), max_batch=1)
    for index, prompt in enumerate(PROMPTS):
        with torch.inference_mode():
            hidden = model(**tokenizer(prompt, return_tensors="pt"),
                           output_hidden_states=True).hidden_states
        assert worst(captured[1][index], hidden[2][0, -1].numpy()) <= 1e-6


def test_later_shards_do_not_matter(tiny_model_dirs, full_rows, tmp_path):
    """A checkpoint in many shards whose later blocks, final norm and LM head are overwritten
    with NaN: the first blocks still give the original values (a full load of it does not)."""
    folder = tmp_path / "sharded"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    model.save_pretrained(folder, max_shard_size="40KB")
    for tokenizer_file in tiny_model_dirs["llama"].glob("tokenizer*"):
        shutil.copy(tokenizer_file, folder)
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(weight_map.values())) >= 4
    later = {name for name in weight_map
             if name.startswith(("model.layers.2.", "model.layers.3.", "lm_head.", "model.norm"))}
    for shard in {weight_map[name] for name in later}:
        tensors = load_file(folder / shard)
        spoilt = {k: torch.full_like(v, float("nan")) if k in later else v
                  for k, v in tensors.items()}
        save_file(spoilt, folder / shard, metadata={"format": "pt"})

    info = read_model_info(str(folder))
    partial = capture(load_model(info, up_to_layer=1), PROMPTS, CaptureRequest(layers=(0, 1)))
    for layer in (0, 1):
        assert worst(partial[layer], full_rows["llama"][layer]) <= 1e-6
    spoilt = capture(load_model(info), PROMPTS, CaptureRequest(layers=(3,)))
    assert np.isnan(spoilt[3]).all()


def test_pickle_checkpoints_load_whole_with_a_note(llama_dir, full_rows, tmp_path):
    folder = tmp_path / "bin"
    shutil.copytree(llama_dir, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    notes: list[str] = []
    loaded = load_model(read_model_info(str(folder)), up_to_layer=1, notify=notes.append)
    assert len(notes) == 1
    assert notes[0].startswith("loading the whole model (its weights are pickle (.bin) files")
    assert loaded.blocks_loaded == LAYERS
    captured = capture(loaded, PROMPTS, CaptureRequest(layers=(1,)))
    assert worst(captured[1], full_rows["llama"][1]) <= 1e-6


def test_device_map_auto_gives_the_same_values(tiny_model_dirs, full_rows):
    info = read_model_info(str(tiny_model_dirs["qwen2"]))
    loaded = load_model(info, up_to_layer=2, device_map="auto")
    assert loaded.device == "cpu"
    captured = capture(loaded, PROMPTS, CaptureRequest(layers=(2,)))
    assert worst(captured[2], full_rows["qwen2"][2]) <= 1e-6


def test_a_layer_beyond_the_loaded_blocks_is_refused(llama_dir):
    loaded = load_model(read_model_info(str(llama_dir)), up_to_layer=1)
    with pytest.raises(ValueError, match="beyond the 2 loaded blocks"):
        capture(loaded, PROMPTS, CaptureRequest(layers=(2,)))


def test_prefetch_asks_for_exactly_the_first_blocks_bytes(tiny_model_dirs):
    for arch in ("llama", "gpt2"):
        folder = tiny_model_dirs[arch]
        expected = 0
        with safe_open(folder / "model.safetensors", "pt") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open has no __iter__
                parts = name.split(".")
                block = parts[2] if parts[1] in ("layers", "h") else None
                if block in ("0", "1"):
                    expected += weights.get_tensor(name).nbytes
        assert expected > 0
        assert prefetch_blocks(read_model_info(str(folder)), up_to_layer=1) == expected
