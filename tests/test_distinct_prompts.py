"""Prompts are the unit of every test (issue 20): a prompt listed twice is one sample, so copies
are merged once (and refused where merging cannot be right), folds and shuffles deal out
distinct prompts, and a test prompt that is also a training prompt is never held out.

The Monte Carlo tests run the real analyses on the demo model with labels drawn at random for
prompts drawn from a pool: whatever the model computes, a random labelling carries no signal,
so at level alpha a valid test rejects at most alpha of the time."""

from __future__ import annotations

import json
import math
import unicodedata

import numpy as np
import pytest

import lazarus
from lazarus.cli.main import main
from lazarus.engine.cache import ActivationCache
from lazarus.engine.model_info import read_model_info
from lazarus.engine.placement import Target
from lazarus.io.distinct import merge, merge_classes
from lazarus.render.probe import render_predictions
from lazarus.stats.probe import probe_layers
from lazarus.stats.probe_predict import score_test

WORDS = ["cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock"]
POOL = [f"{word} {i}" for i, word in enumerate(WORDS * 5)]  # 40 distinct prompts
ALPHA = 0.05


@pytest.fixture(scope="module")
def demo():
    """The demo model, loaded once; its notes kept in `demo.notes`."""
    notes: list[str] = []
    model = lazarus.Model("lazarus:demo", notify=notes.append, warn=notes.append)
    model.notes = notes
    return model


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def upper_bound(trials: int) -> float:
    """alpha + 3 standard errors of a rejection rate over `trials` replicates."""
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials)


# --- the rule ------------------------------------------------------------------------------


def test_copies_are_merged_once_in_the_order_first_given():
    given = ["b", "a", "b", "c", "a", "b"]
    distinct = merge(given, ["y", "x", "y", "z", "x", "y"])
    assert distinct.prompts == ("b", "a", "c")
    assert distinct.labels == ("y", "x", "z")
    assert distinct.copies == (3, 2, 1)
    assert distinct.merged == 3
    assert distinct.note() == ("6 prompts given, 3 distinct: merged 3 copies ('b' ×3, 'a' ×2), "
                               "since a prompt is one sample however often it is listed")
    assert merge(["a", "b"]).note() is None


def test_a_note_names_the_first_few_repeated_prompts_shortened():
    long = "a long prompt that goes on and on and on well past forty characters"
    given = [long, long, "p", "p", "q", "q", "r", "r", "s"]
    note = merge(given).note("test prompts")
    shown = "a long prompt that goes on and on and o…"  # 40 characters, the mark included
    assert len(shown) == 40
    assert note == (f"9 test prompts given, 5 distinct: merged 4 copies ('{shown}' ×2, 'p' ×2, "
                    "'q' ×2, 1 more prompt), since a prompt is one sample however often it is "
                    "listed")


def test_identical_means_what_the_activation_cache_keys_a_row_by():
    """Two prompts merge exactly when the cache stores them as one row."""
    store = ActivationCache(read_model_info("lazarus:demo"), "resid_post")
    cpu = Target("cpu", "float32")
    cafe = "café"
    prompts = ["2+3=", "2+3= ", " 2+3=", "2+3=", unicodedata.normalize("NFC", cafe),
               unicodedata.normalize("NFD", cafe), "2+3=\n", "Café"]
    rows = {store.path(cpu, 0, prompt) for prompt in prompts}
    assert len(merge(prompts).prompts) == len(rows) == 7


# --- refusals ------------------------------------------------------------------------------


def test_one_prompt_under_two_labels_is_refused_before_the_model_loads():
    model = lazarus.Model("lazarus:demo")
    with pytest.raises(lazarus.LazarusError) as caught:
        model.neurons(["cat 1", "dog 2", "cat 1", "sun 3"], layers=0,
                      labels=["x", "y", "y", "x"])
    assert str(caught.value) == (
        "prompt 'cat 1' is given under two labels, 'x' (prompt 1) and 'y' (prompt 3): a "
        "prompt is one sample with one label (fix --labels, or remove one of the copies)")
    with pytest.raises(lazarus.LazarusError, match="'x' .prompt 1. and 'y' .prompt 2."):
        model.probe(["a", "b"], ["c", "d"], test=["e", "e"], test_labels=["x", "y"],
                    label_a="x", label_b="y")
    assert model.loads == 0


