"""Config fields stored per layer are read per layer; what fails inside transformers or a model's
own forward is one line naming the family, the transformers version and what to do.

Gemma 3n keeps `intermediate_size` as one width per decoder layer. A tiny gemma3n_text with three
different widths is read by lazarus at every layer and checked against a forward pre-hook on
that layer's `mlp.down_proj` (the MLP's neurons are its input), each prompt run alone by
transformers itself. Failures inside code lazarus does not own are made by a hook or a
transformers method that raises, and by checkpoints that transformers rejects.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

import lazarus
from lazarus.cli.main import main
from lazarus.engine.capture import capture
from lazarus.engine.configs import config_int, config_note
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.trace import CaptureRequest
from lazarus.engine.widths import mlp_post_bound
from lazarus.errors import LazarusError

WIDTHS = [48, 64, 80]  # Gemma 3n's per-layer MLP widths, tiny
PROMPTS = ["The capital of France is", "2+2="]
VERSION = metadata.version("transformers")


@pytest.fixture(scope="module")
def gemma3n_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_configs import tiny_config
    from tiny_models import build_tokenizer
    from transformers import AutoModelForCausalLM

    config = tiny_config("gemma3n_text")
    config.intermediate_size = list(WIDTHS)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # wider weights than the init's, so that a difference shows
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2 and "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    folder = tmp_path_factory.mktemp("gemma3n")
    model.save_pretrained(folder)
    build_tokenizer(add_bos=True).save_pretrained(folder)
    return folder


def down_proj_inputs(folder: Path) -> dict[int, np.ndarray]:
    """{layer: [prompts, width]}: the last token's input of each block's mlp.down_proj, from
    transformers alone, one prompt at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    seen: dict[int, torch.Tensor] = {}
    handles = [block.mlp.down_proj.register_forward_pre_hook(
        lambda _module, args, layer=layer: seen.__setitem__(layer, args[0]))
        for layer, block in enumerate(model.model.layers)]
    rows: dict[int, list[np.ndarray]] = {layer: [] for layer in range(len(WIDTHS))}
    try:
        for prompt in PROMPTS:
            with torch.inference_mode():
                model(**tokenizer(prompt, return_tensors="pt"), use_cache=False)
            for layer, value in seen.items():
                rows[layer].append(value[0, -1].numpy())
    finally:
        for handle in handles:
            handle.remove()
    return {layer: np.stack(found) for layer, found in rows.items()}


def test_gemma3n_style_list_widths_read_exactly(gemma3n_dir):
    oracle = down_proj_inputs(gemma3n_dir)
    assert [oracle[layer].shape[1] for layer in range(3)] == WIDTHS
    info = read_model_info(str(gemma3n_dir))
    for layer, width in enumerate(WIDTHS):
        assert mlp_post_bound(info.config, layer) == (
            width, f"intermediate_size at layer {layer} = {width}")
        loaded = load_model(info, up_to_layer=layer)
        widths: dict[int, int] = {}
        values = capture(loaded, PROMPTS, CaptureRequest((layer,), "mlp_post"), widths=widths)
        assert widths == {layer: width}
        difference = np.abs(values[layer] - oracle[layer]).max()
        print(f"layer {layer}: {width} neurons, max difference {difference:.2e}")
        assert difference <= 1e-5 * np.abs(oracle[layer]).max()
    assert mlp_post_bound(info.config) == (80, "the largest intermediate_size, 80 at layer 2")


def test_gemma3n_neurons_run_through_the_cli_at_each_layer(gemma3n_dir, tmp_path, capsys):
    for layer, width in enumerate(WIDTHS):
        output = tmp_path / f"layer{layer}.json"
        code = main(["introspect", "neurons", "-m", str(gemma3n_dir), "-l", str(layer),
                     "-p", "|".join(PROMPTS), "--site", "mlp_post", "-n", f"0,{width - 1}",
                     "--no-cache", "-o", str(output)])
        err = capsys.readouterr().err
        assert code == 0, err
        assert len(json.loads(output.read_text())["activations"][0]) == 2


