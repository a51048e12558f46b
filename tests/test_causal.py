"""`ablate` and `steer` end to end: through the library (`Model.ablate`, `Model.steer`) and the
real CLI entry point, on the tiny Llama.

The random control is checked by hand (p from its documented formula, z with the statistics
module, each draw's effect by ablating that draw's neurons on their own); doing nothing is
checked against Hugging Face's own `generate`; bad input is one line, exit 2, no file.
"""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch

import lazarus
from lazarus.analyses.ablate import _control_sets, _no_reference_value
from lazarus.cli.main import main
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, save_direction
from lazarus.render.causal import render_ablation

PAIRS = ["hello:xy", "ab:c", "the fox:ed", "q = 1:2"]
PROMPTS = [pair.rsplit(":", 1)[0] for pair in PAIRS]
ANSWERS = [pair.rsplit(":", 1)[1] for pair in PAIRS]


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return lazarus.load(str(tiny_model_dirs["llama"]), device="cpu", use_cache=False)


def test_random_control_is_reproducible_and_its_p_is_as_documented(model):
    def run(seed):
        return model.ablate(PROMPTS, 1, answers=ANSWERS, neurons=[3, 40, 77], site="mlp_post",
                            controls=7, seed=seed)

    first, again, other = run(5), run(5), run(6)
    control = first.conditions[0].control
    assert control.effects == again.conditions[0].control.effects
    assert control.neurons == again.conditions[0].control.neurons
    assert control.neurons != other.conditions[0].control.neurons
    for draw in control.neurons:  # one layer: 3 distinct neurons, none of the chosen ones
        assert len(set(draw[0])) == 3
        assert set(draw[0]).isdisjoint({3, 40, 77})
        assert all(0 <= n < 128 for n in draw[0])
    effect = first.conditions[0].effect
    above = len([e for e in control.effects if e >= effect])
    assert control.p == (1 + above) / (1 + 7)
    assert control.z == pytest.approx((effect - statistics.mean(control.effects))
                                      / statistics.stdev(control.effects), rel=1e-9)
    # The effect of a draw is that of ablating its neurons on their own, with no control.
    alone = model.ablate(PROMPTS, 1, answers=ANSWERS, neurons=list(control.neurons[2][0]),
                         site="mlp_post", controls=0)
    assert alone.conditions[0].effect == pytest.approx(control.effects[2], abs=1e-9)
    # and the chosen effect is the mean answer log-prob drop, from the per-prompt numbers
    drops = [b.answer_log_prob - a.answer_log_prob
             for b, a in zip(first.baseline, first.conditions[0].outcomes, strict=True)]
    assert effect == pytest.approx(statistics.mean(drops), abs=1e-9)


def _hf_greedy(model, prompt, count):
    loaded = model.whole_weights()
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = loaded.model.generate(ids, max_new_tokens=count, do_sample=False, pad_token_id=0)
    return loaded.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_ablating_nothing_and_steering_by_zero_are_the_model_itself(model):
    result = model.ablate(PROMPTS, "0,2", answers=ANSWERS, neurons=[], site="mlp_post",
                          controls=0)
    assert result.conditions[0].effect == 0.0
    for base, after in zip(result.baseline, result.conditions[0].outcomes, strict=True):
        assert base.answer_token_log_probs == after.answer_token_log_probs
        assert base.continuation == after.continuation
    assert [o.continuation for o in result.baseline] == [
        _hf_greedy(model, p, len(a)) for p, a in zip(PROMPTS, ANSWERS, strict=True)]

    with pytest.warns(lazarus.LazarusWarning, match="coefficient 3 adds a vector 3.00x"):
        steered = model.steer(PROMPTS, 1, positive=["abc", "abd"], negative=["xyz", "xyw"],
                              coefficients=[0.0, 3.0], tokens=["a", "xy"], max_tokens=5)
    assert [run.coefficient for run in steered.runs] == [0.0, 3.0]
    assert list(steered.runs[0].continuations) == [_hf_greedy(model, p, 5) for p in PROMPTS]
    assert steered.runs[0].changes == tuple((0.0, 0.0) for _ in PROMPTS)
    assert steered.runs[1].changes != steered.runs[0].changes


