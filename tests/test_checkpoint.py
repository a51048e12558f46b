"""`engine.checkpoint` without a model: safetensors headers read against the safetensors
library's own reader, files cut short or grown, block indices of each family's parameter names,
and which missing, reshaped or unexpected weights a load may not leave to chance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from lazarus.engine.checkpoint import (
    block_index,
    check_safetensors,
    refuse_chance,
    safetensors_header,
)
from lazarus.errors import LazarusError


@pytest.fixture
def weights(tmp_path):
    tensors = {"model.embed_tokens.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
               "model.layers.0.mlp.down_proj.weight": np.full((2, 5), 7, dtype=np.float16),
               "lm_head.weight": np.array([1, 2, 3], dtype=np.int64)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path, tensors


def test_the_header_locates_every_tensor_s_bytes(weights):
    path, tensors = weights
    header, start = safetensors_header(path)
    with safe_open(str(path), "np") as reader:
        assert sorted(header) == sorted(reader.keys())  # and no __metadata__
    raw = path.read_bytes()
    assert start == 8 + int.from_bytes(raw[:8], "little")
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        assert raw[start + begin:start + end] == tensors[name].tobytes()
    check_safetensors([path])  # whole: nothing to say


@pytest.mark.parametrize("change", [-1, +1])
def test_a_file_cut_short_or_grown_is_named_with_both_sizes(weights, change):
    path, _ = weights
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size + change)
    with pytest.raises(LazarusError) as refused:
        check_safetensors([path])
    assert str(refused.value) == (
        f"{path} is truncated or damaged: its header needs {size} bytes but the file has "
        f"{size + change} (an interrupted download? download or save it again)")


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "no safetensors header"),
    (b"not a checkpoint at all", "no safetensors header"),
    ((100).to_bytes(8, "little") + b"{}", "the header is cut short"),
    (b"\x02\x00\x00\x00\x00\x00\x00\x00[]", "the header is not a JSON object"),
])
def test_what_is_not_safetensors_is_one_line(tmp_path, content, reason):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(LazarusError) as refused:
        check_safetensors([path])
    assert str(refused.value) == (f"{path} is not a readable safetensors file ({reason}; "
                                  "download or save it again)")


def test_a_header_that_describes_no_tensors_is_one_line(tmp_path):
    path = tmp_path / "model.safetensors"
    header = json.dumps({"x": {"dtype": "F32"}}).encode()  # no data_offsets
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(LazarusError, match="its header does not describe tensors"):
        check_safetensors([path])


@pytest.mark.parametrize(("name", "index"), [
    ("model.layers.3.mlp.down_proj.weight", 3),  # Llama, Qwen2, Gemma, Mistral
    ("transformer.h.11.attn.c_attn.weight", 11),  # GPT-2
    ("gpt_neox.layers.2.attention.dense.bias", 2),  # Pythia
    ("model.decoder.layers.5.fc1.weight", 5),  # OPT
    ("transformer.blocks.0.ffn.up_proj.weight", 0),  # MPT
    ("encoder.layer.7.output.dense.weight", 7),  # BERT-style
    ("h.4.ln_1.weight", 4),  # GPT2Model saved without its LM head
    ("model.embed_tokens.weight", None),
    ("model.norm.weight", None),
    ("lm_head.weight", None),
    ("model.layers_norm.3.weight", None),  # not a list of blocks
])
def test_block_index_of_each_family_s_names(name, index):
    assert block_index(name) == index


def loading(missing=(), mismatched=(), unexpected=()):
    return {"missing_keys": list(missing), "mismatched_keys": list(mismatched),
            "unexpected_keys": list(unexpected)}


def test_only_weights_that_would_be_computed_matter():
    refuse_chance("m", loading(missing=["lm_head.weight", "model.layers.3.mlp.up_proj.weight"],
                               unexpected=["model.layers.2.extra", "model.rotary.inv_freq"]),
                  deepest=1)
    refuse_chance("m", loading(missing=["model.embed_tokens.weight"]), deepest=1,
                  missing_outside_blocks=False)


def test_missing_computed_weights_are_counted_and_the_first_named():
    with pytest.raises(LazarusError) as refused:
        refuse_chance("my/model", loading(missing=["model.layers.1.mlp.up_proj.weight",
                                                   "model.layers.0.self_attn.q_proj.weight",
                                                   "model.layers.3.mlp.up_proj.weight"]),
                      deepest=1)
    assert str(refused.value).startswith(
        "my/model has no weights for 2 parameters that would be computed, such as "
        "model.layers.0.self_attn.q_proj.weight, and lazarus will not fill them with random "
        "values")
    with pytest.raises(LazarusError, match="no weights for 1 parameter that"):
        refuse_chance("m", loading(missing=["model.embed_tokens.weight"]), deepest=0)


def test_reshaped_and_unexpected_computed_weights_are_refused():
    reshaped = [("model.layers.2.mlp.up_proj.weight", (8, 4), (16, 4)),
                ("model.layers.0.mlp.up_proj.weight", (8, 4), (16, 4))]
    with pytest.raises(LazarusError) as refused:
        refuse_chance("m", loading(mismatched=reshaped), deepest=3)
    assert "holds 2 weights of other shapes than config.json describes, such as " \
           "model.layers.0.mlp.up_proj.weight ((8, 4) in the checkpoint, (16, 4) in the " \
           "model" in str(refused.value)
    refuse_chance("m", loading(mismatched=reshaped[:1]), deepest=1)  # block 2 is not computed
    with pytest.raises(LazarusError, match="holds 1 weight that this config's architecture "
                                           "does not use, such as model.layers.1.extra"):
        refuse_chance("m", loading(unexpected=["model.layers.1.extra"]), deepest=1)