def test_a_prompt_in_both_classes_is_refused_naming_both():
    model = lazarus.Model("lazarus:demo")
    with pytest.raises(lazarus.LazarusError) as caught:
        model.probe(["cat 1", "dog 2", "sun 3"], ["moon 4", "sun 3", "sun 3"],
                    label_a="pets", label_b="sky")
    assert str(caught.value) == (
        "prompt 'sun 3' is in both classes, 'pets' (--class-a prompt 3) and 'sky' (--class-b "
        "prompt 2): no probe can tell a prompt from itself (keep it in one class only)")
    assert model.loads == 0
    with pytest.raises(lazarus.LazarusError, match="in both classes"):
        merge_classes(["a", "b"], ["b", "c"], "A", "B")


def test_cli_refusals_are_one_line(capsys):
    code, out, err = run(capsys, "introspect", "neurons", "-m", "lazarus:demo", "-l", "0",
                         "-p", "cat 1|dog 2|cat 1|sun 3", "--labels", "x|y|y|x",
                         "--auto-discover")
    assert (code, out) == (2, "")
    assert err == ("lazarus: error: prompt 'cat 1' is given under two labels, 'x' (prompt 1) "
                   "and 'y' (prompt 3): a prompt is one sample with one label (fix --labels, "
                   "or remove one of the copies)\n")
    code, out, err = run(capsys, "introspect", "probe", "-m", "lazarus:demo", "--class-a",
                         "cat 1|dog 2", "--class-b", "sun 3|cat 1")
    assert (code, out) == (2, "")
    assert err == ("lazarus: error: prompt 'cat 1' is in both classes, 'class_a' (--class-a "
                   "prompt 1) and 'class_b' (--class-b prompt 2): no probe can tell a prompt "
                   "from itself (keep it in one class only)\n")


# --- copies change nothing but the note ----------------------------------------------------


def test_neurons_with_labels_count_each_prompt_once(demo):
    prompts, labels = POOL[:8], ["x", "y"] * 4
    once = demo.neurons(prompts, layers=1, labels=labels, auto_discover=True, top_k=3)
    demo.notes.clear()
    twice = demo.neurons(prompts + prompts[::-1], layers=1, labels=labels + labels[::-1],
                         auto_discover=True, top_k=3)
    assert twice.prompts == tuple(prompts)
    assert twice.merged_copies == 8
    assert twice.to_json()["merged_copies"] == 8
    assert twice.layers[0].discovery == once.layers[0].discovery
    assert twice.layers[0].label_summaries == once.layers[0].label_summaries
    assert [n for n in demo.notes if "merged" in n] == [
        "16 prompts given, 8 distinct: merged 8 copies ('cat 0' ×2, 'dog 1' ×2, 'sun 2' ×2, "
        "5 more prompts), since a prompt is one sample however often it is listed"]


def test_a_label_left_with_one_distinct_prompt_cannot_be_discovered(demo):
    with pytest.raises(lazarus.LazarusError, match="needs more prompts than labels"):
        demo.neurons(["cat 0", "cat 0", "dog 1", "dog 1"], layers=1, labels=["x", "x", "y", "y"],
                     auto_discover=True)


def test_probe_counts_each_prompt_once(demo):
    a, b = POOL[:5], POOL[5:10]
    once = demo.probe(a, b, layers="0,1", permutations=50)
    twice = demo.probe(a + a[::-1], b + b, layers="0,1", permutations=50)
    assert (twice.report.count_a, twice.report.count_b) == (5, 5)
    assert twice.report.layers == once.report.layers
    assert twice.report.exceeding == once.report.exceeding
    assert twice.training_prompts == (*a, *b)
    assert twice.to_json()["merged_copies"] == 10


def test_the_issue_example_cannot_reach_significance(capsys):
    """3 prompts per class, each given twice: 3 + 3 distinct prompts split in only 10 ways."""
    a, b = "cat 1|dog 2|sun 3", "moon 4|tree 5|fish 6"
    code, out, err = run(capsys, "introspect", "probe", "-m", "lazarus:demo", "--class-a",
                         f"{a}|{a}", "--class-b", f"{b}|{b}")
    assert code == 3
    assert ("over 3 stratified folds of 6 distinct prompts (6 copies merged): 3 class_a, 3 "
            "class_b.") in " ".join(out.split())
    assert "smallest possible p = 0.1" in err
    assert ("lazarus: 12 training prompts given, 6 distinct: merged 6 copies ('cat 1' ×2, "
            "'dog 2' ×2, 'sun 3' ×2, 3 more prompts), since a prompt is one sample however "
            "often it is listed\n") in err