def test_component_sweep_and_methods_give_a_condition_per_layer(model):
    result = model.ablate(PROMPTS, "0,1,2", component="attention", sweep=True, method="mean",
                          controls=5)
    assert [c.layers for c in result.conditions] == [(0,), (1,), (2,)]
    assert all(c.control is None for c in result.conditions)  # no random control for components
    assert all(c.effect > 0 for c in result.conditions)  # KL of a real change
    resampled = model.ablate(PROMPTS, 1, neurons=[1, 2], site="mlp_post", method="resample",
                             controls=2, seed=1)
    assert all(j != i for i, j in enumerate(resampled.resampled_from))


def test_a_sweep_says_its_p_values_are_one_per_layer_uncorrected(model):
    """With --sweep each layer gets its own p against its own random neurons: the smallest of
    them is the best of several tests, which the text must say (and a single condition not)."""
    swept = model.ablate(PROMPTS, "0,1,2", answers=ANSWERS, neurons=[3, 40], site="mlp_post",
                         sweep=True, controls=4, seed=0)
    text = render_ablation(swept)
    assert ("(3 layers tested one at a time: each p is its own layer's, uncorrected; the "
            "smallest of the 3 is the best of 3 tests, not one (Bonferroni: p x 3))") in text
    once = model.ablate(PROMPTS, "0,1,2", answers=ANSWERS, neurons=[3, 40], site="mlp_post",
                        controls=4, seed=0)
    assert "tested one at a time" not in render_ablation(once)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ablate_cli_writes_every_number(capsys, tmp_path, tiny_model_dirs):
    output = tmp_path / "ablate.json"
    code, out, err = run_cli(capsys, "introspect", "ablate", "-m", tiny_model_dirs["llama"],
                             "-l", "1", "-p", "|".join(PAIRS), "-n", "3,40", "--site", "mlp_post",
                             "--labels", "a|a|b|b", "--controls", "9", "--seed", "2", "-o",
                             output)
    assert code == 0, err
    document = json.loads(output.read_text())
    control = document["conditions"][0]["control"]
    assert document["method"] == "zero"
    assert len(control["effects"]) == 9
    assert [row["label"] for row in document["conditions"][0]["by_label"]] == ["a", "b"]
    assert "Method: zero (set to 0)" in out
    assert f"p = {control['p']:.3g}" in out
    assert [p["answer"] for p in document["prompts"]] == ANSWERS


def test_steer_cli_compare(capsys, tmp_path, tiny_model_dirs):
    direction = tmp_path / "d.npz"
    save_direction(str(direction), Direction(direction=np.ones(64, np.float32), layer=2))
    output = tmp_path / "steer.json"
    code, out, err = run_cli(capsys, "introspect", "steer", "-m", tiny_model_dirs["llama"],
                             "-p", "ab|hello", "--direction", direction, "--compare",
                             "-1.5,2", "--tokens", "a|b", "--max-tokens", "3", "-o", output)
    assert code == 0, err
    document = json.loads(output.read_text())
    assert document["layer"] == 2
    assert [r["coefficient"] for r in document["prompts"][0]["runs"]] == [0.0, -1.5, 2.0]
    run = document["prompts"][1]["runs"][2]
    assert run["added_norm"] == pytest.approx(2 * document["scale"], rel=1e-5)
    assert "STEERING at layer 2" in out


def test_steer_absolute_with_neurons_is_a_warning_and_changes_nothing(capsys, tmp_path,
                                                                      tiny_model_dirs):
    """Neuron values are always added as given: --absolute changes nothing, and says so."""
    documents, errors = [], []
    for extra in ([], ["--absolute"]):
        output = tmp_path / f"steer{len(extra)}.json"
        code, out, err = run_cli(capsys, "introspect", "steer", "-m", tiny_model_dirs["llama"],
                                 "-p", "ab|hello", "-l", "1", "-n", "3:2.5,9:-1", "--max-tokens",
                                 "3", "--tokens", "a", *extra, "-o", output)
        assert code == 0, err
        assert "STEERING at layer 1" in out
        documents.append(json.loads(output.read_text()))
        errors.append(err.strip().splitlines())
    assert documents[0] == documents[1]
    assert documents[1]["scale"] == 1.0
    assert errors[0] == [f"lazarus: saved {tmp_path / 'steer0.json'}"]
    assert errors[1] == ["lazarus: warning: --absolute changes nothing with --neurons: their "
                         "values are always added as given (coefficient x value, in activation "
                         "units)", f"lazarus: saved {tmp_path / 'steer1.json'}"]


