"""Broken checkpoints never give numbers: no random initialisation, no traceback.

Each case is a realistic mistake (an interrupted download, a config that does not match its
weights, a hostile pickle), made here from the tiny Llama, and run through the real entry point:
one line on stderr naming the file or the mismatch, exit 2, no output file. Where the blocks
that are computed are whole, the run goes on and its values equal the intact model's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lazarus.cli.main import main


def copy_of(folder: Path, tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def neurons(capsys, model: Path, layer: int, output: Path) -> tuple[int, str, str]:
    code = main(["introspect", "neurons", "-m", str(model), "-l", str(layer), "-p", "2+2=|x",
                 "-n", "0,5", "--no-cache", "-o", str(output)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys, model: Path, layer: int, tmp_path: Path) -> str:
    output = tmp_path / "out.json"
    code, out, err = neurons(capsys, model, layer, output)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert lines[-1].startswith("lazarus: error: ")
    assert [line for line in lines if not line.startswith("lazarus: loading the whole")] == \
        lines[-1:], err
    assert not output.exists()
    return lines[-1]


def values(capsys, model: Path, layer: int, tmp_path: Path) -> np.ndarray:
    output = tmp_path / f"values-{model.name}-{layer}.json"
    code, _, err = neurons(capsys, model, layer, output)
    assert code == 0, err
    document = json.loads(output.read_text())
    return np.array(document["activations"], dtype=np.float32)


def as_pickle_checkpoint(folder: Path) -> None:
    """The same weights as a plain PyTorch `.bin` (tensors only), loaded whole."""
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


@pytest.mark.parametrize("form", ["safetensors", "bin"])
def test_a_config_claiming_more_blocks_than_the_weights_hold(llama_dir, tmp_path, capsys, form):
    model = copy_of(llama_dir, tmp_path)
    if form == "bin":
        as_pickle_checkpoint(model)
    edit_config(model, num_hidden_layers=6)
    message = refused(capsys, model, 5, tmp_path)
    assert "has no weights for" in message
    assert "layers.4." in message
    assert "random values" in message
    # Blocks 0..2 are all in the checkpoint: their values are the intact model's.
    assert np.array_equal(values(capsys, model, 2, tmp_path), values(capsys, llama_dir, 2,
                                                                      tmp_path))


def test_weights_of_another_architecture_are_refused(tiny_model_dirs, tmp_path, capsys):
    model = copy_of(tiny_model_dirs["llama"], tmp_path)
    # Qwen2's blocks have the same shapes plus q/k/v biases that a Llama config does not use.
    shutil.copy(tiny_model_dirs["qwen2"] / "model.safetensors", model / "model.safetensors")
    message = refused(capsys, model, 1, tmp_path)
    assert "does not use" in message
    assert "_proj.bias" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "empty"])
def test_a_damaged_safetensors_file_is_named(llama_dir, tmp_path, capsys, damage):
    model = copy_of(llama_dir, tmp_path)
    weights = model / "model.safetensors"
    if damage == "truncated":  # an interrupted download
        os.truncate(weights, weights.stat().st_size * 2 // 3)
    elif damage == "garbage header":
        weights.write_bytes((40).to_bytes(8, "little") + b"{not json" + b"\0" * 100)
    else:
        weights.write_bytes(b"")
    message = refused(capsys, model, 1, tmp_path)
    assert str(weights) in message
    assert "download or save it again" in message


CONFIG_MISTAKES = {
    "heads": ({"num_attention_heads": 7}, "is not a multiple of the number of attention heads"),
    "activation": ({"hidden_act": "no-such-act"}, "does not know: 'no-such-act'"),
    "width": ({"intermediate_size": 100}, "weights of other shapes than config.json describes"),
}


@pytest.mark.parametrize("case", CONFIG_MISTAKES)
def test_config_contents_that_do_not_fit_are_one_line(llama_dir, tmp_path, capsys, case):
    change, words = CONFIG_MISTAKES[case]
    model = copy_of(llama_dir, tmp_path)
    edit_config(model, **change)
    message = refused(capsys, model, 1, tmp_path)
    assert words in message
    assert str(model) in message


def test_a_hostile_pickle_is_refused_in_one_line_and_never_runs(llama_dir, tmp_path, capsys):
    model = copy_of(llama_dir, tmp_path)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model.embed_tokens.weight": Payload()}, model / "pytorch_model.bin")
    message = refused(capsys, model, 1, tmp_path)
    assert f"{model / 'pytorch_model.bin'} is a pickle" in message
    assert "never unpickles" in message
    assert not marker.exists()
