"""`engine.budget`'s memory arithmetic from config.json, worked out by hand from the tiny models'
sizes (tests/tiny_models.py: hidden 64, MLP 128 (GPT-2: n_inner unset, so 4 x 64), 4 heads;
gpt-oss: 4 experts of 128 units, 2 per token). The batch plan itself: tests/test_capture.py."""

from __future__ import annotations

import pytest

from lazarus.engine.budget import (
    CPU_TOKEN_BUDGET,
    MAX_BATCH,
    activation_bytes_per_token,
    kept_bytes_per_token,
    limits_for,
    site_width_guess,
)
from lazarus.engine.capture import CaptureRequest
from lazarus.engine.loading import LoadedModel, load_model
from lazarus.engine.model_info import read_model_info


def described(folder) -> LoadedModel:
    """What the budget reads of a model before it loads: its config (no weights)."""
    return LoadedModel(model=None, tokenizer=None, info=read_model_info(str(folder)),
                       device="cpu", dtype="float32")


@pytest.mark.parametrize(("arch", "expected"), [
    # value bytes x (10 x hidden + 4 x MLP width x experts per token) + 4 x heads x tokens
    ("llama", 4 * (10 * 64 + 4 * 128 * 1) + 4 * 4 * 10),
    ("gpt2", 4 * (10 * 64 + 4 * 256 * 1) + 4 * 4 * 10),
    ("gpt_oss", 4 * (10 * 64 + 4 * 128 * 2) + 4 * 4 * 10),
])
def test_activation_bytes_per_token(tiny_model_dirs, arch, expected):
    config = read_model_info(str(tiny_model_dirs[arch])).config
    assert activation_bytes_per_token(config, 4, longest=10) == expected
    assert activation_bytes_per_token(config, 2, longest=10) < expected  # bfloat16 values


def test_the_widest_site_row(tiny_model_dirs):
    assert site_width_guess(described(tiny_model_dirs["llama"])) == 128  # the MLP
    assert site_width_guess(described(tiny_model_dirs["gpt_oss"])) == 4 * 128  # expert units


@pytest.mark.parametrize(("arch", "request_", "expected"), [
    ("llama", CaptureRequest((0, 1), position="last"), 0),  # one row per prompt: no tokens
    ("llama", CaptureRequest((0, 1), position="mean"), 0),
    ("llama", CaptureRequest((0, 1), position="all"), 4 * 128 * 2),  # widest site, 2 layers
    ("llama", CaptureRequest((2,), position="all", columns=(1, 2, 3)), 4 * 3),
    ("gpt_oss", CaptureRequest((1,), "mlp_post", "mean"), 4 * 4 * 128),  # every token's units
    ("gpt_oss", CaptureRequest((1,), "mlp_post", "last"), 0),
    ("gpt_oss", CaptureRequest((1,), "mlp_post", "all"), 4 * 4 * 128 + 4 * 512),
    ("gpt_oss", CaptureRequest((1,), "resid_post", "mean"), 0),
])
def test_what_the_hooks_keep_per_token(tiny_model_dirs, arch, request_, expected):
    assert kept_bytes_per_token(described(tiny_model_dirs[arch]), request_) == expected


def test_given_limits_are_kept_and_missing_ones_chosen(llama_dir):
    loaded = load_model(read_model_info(str(llama_dir)), "cpu", "float32")
    request = CaptureRequest((1,))
    assert limits_for(loaded, 12, request, 100, 3) == (100, 3)
    budget, batch = limits_for(loaded, 12, request, None, 3)
    assert 12 <= budget <= CPU_TOKEN_BUDGET
    assert batch == 3
    assert limits_for(loaded, 12, request, 100, None) == (100, MAX_BATCH)