def test_cli_neurons_says_what_it_merged(capsys, tmp_path):
    output = tmp_path / "neurons.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", "lazarus:demo", "-l", "1",
                         "-p", "cat 1|dog 2|sun 3|moon 4|sun 3|cat 1", "--labels",
                         "x|x|y|y|y|x", "-n", "2,5", "-o", str(output))
    assert code == 0, err
    assert out.splitlines()[0] == ("4 distinct prompts (2 copies merged): a repeated prompt "
                                   "counts once.")
    assert ("lazarus: 6 prompts given, 4 distinct: merged 2 copies ('cat 1' ×2, 'sun 3' ×2), "
            "since a prompt is one sample however often it is listed\n") in err
    document = json.loads(output.read_text())
    assert (document["prompts"], document["merged_copies"]) == (
        ["cat 1", "dog 2", "sun 3", "moon 4"], 2)


# --- test prompts --------------------------------------------------------------------------


def test_a_test_prompt_that_is_a_training_prompt_is_not_held_out(demo, capsys, tmp_path):
    a, b = POOL[:5], POOL[5:10]
    fresh = POOL[20]
    result = demo.probe(a, b, layers=1, permutations=20, test=[a[0], fresh, fresh, b[1]],
                        test_labels=["class_a", "class_b", "class_b", "class_b"])
    test = result.test
    assert result.test_prompts == (a[0], fresh, b[1])
    assert test.in_sample == (True, False, True)
    assert test.held_out == 1
    right = int(test.predictions[1].label == "class_b")
    assert (test.correct, test.accuracy) == (right, float(right))
    document = result.to_json()
    assert [p["in_sample"] for p in document["predictions"]] == [True, False, True]
    assert (document["test_in_sample"], document["test_merged_copies"]) == (2, 1)

    code, out, _ = run(capsys, "introspect", "probe", "-m", "lazarus:demo", "-l", "1",
                       "--permutations", "20", "--class-a", "|".join(a), "--class-b",
                       "|".join(b), "--test", f"{a[0]}|{fresh}|{fresh}|{b[1]}",
                       "--test-labels", "class_a|class_b|class_b|class_b")
    text = " ".join(out.split())
    assert f"Test accuracy (held out): {right} of 1 ({100 * right:.1f}%); 2 in-sample not " \
           "counted." in text
    assert "In-sample: 2 of these 3 test prompts are training prompts" in text
    rows = [line for line in out.splitlines() if line.endswith("in-sample")]
    assert [row.split("|")[0].strip() for row in rows] == [a[0], b[1]]


# --- position "all": tokens are not independent samples ------------------------------------


def test_token_samples_get_no_correlation_interval(demo):
    result = demo.neurons(["the cat sat", "a dog ran far", "sun", "moon over sea"], layers=1,
                          position="all", neurons=[2, 5], labels=["x", "x", "y", "y"])
    effects = [e for s in result.layers[0].label_summaries for e in s.effects]
    assert [e.r_ci for e in effects] == [None] * 4
    assert all(e.r is not None for e in effects)
    assert result.to_json()["merged_copies"] == 0


# --- under the null, with every prompt listed twice ----------------------------------------


def test_probe_with_every_prompt_twice_rejects_at_most_alpha(demo):
    rng = np.random.default_rng(20)
    demo.capture(POOL, layers="1,3")
    trials, rejected = 100, 0
    for _ in range(trials):
        chosen = [str(p) for p in rng.choice(POOL, 10, replace=False)]
        a, b = chosen[:5], chosen[5:]
        result = demo.probe(a + a, b + b, layers="1,3", permutations=100, alpha=ALPHA)
        rejected += result.significant
    print(f"probe, 5 + 5 prompts each given twice: rejected {rejected} of {trials}")
    assert rejected / trials <= upper_bound(trials)