def test_a_neuron_past_its_layers_width_is_refused_naming_that_layer(gemma3n_dir, capsys):
    code = main(["introspect", "neurons", "-m", str(gemma3n_dir), "-l", "0", "-p", "hi",
                 "--site", "mlp_post", "-n", "50", "--no-cache"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err == (
        "lazarus: error: neuron 50 is out of range: the mlp_post site has at most 48 neurons at "
        "layer 0 of this model (config.json: intermediate_size at layer 0 = 48; use ids 0 to "
        "47)\n")


def test_config_int_reads_one_number_or_one_per_layer():
    text = {"num_hidden_layers": 3, "intermediate_size": [16, 48, 32], "hidden_size": 8,
            "num_experts": None}
    assert [config_int(text, "intermediate_size", layer) for layer in range(3)] == [16, 48, 32]
    assert config_int(text, "intermediate_size") == 48
    assert config_int(text, "hidden_size", 2) == 8
    assert config_int(text, "num_experts") is None
    assert config_int(text, "absent") is None
    assert config_note(text, "intermediate_size", 2) == "intermediate_size at layer 2 = 32"
    assert config_note(text, "intermediate_size") == "the largest intermediate_size, 48 at layer 1"
    assert config_note(text, "hidden_size", 1) == "hidden_size = 8"


@pytest.mark.parametrize(("value", "words"), [
    ([16, 48], "lists 2 values but the model has 3 layers"),
    ([], "is an empty list (give one value, or one per layer"),
    ([16, 48.5, 32], "is 48.5, not a whole number"),
    ("64", "is '64', not a whole number"),
    (True, "is True, not a whole number"),
    (-1, "is -1, not a whole number"),
    ({"a": 1}, "is {'a': 1}, not a whole number"),
])
def test_config_int_refuses_what_is_not_a_width(value, words):
    text = {"num_hidden_layers": 3, "intermediate_size": value}
    with pytest.raises(LazarusError, match="config.json's intermediate_size") as caught:
        config_int(text, "intermediate_size", 0)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_empty_list_is_refused_without_a_layer_count():
    with pytest.raises(LazarusError, match="intermediate_size is an empty list") as caught:
        config_int({"intermediate_size": []}, "intermediate_size")
    assert "None" not in str(caught.value)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "model"))


def refused(capsys, argv: list[str], output: Path) -> str:
    """Run the CLI; assert exit 2, one stderr line, no traceback, no output; return the line."""
    code = main([*argv, "-o", str(output)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines()
             if not line.startswith("lazarus: loading the whole")]
    assert len(lines) == 1, captured.err
    assert not output.exists()
    return lines[0]


def test_a_width_that_is_not_a_number_is_refused_before_loading(llama_dir, tmp_path, capsys):
    model = copy_of(llama_dir, tmp_path)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "intermediate_size": "128"}))
    line = refused(capsys, ["introspect", "neurons", "-m", str(model), "-l", "1", "-p", "hi",
                            "--site", "mlp_post", "-n", "5", "--no-cache"], tmp_path / "o.json")
    assert line == ("lazarus: error: config.json's intermediate_size is '128', not a whole "
                    "number or one per layer (fix config.json)")


def failing(_module, _args):
    raise RuntimeError("boom from the model's code\nsecond line of the message")


def test_a_forward_that_fails_inside_the_model_is_one_line(llama_dir):
    model = lazarus.load(str(llama_dir), use_cache=False)
    handle = model.weights(3).model.model.layers[1].register_forward_pre_hook(failing)
    try:
        with pytest.raises(LazarusError) as caught:
            model.capture(PROMPTS, layers=2)
    finally:
        handle.remove()
    message = str(caught.value)
    assert message.startswith(
        "the forward pass failed: RuntimeError: boom from the model's code (raised inside "
        f"transformers {VERSION} by this llama model; report it to lazarus with this line, or "
        "try ")
    assert "pip install" in message
    assert "\n" not in message
    assert model.capture(PROMPTS, layers=2).to_numpy(2).shape == (2, 64)  # the hook is gone


@pytest.mark.parametrize("analysis", ["ablate", "steer"])
def test_an_intervention_whose_forward_fails_is_one_line(llama_dir, analysis):
    """Past the deepest hooked block (the LM head), which only interventions run."""
    model = lazarus.load(str(llama_dir), use_cache=False)
    handle = model.whole_weights().model.lm_head.register_forward_pre_hook(failing)
    try:
        with pytest.raises(LazarusError) as caught:
            if analysis == "ablate":
                model.ablate(PROMPTS, layers=1, neurons=[0, 1], controls=2)
            else:
                model.steer(PROMPTS, layer=1, neurons={0: 1.0}, max_tokens=2)
    finally:
        handle.remove()
    message = str(caught.value)
    assert message.startswith("the forward pass failed: RuntimeError: boom from the model's "
                              f"code (raised inside transformers {VERSION} by this llama model")
    assert "report it to lazarus with this line" in message


