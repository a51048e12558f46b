"""Corpus examples against a route that shares no code with lazarus: each window run alone
through the Hugging Face model, its site read by a forward hook on the module, windows cut here,
statistics by numpy. The scan's values are summarised a few batches at a time (`scan._Reducer`),
so FLUSH_VALUES is made small enough that a shard is summarised several times, from batches of
windows of unequal lengths (padding) that overlap (only the tokens new to a window count)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import lazarus
from lazarus.analyses import scan
from lazarus.stats.sketch import ALPHA, MIN_ABS, QUANTILES

CORPUS = Path(__file__).parent / "data" / "corpus.txt"
WINDOW, STRIDE, KEEP = 10, 4, 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Short and long lines, a blank one, and a repeated one (exact ties)."""
    lines = CORPUS.read_text().splitlines()[:24]
    long = "The quick brown fox jumps over the lazy dog while 47*47=2209 is computed."
    path = tmp_path_factory.mktemp("forward") / "corpus.txt"
    path.write_text("\n".join([*lines[:8], long, "", "ab", *lines[8:], lines[3]]) + "\n")
    return path


def site_module(model, layer: int, site: str):
    """(module, read): the module whose output (or, for mlp_post, whose down projection's
    input) is the site, per the README's definitions."""
    block = model.transformer.h[layer] if hasattr(model, "transformer") else \
        model.model.layers[layer]
    if site == "resid_post":
        return block, "output"
    if site == "mlp_out":
        return block.mlp, "output"
    if site == "attn_out":
        return getattr(block, "attn", None) or block.self_attn, "output"
    down = block.mlp.c_proj if hasattr(block.mlp, "c_proj") else block.mlp.down_proj
    return down, "input"


def by_hand(folder: Path, path: Path, layer: int, site: str, neurons: tuple[int, ...]):
    """(float64 [tokens, K] values, [(doc, window, token)]) of every scored token."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prefix = tokenizer("", add_special_tokens=True)["input_ids"]
    module, read = site_module(model, layer, site)
    seen = {}

    def output(module, args, out):
        seen["value"] = out[0] if isinstance(out, tuple) else out

    handle = (module.register_forward_hook(output) if read == "output" else
              module.register_forward_pre_hook(lambda m, args: seen.update(value=args[0])))
    values, ids = [], []
    try:
        for doc, line in enumerate(path.read_text().split("\n")):
            if not line.strip():
                continue
            tokens = tokenizer(line, add_special_tokens=False)["input_ids"]
            start, index, previous_end = 0, 0, 0
            while True:
                end = min(start + WINDOW, len(tokens))
                with torch.no_grad():
                    model(input_ids=torch.tensor([prefix + tokens[start:end]]))
                rows = seen["value"][0, len(prefix):, list(neurons)].double().numpy()
                for token in range(max(0, previous_end - start), end - start):
                    values.append(rows[token])
                    ids.append((doc, index, token))
                if end >= len(tokens):
                    break
                previous_end, start, index = end, start + STRIDE, index + 1
    finally:
        handle.remove()
    return np.array(values), ids


@pytest.mark.parametrize(("architecture", "layer", "site", "neurons"),
                         [("llama", 1, "resid_post", (0, 5, 63)),
                          ("llama", 2, "mlp_post", (127, 3)),
                          ("gpt2", 1, "attn_out", (7, 40)),
                          ("qwen2", 3, "mlp_out", (1, 2))])
def test_examples_equal_each_window_run_alone(tiny_model_dirs, corpus, tmp_path, monkeypatch,
                                              architecture, layer, site, neurons):
    monkeypatch.setattr(scan, "FLUSH_VALUES", 40)  # several summaries per shard
    folder = tiny_model_dirs[architecture]
    values, ids = by_hand(folder, corpus, layer, site, neurons)
    result = lazarus.load(str(folder)).examples(
        str(corpus), layer, site=site, neurons=neurons, examples=KEEP, window=WINDOW,
        stride=STRIDE, work_dir=str(tmp_path), shard_windows=9, max_batch=4)
    assert result.tokens == len(ids)
    where = {at: row for row, at in enumerate(ids)}
    for k, neuron in enumerate(result.neurons):
        column = values[:, k]
        assert neuron.neuron == neurons[k]
        assert neuron.count == len(column)
        assert neuron.mean == pytest.approx(column.mean(), abs=1e-6)
        assert neuron.std == pytest.approx(column.std(), abs=1e-6)
        assert (neuron.min, neuron.max) == pytest.approx((column.min(), column.max()), abs=1e-5)
        for chosen, highest in ((neuron.top, True), (neuron.bottom, False)):
            want = sorted(column, reverse=highest)[:KEEP]
            np.testing.assert_allclose([e.value for e in chosen], want, atol=1e-5)
            for example in chosen:  # each example is the token it names
                row = where[(example.doc, example.window, example.token)]
                assert example.value == pytest.approx(column[row], abs=1e-5)
        exact = np.sort(column)
        for q in QUANTILES:
            truth = exact[math.floor(q * (len(exact) - 1))]
            assert abs(neuron.quantiles[f"p{round(q * 100)}"] - truth) <= \
                ALPHA * abs(truth) + MIN_ABS + 1e-6