def test_steer_absolute_with_neurons_warns_from_the_library(model):
    from lazarus import LazarusWarning

    with pytest.warns(LazarusWarning, match="--absolute changes nothing with --neurons"):
        model.steer(["ab"], 1, neurons={3: 2.5}, absolute=True, clamp=True, max_tokens=1)


@pytest.fixture
def wrong_width(tmp_path):
    path = tmp_path / "narrow.npz"
    save_direction(str(path), Direction(direction=np.ones(10, np.float32), layer=0))
    return path


BAD = {
    "empty answer": (["ablate", "-l", "0", "-p", "ab:|cd:e", "-n", "1"], "tokenizes to nothing"),
    "layer out of range": (["ablate", "-l", "9", "-p", "ab:c", "-n", "1"], "out of range"),
    "neurons with component": (["ablate", "-l", "0", "-p", "ab", "-n", "1", "--component",
                                "mlp"], "not --neurons and --component"),
    "neuron out of range": (["ablate", "-l", "0", "-p", "ab", "-n", "64"], "out of range"),
    "wrong width ablate": (["ablate", "-l", "0", "-p", "ab", "--from-direction", "WRONG"],
                           "10 weights"),
    "wrong width steer": (["steer", "-p", "ab", "--direction", "WRONG"], "10 weights"),
    "coefficient": (["steer", "-p", "ab", "-l", "0", "-n", "1:2", "--coefficient", "abc"],
                    "not a number"),
    "compare": (["steer", "-p", "ab", "-l", "0", "-n", "1:2", "--compare", "1,x"],
                "not a number"),
    "compare only zeros": (["steer", "-p", "ab", "-l", "0", "-n", "1:2", "--compare", "0,0"],
                           "every coefficient given is 0, so nothing would be steered"),
    "coefficient zero": (["steer", "-p", "ab", "-l", "0", "-n", "1:2", "--coefficient", "0"],
                         "(give a coefficient other than 0, e.g. --compare 0.1,0.2)"),
    "steer layer out of range": (["steer", "-p", "ab", "-l", "-9", "-n", "1:2"],
                                 "out of range"),
    "seed too large": (["steer", "-p", "ab", "-l", "0", "-n", "1:2", "--temperature", "1",
                        "--seed", str(2**64)], "--seed must be from 0 to"),
    "ablate past the context": (["ablate", "-l", "0", "-p", "ab", "-n", "1", "--controls", "0",
                                 "--max-tokens", "100000"],
                                "with 100000 new tokens (--max-tokens) is 100003 tokens but "
                                "this model takes at most 256 (give --max-tokens 253 or less)"),
    "ablate answer past the context": (
        ["ablate", "-l", "0", "-p", "ab:" + "c" * 300, "-n", "1", "--controls", "0"],
        "prompt 1 (3 tokens) followed by its answer 'ccccccccccccccccccccccccccc...' (300 "
        "tokens) is 303 tokens but this model takes at most 256 (shorten it to 253 tokens or "
        "less, or shorten the prompt)"),
    "steer word past the context": (
        ["steer", "-l", "0", "-p", "ab|a", "-n", "1:2", "--tokens", "d|" + "c" * 300],
        "prompt 1 (3 tokens) followed by --tokens 'ccccccccccccccccccccccccccc...' (300 "
        "tokens) is 303 tokens but this model takes at most 256"),
    "too many controls": (["ablate", "-l", "0", "-p", "ab", "-n", "1", "--controls",
                           "1000001"], "--controls must be from 0 to 100000"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_no_file(capsys, tmp_path, tiny_model_dirs,
                                                   wrong_width, case):
    argv, words = BAD[case]
    argv = [str(wrong_width) if a == "WRONG" else a for a in argv]
    output = tmp_path / "never.json"
    code, out, err = run_cli(capsys, "introspect", argv[0], "-m", tiny_model_dirs["llama"],
                             *argv[1:], "-o", output)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert words in lines[0]
    assert "Traceback" not in err
    assert not output.exists()


def test_resampled_generation_uses_each_prompts_own_draw():
    """Generation under a per-prompt edit (resample) gives prompt i the values drawn for i: its
    first greedy token equals the argmax of that prompt run alone with its own draw's values."""
    import lazarus
    from lazarus.engine import measures
    from lazarus.engine.capture import capture, tokenize
    from lazarus.engine.interventions import Edit
    from lazarus.engine.trace import CaptureRequest

    model = lazarus.load("lazarus:demo", use_cache=False)
    prompts = ["45*45=", "2+3=", "7*8=", "91*23="]
    result = model.ablate(prompts, 0, component="attention", method="resample", controls=0,
                          max_tokens=1, seed=3)
    assert len(set(result.resampled_from)) > 1
    loaded = model.whole_weights()
    values = capture(loaded, prompts, CaptureRequest((0,), "attn_out", "all"))[0]
    for i, prompt in enumerate(prompts):
        own = Edit(0, "attn_out", "set", None, per_prompt=(values[result.resampled_from[i]],))
        log_p = measures.next_token(loaded, tokenize(loaded, [prompt]), [own])[0]
        expected = loaded.tokenizer.decode([int(log_p.argmax())])
        assert result.conditions[0].outcomes[i].continuation == expected, prompt


def test_clamping_mlp_neurons_equals_a_copy_whose_down_projection_does_it():
    """steer --clamp sets mlp_post neurons to coefficient x value at every token: the same as a
    copy of the model whose down projection ignores those inputs and adds their clamped part as
    a bias; run by Hugging Face's own generate."""
    import copy

    import torch

    import lazarus

    model = lazarus.load("lazarus:demo", use_cache=False)
    prompts, coefficient = ["12*13=", "7+8="], 2.0
    values = {n: (-1) ** n * 12.0 for n in range(0, 60, 3)}  # strong enough to change the text
    result = model.steer(prompts, 1, neurons=values, clamp=True, site="mlp_post",
                         coefficients=[coefficient], max_tokens=5)
    loaded = model.whole_weights()
    clone = copy.deepcopy(loaded.model)
    down = clone.model.layers[1].mlp.down_proj
    with torch.no_grad():
        bias = sum(coefficient * v * down.weight[:, n].clone() for n, v in values.items())
        for n in values:
            down.weight[:, n] = 0
        down.bias = torch.nn.Parameter(bias)
    steered = next(run for run in result.runs if run.coefficient == coefficient)
    plain = next(run for run in result.runs if run.coefficient == 0)
    for prompt, got, unmodified in zip(prompts, steered.continuations, plain.continuations,
                                       strict=True):
        ids = loaded.tokenizer(prompt, return_tensors="pt")
        for reference, expected in ((clone, got), (loaded.model, unmodified)):
            out = reference.generate(**ids, max_new_tokens=5, do_sample=False,
                                     pad_token_id=loaded.tokenizer.pad_token_id or 0)
            text = loaded.tokenizer.decode(out[0, ids["input_ids"].shape[1]:],
                                           skip_special_tokens=True)
            assert text == expected, prompt
    assert steered.continuations != plain.continuations


def test_zero_to_rounding_is_per_prompt_and_quadratic_for_kl():
    from lazarus.stats.controls import zero_to_rounding

    eps = float(np.finfo(np.float32).eps)
    answer = np.array([-2.0, -0.5])
    # an answer's log-probability moved by a few ulps of its size is rounding; 1e-4 nats is not
    assert zero_to_rounding([answer], [answer * (1 + 3 * eps)], True, eps)
    assert not zero_to_rounding([answer], [answer - 1e-4], True, eps)
    # drops of +0.3 and -0.3 cancel in the mean effect, but each prompt changed: not zero
    assert not zero_to_rounding([answer, answer], [answer - 0.15, answer + 0.15], True, eps)

    def log_softmax(logits):
        logits = np.asarray(logits, np.float64)
        return logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()

    logits = np.random.default_rng(0).normal(0, 5, 500).astype(np.float32)
    ulps = np.random.default_rng(1).integers(-8, 9, 500)
    rounded = (logits * (1 + ulps * eps)).astype(np.float32)  # each logit off by <= 8 ulps
    assert not np.array_equal(rounded, logits)
    assert zero_to_rounding([log_softmax(logits)], [log_softmax(rounded)], False, eps)
    # logits moved by 1e-3 give a KL around 1e-7: small, and real
    moved = logits + np.random.default_rng(2).normal(0, 1e-3, 500)
    assert not zero_to_rounding([log_softmax(logits)], [log_softmax(moved)], False, eps)


def test_an_effect_of_float_rounding_gets_no_p_or_z(capsys, tmp_path, tiny_model_dirs):
    """Each prompt resampled from its own values (the only --reference prompt) changes
    nothing: the report says the effect is zero to float rounding and gives no p or z."""
    output = tmp_path / "ablate.json"
    code, out, err = run_cli(capsys, "introspect", "ablate", "-m", tiny_model_dirs["llama"],
                             "-l", "1", "-p", "hello", "--reference", "hello", "--method",
                             "resample", "-n", "3,40", "--site", "mlp_post", "--controls", "5",
                             "-o", output)
    assert code == 0, err
    condition = json.loads(output.read_text())["conditions"][0]
    assert abs(condition["effect"]) < 1e-12
    assert condition["zero_to_rounding"] is True
    assert (condition["control"]["p"], condition["control"]["z"]) == (None, None)
    assert "zero to float rounding" in condition["control"]["note"]
    assert len(condition["control"]["effects"]) == 5  # the draws are still there to see
    assert "nats: zero to float rounding" in out
    assert "No p or z: the effect is zero to float rounding" in out
    assert "p = " not in out
    assert "z = " not in out


def test_a_tiny_real_kl_keeps_its_p_and_z_and_is_printed_as_a_number(capsys, tmp_path):
    """Two mlp_post neurons of the demo set to their mean move the next token by a KL of about
    1e-7 nats: small, yet real (the same ablation computed in float64 gives the same KL), so it
    is compared with random neurons, and printed as a number, not as 0.0000."""
    from lazarus.engine import measures
    from lazarus.engine.capture import capture, tokenize
    from lazarus.engine.interventions import Edit
    from lazarus.engine.trace import CaptureRequest
    from lazarus.stats import controls

    prompts = ["The cat", "A dog"]
    output = tmp_path / "ablate.json"
    code, out, err = run_cli(capsys, "introspect", "ablate", "-m", "lazarus:demo", "-l", "2",
                             "--site", "mlp_post", "-n", "12,400", "--method", "mean",
                             "--prompts", "|".join(prompts), "--controls", "20", "-o", output)
    assert code == 0, err
    condition = json.loads(output.read_text())["conditions"][0]
    assert 1e-9 < condition["effect"] < 1e-5
    assert condition["zero_to_rounding"] is False
    assert condition["control"]["p"] is not None
    assert condition["control"]["z"] is not None
    assert condition["control"]["note"] is None
    assert f"Effect: {condition['effect']:.2e} nats\n" in out
    assert f"p = {condition['control']['p']:.3g} (" in out
    header = next(line for line in out.splitlines() if "|    KL    |" in line)
    assert [cell.strip() for cell in header.split("|")] == [
        "Prompt", "KL", "greedy base", "greedy ablated"]  # whole: no header cut with '…'
    # the same ablation in float64
    loaded = lazarus.load("lazarus:demo", use_cache=False, device="cpu").whole_weights()
    loaded.model.to(torch.float64)
    ids = tokenize(loaded, prompts)
    values = capture(loaded, prompts, CaptureRequest((2,), "mlp_post", "all"))[2]
    mean = np.concatenate(values).astype(np.float64).mean(axis=0)[[12, 400]]
    base = measures.next_token(loaded, ids)
    ablated = measures.next_token(loaded, ids, [Edit(2, "mlp_post", "set", (12, 400),
                                                     values=mean)])
    kls = [controls.kl_divergence(b, a) for b, a in zip(base, ablated, strict=True)]
    assert condition["effect"] == pytest.approx(statistics.mean(kls), rel=1e-2)


def test_with_few_units_the_control_is_every_set_once_and_p_is_exact(model):
    """With as many heads as this model has, fewer distinct control sets exist than asked for:
    each is used once (not drawn again and again), so p cannot go below 1 / (1 + sets)."""
    heads = model.info.config["num_attention_heads"]
    result = model.ablate(PROMPTS, 1, answers=ANSWERS, neurons=[0], site="attn_head",
                          controls=heads + 30, seed=2)
    control = result.conditions[0].control
    assert control.every_set
    assert sorted(control.neurons) == [((h,),) for h in range(1, heads)]  # each other head once
    assert control.draws == heads - 1
    above = sum(e >= result.conditions[0].effect for e in control.effects)
    assert control.p == (1 + above) / heads
    assert control.p >= 1 / heads
    fewer = model.ablate(PROMPTS, 1, answers=ANSWERS, neurons=[0], site="attn_head",
                         controls=heads - 2, seed=2).conditions[0].control  # fewer than exist
    assert not fewer.every_set
    assert fewer.draws == heads - 2


def test_units_without_a_reference_value_are_never_control_draws():
    """MoE expert units are NaN where their expert is not routed: a unit NaN at every
    --reference token has no mean to set, so it is found, and left out of the control pool."""
    nan = np.nan
    reference = [np.array([[1.0, nan, 2.0, nan], [3.0, nan, nan, nan]]),
                 np.array([[5.0, nan, 1.0, nan]])]
    assert _no_reference_value(reference, 1).tolist() == [1, 3]
    assert _no_reference_value(reference, 2).tolist() == [0, 1]  # a unit of 2 raw columns
    sets, every = _control_sets(np.random.default_rng(0), [np.array([0, 2, 4, 5])], [0], 10)
    assert every
    assert sets == [((2,),), ((4,),), ((5,),)]
    with pytest.raises(LazarusError, match="too few other units"):
        _control_sets(np.random.default_rng(0), [np.array([0, 2])], [0, 2], 5)


def test_a_steer_word_the_tokenizer_does_not_know_is_warned_about():
    """The demo's tokenizer has one token per character it knows and <unk> for the rest:
    Δlog p('日本') would be that of '<unk><unk>', which says nothing about the word."""
    from lazarus import LazarusWarning

    demo = lazarus.load("lazarus:demo")
    with pytest.warns(LazarusWarning, match="--tokens: 2 of the 2 tokens of '日本' are this "
                                            "tokenizer's unknown token <unk>, so its Δlog p is "
                                            "that of <unk>"):
        result = demo.steer(["2+3="], 0, neurons={1: 1.0}, tokens=["日本", "5"], max_tokens=1)
    assert result.tokens == ("日本", "5")


def test_an_ablate_answer_the_tokenizer_does_not_know_is_warned_about_once(capsys):
    """The same rule as steer's --tokens: an answer scored as <unk><unk> says nothing about it.
    Given for two prompts, it is warned about once; on the command line, on stderr."""
    from lazarus import LazarusWarning

    demo = lazarus.load("lazarus:demo")
    with pytest.warns(LazarusWarning) as caught:
        demo.ablate(["2+3=", "2+4="], 2, answers=["日本", "日本"], neurons=[1], controls=2)
    said = [str(w.message) for w in caught if w.category is LazarusWarning]
    assert said == ["answer: 2 of the 2 tokens of '日本' are this tokenizer's unknown token "
                    "<unk>, so its log-probability is that of <unk>, not of the text"]
    code, out, err = run_cli(capsys, "introspect", "ablate", "-m", "lazarus:demo", "-l", "2",
                             "-n", "1", "--controls", "2", "-p", "2+3=:5日")
    assert code == 0, err
    assert ("answer: 1 of the 2 tokens of '5日' is this tokenizer's unknown token <unk>, so its "
            "log-probability is partly that of <unk>") in err
    assert "unknown token" not in out


def test_steering_by_only_zeros_is_refused_before_the_weights_load():
    """Coefficient 0 is the unsteered run, always shown: with no other, nothing is steered, and
    a table of zero changes would read as 'steering does nothing'."""
    demo = lazarus.load("lazarus:demo")
    for coefficients in ([0.0, -0.0], []):
        with pytest.raises(LazarusError, match="nothing would be steered"):
            demo.steer(["2+3="], 0, neurons={1: 1.0}, coefficients=coefficients)
    assert demo.loads == 0