def test_a_transformers_method_that_fails_ends_the_cli_in_one_line(llama_dir, tmp_path, capsys,
                                                                    monkeypatch):
    from transformers.models.llama import modeling_llama

    def forward(self, x):
        raise ValueError("an unforeseen failure in transformers")

    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", forward)
    line = refused(capsys, ["introspect", "neurons", "-m", str(llama_dir), "-l", "1", "-p",
                            "2+2=|x", "-n", "0,5", "--no-cache"], tmp_path / "out.json")
    assert line.startswith("lazarus: error: the forward pass failed: ValueError: an unforeseen "
                           f"failure in transformers (raised inside transformers {VERSION} by "
                           "this llama model; report it to lazarus with this line, or try ")


def rewrite_header(weights: Path, old: str, new: str) -> None:
    """Replace text in a safetensors header, keeping its length (so the offsets still hold)."""
    data = weights.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = data[8:8 + size].decode()
    changed = header.replace(old, new, 1)
    assert changed != header
    weights.write_bytes(data[:8] + changed.ljust(size).encode() + data[8 + size:])


@pytest.mark.parametrize("damage", ["config", "weights"])
def test_a_checkpoint_transformers_rejects_is_one_line(llama_dir, tmp_path, capsys, damage):
    model = copy_of(llama_dir, tmp_path)
    if damage == "config":  # transformers' config class checks the field's type
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, "hidden_act": 5}))
        kind, words = "TypeError", "hidden_act"
    else:  # a tensor of a dtype safetensors does not know, with offsets that still add up
        rewrite_header(model / "model.safetensors", '"F32"', '"Q9"')
        kind, words = "SafetensorError", "Q9"
    line = refused(capsys, ["introspect", "neurons", "-m", str(model), "-l", "1", "-p", "hi",
                            "--no-cache"], tmp_path / "out.json")
    assert line.startswith(f"lazarus: error: cannot load {model}: {kind}: ")
    assert words in line
    assert f"(raised inside transformers {VERSION} by this llama model; check its config.json " \
           "and weight files; if they are intact, report it to lazarus with this line" in line


@pytest.mark.parametrize("shape", ["objects", "lists", "a field"])
def test_a_deeply_nested_config_is_one_line(llama_dir, tmp_path, capsys, shape):
    model = copy_of(llama_dir, tmp_path)
    if shape == "objects":
        text = '{"a": ' * 100_000 + "1" + "}" * 100_000
    elif shape == "lists":
        text = "[" * 100_000 + "]" * 100_000
    else:  # under json's own limit, but deeper than transformers' config code can copy
        config = json.loads((model / "config.json").read_text())
        text = json.dumps(config)[:-1] + ', "deep": ' + "[" * 900 + "]" * 900 + "}"
    (model / "config.json").write_text(text)
    line = refused(capsys, ["introspect", "neurons", "-m", str(model), "-l", "1", "-p", "hi",
                            "--no-cache"], tmp_path / "out.json")
    assert line == (f"lazarus: error: cannot read {model / 'config.json'}: it nests objects or "
                    "lists more than 32 deep, which no model's config does (is it a valid "
                    "config.json?)")


def test_a_deeply_nested_safetensors_header_is_one_line(llama_dir, tmp_path, capsys):
    model = copy_of(llama_dir, tmp_path)
    header = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (model / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    line = refused(capsys, ["introspect", "neurons", "-m", str(model), "-l", "1", "-p", "hi",
                            "--no-cache"], tmp_path / "out.json")
    assert line == (f"lazarus: error: {model / 'model.safetensors'} is not a readable "
                    "safetensors file (its header nests too deeply to describe tensors; "
                    "download or save it again)")


def test_running_out_of_memory_in_an_intervention_is_said_as_such(llama_dir):
    def exhausted(_module, _args):
        raise MemoryError

    model = lazarus.load(str(llama_dir), use_cache=False)
    handle = model.whole_weights().model.lm_head.register_forward_pre_hook(exhausted)
    try:
        with pytest.raises(LazarusError) as caught:
            model.steer(PROMPTS, layer=1, neurons={0: 1.0}, max_tokens=2)
    finally:
        handle.remove()
    assert str(caught.value) == ("the forward pass failed: out of memory (use --dtype bfloat16, "
                                 "--device-map auto to spread the model, or a machine with more "
                                 "memory)")
