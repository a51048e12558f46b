"""`lazarus introspect probe` through the real entry point, and the loop back into `neurons`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import PLANTED_A, PLANTED_B, PLANTED_DIM, build_planted

from lazarus.cli.main import main

# Words of varied length whose last character decides the class; the rest is shared noise.
STEMS = ["the cat ", "a long stem ", "hi ", "one two three ", "x", "what is ", "7*8=", "so "]


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    return build_planted(tmp_path_factory.mktemp("planted") / "llama")


def class_prompts(endings: str) -> list[str]:
    return [stem + ending for stem, ending in zip(STEMS, endings, strict=True)]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("method", ["logistic", "difference"])
def test_planted_feature_is_found(capsys, tmp_path, planted_dir, method):
    saved = tmp_path / "planted.npz"
    output = tmp_path / "probe.json"
    code, out, err = run(capsys, "introspect", "probe", "-m", planted_dir,
                         "--class-a", "|".join(class_prompts(PLANTED_A)), "--label-a", "first",
                         "--class-b", "|".join(class_prompts(PLANTED_B)), "--label-b", "last",
                         "--method", method, "--save-direction", saved, "-o", output)
    assert code == 0, err
    assert "PROBE ACCURACY BY LAYER" in out
    document = json.loads(output.read_text())
    for row in document["layers"]:  # the signal survives every block of this model
        assert row["accuracy"] == 1.0, row
        assert 0.2 <= row["baseline"] <= 0.8, row  # shuffled labels: near chance
    with np.load(saved, allow_pickle=False) as archive:
        direction = archive["direction"]
        importance = archive["importance"]
        assert int(np.argmax(np.abs(direction))) == PLANTED_DIM
        assert direction[PLANTED_DIM] > 0  # positive means class A
        assert int(np.argmax(importance)) == PLANTED_DIM
        assert np.linalg.norm(direction) == pytest.approx(1.0, abs=1e-5)
        assert str(archive["method"]) == method
        assert int(archive["layer"]) == document["best_layer"]
        assert float(archive["accuracy"]) == 1.0
    assert document["top_neurons"][0]["neuron"] == PLANTED_DIM


def test_probe_then_neurons_from_direction(capsys, tmp_path, planted_dir):
    saved = tmp_path / "difficulty.npz"
    code, out, err = run(capsys, "introspect", "probe", "-m", planted_dir,
                         "--class-a", "47*47a|67*83b|53*59c|38*76d|91*23e", "--label-a", "hard",
                         "--class-b", "2+2=s|5+5=t|3*3=u|1+2=v|4+4=w", "--label-b", "easy",
                         "--layer", "2", "--save-direction", saved, "-t", "99*99d|1+1=z")
    assert code == 0, err
    assert "TEST PREDICTIONS" in out
    with np.load(saved, allow_pickle=False) as archive:
        importance = archive["importance"]
    expected_top = [int(i) for i in np.argsort(-importance, kind="stable")[:6]]

    output = tmp_path / "neurons.json"
    code, out, err = run(capsys, "introspect", "neurons", "-m", planted_dir, "-l", "2",
                         "--prompts", "2+2=s|10*10=t|45*45=a|47*47=b|67*83=c|97*89=d",
                         "--from-direction", saved, "--top-k", "6",
                         "--labels", "trivial|trivial|medium|hard|hard|hard", "-o", output)
    assert code == 0, err
    document = json.loads(output.read_text())
    assert document["neurons"] == expected_top
    assert list(document["neuron_weights"]) == [str(n) for n in expected_top]
    # the planted dimension is -8 on both trivial prompts and +8 on the other four: a mark
    # needs an interval that excludes 0, which 2 trivial prompts against 4 give, while 3 hard
    # prompts against a rest that holds the (hard-looking) medium one do not
    trivial = out.split("LABEL CORRELATION")[1].split("trivial (2 prompts):")[1].split("\n\n")[0]
    planted = next(line for line in trivial.split("\n") if f"Neuron   {PLANTED_DIM}:" in line)
    assert planted.endswith("← fires low for trivial")
    assert "fires high for hard" not in out
    assert "warning" not in err


def test_three_prompts_per_class_run_but_cannot_be_significant_and_one_fails(capsys, tmp_path,
                                                                             planted_dir):
    # 3 + 3 prompts split into two classes in only C(6, 3) / 2 = 10 ways: p >= 0.1
    code, out, err = run(capsys, "introspect", "probe", "-m", planted_dir,
                         "--class-a", "abc|dea|fgb", "--class-b", "stu|vwx|yzs")
    assert code == 3, err
    assert "PROBE ACCURACY BY LAYER" in out
    assert "smallest possible p = 0.1" in err
    output = tmp_path / "never.npz"
    code, out, err = run(capsys, "introspect", "probe", "-m", planted_dir,
                         "--class-a", "abc", "--class-b", "stu", "--save-direction", output)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "at least 2" in err
    assert not output.exists()


@pytest.mark.parametrize("arguments,words", [
    (["--class-a", "a|b", "--class-b", "c"], ["class_b", "at least 2"]),
    (["--class-a", "", "--class-b", "c|d"], ["no prompts"]),
    (["--class-a", "a|b", "--class-b", "c|d", "--method", "svm"], ["--method", "svm"]),
    (["--class-a", "a|b", "--class-b", "c|d", "-o", "/nonexistent/x.json"], ["does not exist"]),
    (["--class-a", "a|b", "--class-b", "c|d", "--save-direction", "/nonexistent/d.npz"],
     ["does not exist"]),
    (["--class-a", "a|b", "--class-b", "c|d", "--label-a", "x", "--label-b", "x"],
     ["different names"]),
])
def test_probe_bad_input_before_the_model_loads(capsys, arguments, words):
    code, out, err = run(capsys, "introspect", "probe", "-m", "/nonexistent/model", *arguments)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err


def test_probe_layer_out_of_range(capsys, planted_dir):
    code, _, err = run(capsys, "introspect", "probe", "-m", planted_dir, "--class-a", "a|b",
                       "--class-b", "s|t", "--layer", "9")
    assert code == 2
    assert "0 to 3" in err


@pytest.mark.parametrize("class_a,class_b", [
    ("a|b", "a|b"),  # the same prompts in both classes: nothing to separate
    ("a|b|x", "a|c"),  # some shared
    ("a|a", "s|s"),  # no spread inside either class
])
def test_degenerate_classes_never_crash(capsys, planted_dir, class_a, class_b):
    for layer in ("0", "2"):
        code, out, err = run(capsys, "introspect", "probe", "-m", planted_dir,
                             "--class-a", class_a, "--class-b", class_b, "--layer", layer)
        assert "Traceback" not in err
        assert code in (0, 2, 3), err
        if code == 2:
            assert len(err.strip().splitlines()) <= 2  # a warning, then the error
        if set(class_a.split("|")) & set(class_b.split("|")):
            assert "in both classes" in err


def test_two_against_two_finds_nothing_writes_nothing_and_exits_3(capsys, tmp_path):
    saved = tmp_path / "never.npz"
    output = tmp_path / "probe.json"
    code, out, err = run(capsys, "introspect", "probe", "-m", "lazarus:demo",
                         "--class-a", "a|b", "--class-b", "c|d", "--save-direction", saved,
                         "-o", output)
    assert code == 3, err
    assert not saved.exists()
    assert "← best" not in out
    why = [line for line in out.splitlines() if line.startswith("No layer beats chance")]
    assert len(why) == 1
    assert f"{saved} was not written (add --force-save" in err
    document = json.loads(output.read_text())
    assert document["best_layer"] is None
    assert document["significant"] is False
    assert document["smallest_p"] == pytest.approx(1 / 3)

    code, out, err = run(capsys, "introspect", "probe", "-m", "lazarus:demo",
                         "--class-a", "a|b", "--class-b", "c|d", "--save-direction", saved,
                         "--force-save")
    assert code == 3, err
    assert saved.exists()
    assert "forced: no layer beats chance" in err


def test_exit_status_3_is_documented(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "  3    ran fine, found nothing" in out


def test_test_labels_give_a_held_out_accuracy(capsys, tmp_path, planted_dir):
    output = tmp_path / "probe.json"
    tests = ["new " + PLANTED_A[0], "other " + PLANTED_B[0], "more " + PLANTED_A[1]]
    code, out, err = run(capsys, "introspect", "probe", "-m", planted_dir,
                         "--class-a", "|".join(class_prompts(PLANTED_A)), "--label-a", "first",
                         "--class-b", "|".join(class_prompts(PLANTED_B)), "--label-b", "last",
                         "-t", "|".join(tests), "--test-labels", "first|last|first",
                         "--permutations", "50", "--alpha", "0.1", "-o", output)
    assert code == 0, err
    assert "Test accuracy (held out): 3 of 3 (100.0%)." in out
    document = json.loads(output.read_text())
    assert document["permutations"] == 50
    assert document["alpha"] == 0.1
    assert document["p_value"] == pytest.approx(1 / 51)
    assert document["test_accuracy"] == 1.0
    assert [row["true_label"] for row in document["predictions"]] == ["first", "last", "first"]
    assert [row["label"] for row in document["predictions"]] == ["first", "last", "first"]
    projections = [row["projection"] for row in document["predictions"]]
    assert projections[0] > 0
    assert projections[1] < 0
    assert len(document["training_projections"]) == 16
    assert document["training_projections"][0]["in_sample"] is True
    assert document["training_projections"][0]["prompt"] == class_prompts(PLANTED_A)[0]


@pytest.mark.parametrize("arguments,words", [
    (["-t", "x|y", "--test-labels", "a"], ["got 1 label in --test-labels for 2 test prompts"]),
    (["-t", "x|y", "--test-labels", "a|z"], ["'z'", "neither class"]),
    (["--test-labels", "a|b"], ["needs --test"]),
    (["--permutations", "-1"], ["--permutations"]),
    (["--alpha", "2"], ["--alpha"]),
])
def test_probe_statistics_options_are_checked_before_the_model_loads(capsys, arguments, words):
    code, out, err = run(capsys, "introspect", "probe", "-m", "/nonexistent/model",
                         "--class-a", "p|q", "--label-a", "a", "--class-b", "r|s",
                         "--label-b", "b", *arguments)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err
