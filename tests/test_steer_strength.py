"""How strong `steer` steers: the activation norm an added vector is measured against (checked
against a forward hook on Hugging Face's own block, BOS left out), the added fraction, the
default coefficient and the bare `--compare` sweep per mode, and the warning past the limit."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

import lazarus
from lazarus import LazarusWarning
from lazarus.analyses import steer_strength
from lazarus.cli.main import main
from lazarus.io.directions import Direction, save_direction

PROMPTS = ["hello", "ab", "the fox"]
DIRECTION_SWEEP = [-0.3, -0.2, -0.1, 0.1, 0.2, 0.3]  # README / --help: a bare --compare
NEURON_SWEEP = [-1.5, -1.0, -0.5, 0.5, 1.0, 1.5]


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {arch: lazarus.load(str(tiny_model_dirs[arch]), device="cpu", use_cache=False)
            for arch in ("llama", "gpt2")}


def _block_outputs(model, layer: int, prompts: list[str]) -> list[np.ndarray]:
    """Each prompt's every token at the output of block `layer` (resid_post), read by a forward
    hook on the Hugging Face module, one prompt at a time (no padding)."""
    loaded = model.whole_weights()
    inner = loaded.model
    blocks = inner.model.layers if hasattr(inner, "model") else inner.transformer.h
    kept: list[np.ndarray] = []

    def hook(_module, _inputs, output):
        value = output[0] if isinstance(output, tuple) else output
        kept.append(value[0].detach().double().numpy())

    handle = blocks[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            for prompt in prompts:
                inner(**loaded.tokenizer(prompt, return_tensors="pt"))
    finally:
        handle.remove()
    return kept


def _hand_norm(model, layer: int, prompts: list[str], skip: int) -> tuple[float, int]:
    rows = [row[skip:] for row in _block_outputs(model, layer, prompts)]
    norms = np.concatenate([np.linalg.norm(row, axis=1) for row in rows])
    return float(norms.mean()), int(norms.size)


@pytest.mark.parametrize(("arch", "skip"), [("llama", 1), ("gpt2", 0)])
def test_added_fraction_is_the_added_length_over_the_mean_token_norm(models, arch, skip):
    """Llama's tokenizer puts <s> first: its row is left out; GPT-2's puts nothing."""
    model = models[arch]
    ids = model.whole_weights().tokenizer("ab")["input_ids"]
    assert (ids[0] == 2) == (skip == 1)  # the tiny tokenizers' BOS id, or none
    norm, count = _hand_norm(model, 1, PROMPTS, skip)
    assert count == sum(len(p) for p in PROMPTS)  # one token per character
    values = {3: 2.5, 9: -1.0}
    result = model.steer(PROMPTS, 1, neurons=values, coefficients=[0.5, -2.0], max_tokens=1)
    assert result.activation_norm == pytest.approx(norm, rel=1e-5)
    assert result.norm_tokens == count
    length = math.hypot(2.5, -1.0)
    for run in result.runs:
        assert result.added_fraction(run) == pytest.approx(abs(run.coefficient) * length / norm,
                                                           rel=1e-5)
    direction = Direction(direction=np.arange(1, 65, dtype=np.float32), layer=1)
    along = model.steer(PROMPTS, direction=direction, coefficients=[0.25], max_tokens=1)
    assert along.scale == pytest.approx(norm, rel=1e-5)  # what the coefficient multiplies
    added = 0.25 * along.scale * np.asarray(along.vector, np.float64)  # the vector added
    assert float(np.linalg.norm(added)) / norm == pytest.approx(
        along.added_fraction(along.runs[1]), rel=1e-5)
    assert along.added_fraction(along.runs[1]) == pytest.approx(0.25, rel=1e-5)


def test_clamping_adds_nothing_so_it_has_no_fraction(models):
    result = models["llama"].steer(PROMPTS, 1, neurons={3: 2.5}, clamp=True,
                                   coefficients=[40.0], max_tokens=1)
    assert [result.added_fraction(run) for run in result.runs] == [None, None]
    assert result.activation_norm > 0


def test_default_coefficient_and_sweep_per_mode(models):
    model = models["llama"]
    direction = Direction(direction=np.ones(64, np.float32), layer=1)

    def coefficients(**kwargs):
        return [run.coefficient for run in model.steer(PROMPTS[:1], max_tokens=1,
                                                       **kwargs).runs]

    assert coefficients(direction=direction) == [0.0, 0.2]
    assert coefficients(layer=1, neurons={3: 1.0}) == [0.0, 1.0]
    assert coefficients(direction=direction, absolute=True) == [0.0, 1.0]
    assert coefficients(direction=direction, compare=True) == [0.0, *DIRECTION_SWEEP]
    assert coefficients(layer=1, neurons={3: 1.0}, compare=True) == [0.0, *NEURON_SWEEP]
    norm, _ = _hand_norm(model, 1, PROMPTS[:1], 1)
    lengths = coefficients(direction=direction, absolute=True, compare=True)[1:]
    assert lengths == pytest.approx([c * norm for c in DIRECTION_SWEEP], rel=0.05)  # 2 digits
    with pytest.raises(lazarus.LazarusError, match="not both"):
        model.steer(PROMPTS, direction=direction, compare=True, coefficients=[1.0])


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def direction_file(tmp_path):
    path = tmp_path / "d.npz"
    save_direction(str(path), Direction(direction=np.ones(64, np.float32), layer=1))
    return path


def test_bare_compare_sweeps_the_documented_range_and_json_has_the_fractions(
        capsys, tmp_path, tiny_model_dirs, direction_file, models):
    output = tmp_path / "steer.json"
    code, out, err = _cli(capsys, "introspect", "steer", "-m", tiny_model_dirs["llama"], "-p",
                          "|".join(PROMPTS), "--direction", direction_file, "--compare",
                          "--max-tokens", "2", "-o", output)
    assert code == 0, err
    assert "warning" not in err
    document = json.loads(output.read_text())
    norm, count = _hand_norm(models["llama"], 1, PROMPTS, 1)
    assert document["activation_norm"] == pytest.approx(norm, rel=1e-5)
    assert document["norm_tokens"] == count
    assert document["clamp"] is False
    for prompt in document["prompts"]:
        runs = prompt["runs"]
        assert [r["coefficient"] for r in runs] == [0.0, *DIRECTION_SWEEP]
        for run in runs:  # the old keys stay
            assert set(run) >= {"coefficient", "added_norm", "added_fraction", "continuation",
                                "token_log_probs", "token_log_prob_changes"}
            assert run["added_fraction"] == pytest.approx(run["added_norm"] / norm, rel=1e-5)
    assert {"scale", "scale_kind", "vector", "layer", "site"} <= set(document)
    assert f"over {count} prompt tokens" in out
    assert "| of norm |" in out
    assert "|   0.30x |" in out
    assert "(continuations usually stay text below 0.3)." in out
    # --compare with values still takes them, negative ones included
    code, out, err = _cli(capsys, "introspect", "steer", "-m", tiny_model_dirs["llama"], "-p",
                          "ab", "--direction", direction_file, "--compare", "-0.1,0.25",
                          "--max-tokens", "1", "-o", output)
    assert code == 0, err
    runs = json.loads(output.read_text())["prompts"][0]["runs"]
    assert [r["coefficient"] for r in runs] == [0.0, -0.1, 0.25]


def _warnings(capsys, model_dir, *extra):
    code, _, err = _cli(capsys, "introspect", "steer", "-m", model_dir, "-p", "|".join(PROMPTS),
                        "--max-tokens", "1", *extra)
    assert code == 0, err
    return [line for line in err.splitlines() if "warning" in line]


def test_warning_above_the_limit_and_not_below(capsys, tiny_model_dirs, direction_file,
                                               models):
    llama = tiny_model_dirs["llama"]
    assert _warnings(capsys, llama, "--direction", direction_file, "--coefficient", "0.3") == []
    assert _warnings(capsys, llama, "--direction", direction_file, "--compare",
                     "0.1,-0.5") == [
        "lazarus: warning: coefficient -0.5 adds a vector 0.50x the mean activation norm; "
        "above 0.3x continuations often stop being text (README: How strong to steer; a bare "
        "--compare sweeps a safer range)"]
    # --neurons: the limit is 4x, the added length being |coefficient| x the values' norm
    norm, _ = _hand_norm(models["llama"], 1, PROMPTS, 1)
    below, above = (f"{f * norm / 2.0:.6f}" for f in (3.9, 4.1))
    neurons = ("-l", "1", "-n", "3:2")
    assert _warnings(capsys, llama, *neurons, "--coefficient", below) == []
    code, out, _ = _cli(capsys, "introspect", "steer", "-m", llama, "-p", "ab", *neurons,
                        "--max-tokens", "1")
    assert code == 0 and ("of norm: the added vector's L2 length over the mean activation norm "
                          "(continuations usually stay text below 4x with --neurons: one MLP "
                          "unit is large beside its site's whole norm).") in out
    found = _warnings(capsys, llama, *neurons, "--coefficient", above)
    assert len(found) == 1
    assert "adds a vector 4.10x the mean activation norm; above 4x with --neurons" in found[0]
    # clamping sets values, it adds nothing: never warned
    assert _warnings(capsys, llama, *neurons, "--clamp", "--coefficient", above) == []


def test_the_library_warns_too(models):
    direction = Direction(direction=np.ones(64, np.float32), layer=1)
    with pytest.warns(LazarusWarning, match="coefficient 1 adds a vector 1.00x"):
        models["llama"].steer(PROMPTS, direction=direction, coefficients=[1.0], max_tokens=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models["llama"].steer(PROMPTS, direction=direction, compare=True, max_tokens=1)


def test_a_card_steers_at_the_defaults_without_a_warning(models, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the fox ran over the hill\nhello ab the end of it\n")
    direction = Direction(direction=np.ones(64, np.float32), layer=1)
    model = models["llama"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        along = model.card(1, direction=direction, corpus=str(corpus), causal=True, window=8,
                           causal_windows=2, controls=2, max_tokens=2)
        neuron = model.card(1, neurons=[3], corpus=str(corpus), causal=True, window=8,
                            causal_windows=2, controls=2, max_tokens=2)
    assert [k for k, _ in along.units[0].causal.steering.runs] == [0.0, *DIRECTION_SWEEP]
    assert [k for k, _ in neuron.units[0].causal.steering.runs] == [0.0, -1.0, 1.0, 2.0]


def test_a_card_scales_a_neuron_by_its_largest_value_after_the_prefix(models):
    """Not by its value at <s>, which past layer 0 can be far beyond the others."""
    from lazarus.analyses.card_causal import largest_values

    model = models["llama"]
    loaded = model.whole_weights()
    rows = [list(loaded.tokenizer(p)["input_ids"]) for p in PROMPTS]
    outputs = _block_outputs(model, 1, PROMPTS)
    after = np.abs(np.concatenate([row[1:] for row in outputs])).max(axis=0)
    at_bos = np.abs(np.stack([row[0] for row in outputs])).max(axis=0)
    units = [int(u) for u in np.argsort(after - at_bos)[:2]]  # BOS beyond the rest the most
    assert all(at_bos[u] > after[u] for u in units)
    found = largest_values(loaded, rows, 1, "resid_post", units, skip=1)
    assert found == pytest.approx([after[u] for u in units], rel=1e-5)
    assert largest_values(loaded, rows, 1, "resid_post", units) == pytest.approx(
        [at_bos[u] for u in units], rel=1e-5)


@pytest.mark.parametrize("kind", ["direction", "absolute", "neurons"])
def test_the_limit_is_compared_as_printed_not_past_float_rounding(kind):
    """A fraction a hair past the limit (float rounding of a unit vector's norm) prints as the
    limit itself, and "above 0.3x" is not said of it; one that prints past it is."""
    limit = steer_strength.NEURON_WARN_FRACTION if kind == "neurons" else \
        steer_strength.WARN_FRACTION
    for hair in (1e-16, 1.2e-9, 3.4e-9, 1e-6):
        assert steer_strength.too_strong(kind, [1.0], [limit * (1 + hair)]) is None
    over = steer_strength.too_strong(kind, [1.0], [limit + 0.006])
    assert over is not None
    assert f"adds a vector {limit + 0.006:.2f}x" in over


@pytest.mark.parametrize("absolute", [False, True])
def test_a_bare_compare_never_warns_about_its_own_sweep(models, absolute):
    """Directions whose unit norm rounds a hair past 1, and --absolute lengths rounded to 2
    digits (0.3 x a norm of 3.5 = 1.05 -> 1.1, 0.31x): the sweep is the safe range by design."""
    model = models["llama"]
    generator = np.random.default_rng(0)
    vectors = [v for v in generator.standard_normal((400, 64)).astype(np.float32)
               if np.linalg.norm(v / np.linalg.norm(v.astype(np.float64))) > 1][:12]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for vector in vectors:
            direction = Direction(direction=vector, layer=int(generator.integers(0, 2)))
            result = model.steer(PROMPTS, direction=direction, compare=True, max_tokens=1,
                                 absolute=absolute)
            assert [r.coefficient for r in result.runs][1:] == list(
                steer_strength.sweep("absolute" if absolute else "direction",
                                     result.activation_norm))


def test_a_bare_compare_with_large_neuron_values_says_to_make_them_smaller(models):
    norm, _ = _hand_norm(models["llama"], 1, PROMPTS, 1)
    with pytest.warns(LazarusWarning, match=r"with --neurons .*; give smaller --neurons values\)"):
        models["llama"].steer(PROMPTS, 1, neurons={3: 10 * norm}, compare=True, max_tokens=1)