def test_auto_discover_with_every_prompt_twice_rejects_at_most_alpha(demo):
    rng = np.random.default_rng(21)
    demo.capture(POOL, layers=1)
    trials, rejected = 300, 0
    labels = ["x"] * 5 + ["y"] * 5
    for _ in range(trials):
        chosen = [str(p) for p in rng.choice(POOL, 10, replace=False)]
        result = demo.neurons(chosen + chosen, layers=1, labels=labels + labels,
                              auto_discover=True, permutations=200)
        rejected += result.layers[0].discovery.survivors > 0
    print(f"auto-discover, 5 + 5 prompts each given twice: rejected {rejected} of {trials}")
    assert rejected / trials <= upper_bound(trials)


def test_held_out_accuracy_counts_only_prompts_the_fit_never_saw():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(8, 6))
    rows[:4, 0] += 5.0  # class A high on neuron 0
    report = probe_layers({0: rows}, 4, permutations=0)
    test_rows = np.stack([rows[0], rows[5], rows[1] * 0 + [5, 0, 0, 0, 0, 0]])
    score = score_test(report.fit, test_rows, ["A", "A", "A"], in_sample=[True, True, False])
    assert [p.label for p in score.predictions] == ["A", "B", "A"]
    assert (score.held_out, score.correct, score.accuracy) == (1, 1, 1.0)
    text = " ".join(render_predictions(["a", "f", "new"], score).split())
    assert "Test accuracy (held out): 1 of 1 (100.0%); 2 in-sample not counted." in text
    none = score_test(report.fit, test_rows[:2], ["A", "B"], in_sample=[True, True])
    assert (none.held_out, none.accuracy) == (0, None)
    text = " ".join(render_predictions(["a", "f"], none).split())
    assert "Test accuracy (held out): none; every test prompt is a training prompt." in text


# --- ablate: its reference is distinct prompts -------------------------------------------


def test_ablate_resample_never_draws_a_copy_of_the_prompt_itself(demo):
    """A copy of a prompt has the prompt's own values: drawn as its reference, the ablation
    would change nothing. Each prompt draws among the other distinct texts."""
    prompts = ["cat 0", "cat 0", "dog 1", "cat 0", "sun 2"]
    demo.notes.clear()
    for seed in range(8):
        result = demo.ablate(prompts, 1, component="mlp", method="resample", controls=0,
                             seed=seed, max_tokens=1)
        assert result.reference == ("cat 0", "dog 1", "sun 2")
        drawn = [result.reference[j] for j in result.resampled_from]
        assert all(text != prompt for prompt, text in zip(prompts, drawn, strict=True))
    assert demo.notes[0] == ("5 reference prompts given, 3 distinct: merged 2 copies ('cat 0' "
                             "×3), since a prompt is one sample however often it is listed")


def test_ablate_mean_weighs_each_distinct_reference_prompt_once(demo):
    prompts = ["cat 0", "cat 0", "cat 0", "dog 1"]
    own = demo.ablate(prompts, 1, component="mlp", method="mean", controls=0, max_tokens=1)
    given = demo.ablate(prompts, 1, component="mlp", method="mean", controls=0, max_tokens=1,
                        reference=["dog 1", "cat 0"])
    assert own.reference == ("cat 0", "dog 1")
    assert own.conditions[0].effect == given.conditions[0].effect
    # a reference given with copies is merged the same way
    copies = demo.ablate(prompts, 1, component="mlp", method="mean", controls=0, max_tokens=1,
                         reference=["dog 1", "cat 0", "dog 1", "dog 1"])
    assert copies.conditions[0].effect == given.conditions[0].effect


def test_ablate_resample_of_one_distinct_prompt_is_refused(demo):
    with pytest.raises(lazarus.LazarusError, match="give at least two distinct prompts"):
        demo.ablate(["cat 0", "cat 0"], 1, component="mlp", method="resample", controls=0)


def test_a_probe_class_of_copies_is_refused_as_one_distinct_prompt(demo, capsys):
    message = ("class 'class_b' has 1 distinct prompt; a probe needs at least 2 per class to "
               "cross-validate, and copies of a prompt count once (add other prompts to "
               "--class-b, e.g. 'a|b|c')")
    with pytest.raises(lazarus.LazarusError) as raised:
        demo.probe(["cat 0", "sun 2"], ["dog 1", "dog 1", "dog 1"], layers=0, permutations=10)
    assert str(raised.value) == message
    code, out, err = run(capsys, "introspect", "probe", "-m", "/nonexistent/model", "--class-a",
                         "cat 0|sun 2", "--class-b", "dog 1|dog 1")
    assert (code, out, err) == (2, "", f"lazarus: error: {message}\n")
