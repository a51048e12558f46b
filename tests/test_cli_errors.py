"""Bad input: one line on stderr naming problem and fix, exit 2, no traceback, no output file."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from lazarus.cli.main import main

MISSING_MODEL = "/nonexistent/model"  # were it loaded, the error would name the model instead


def run_failing(capsys, tmp_path: Path, *argv: str) -> str:
    output = tmp_path / "never.json"
    code = main([str(a) for a in argv] + ["-o", str(output)] if "-o" not in argv
                else [str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".never")] == []
    return lines[0]


def neurons(model: str | Path, *extra: str) -> list[str]:
    return ["introspect", "neurons", "-m", str(model), *extra]


@pytest.fixture
def direction_files(tmp_path):
    folder = tmp_path / "directions"
    folder.mkdir()
    files = {}
    files["not_npz"] = folder / "notes.npz"
    files["not_npz"].write_text("just text")
    files["no_direction"] = folder / "no_direction.npz"
    np.savez(files["no_direction"], weights=np.ones(64))
    files["wrong_length"] = folder / "short.npz"
    np.savez(files["wrong_length"], direction=np.ones(10))
    files["non_finite"] = folder / "nan.npz"
    np.savez(files["non_finite"], direction=np.array([1.0, np.nan] + [0.0] * 62))
    files["pickled"] = folder / "pickled.npz"
    np.savez(files["pickled"], direction=np.array([{"a": 1}, None], dtype=object))
    files["raw_pickle"] = folder / "raw.npz"
    files["raw_pickle"].write_bytes(pickle.dumps({"direction": [1.0] * 64}))
    return files


# (arguments after the command, words the message must contain). The model is missing on
# purpose for the cheap checks: they must fire before any model is looked at.
CHEAP_CASES = {
    "label count": (["-l", "0", "-p", "a|b", "--labels", "x", "-n", "1"],
                    ["got 1 label for 2 prompts"]),
    "empty prompt list": (["-l", "0", "-p", "", "-n", "1"], ["no prompts"]),
    "empty prompt": (["-l", "0", "-p", "a||b", "-n", "1"], ["prompt 2 of 3", "empty"]),
    "missing @file": (["-l", "0", "-p", "@/nonexistent/prompts.txt", "-n", "1"], ["not found"]),
    "negative neuron": (["-l", "0", "-p", "a", "-n", "5,-3"], ["negative"]),
    "bad neuron id": (["-l", "0", "-p", "a", "-n", "5,x"], ["'x'", "whole number"]),
    "top-k below 1": (["-l", "0", "-p", "a", "--top-k", "0"], ["--top-k", "at least 1"]),
    "both neuron choices": (["-l", "0", "-p", "a", "-n", "1", "--from-direction", "d.npz"],
                            ["choose one"]),
    "missing direction": (["-l", "0", "-p", "a", "--from-direction", "/nonexistent/d.npz"],
                          ["direction file not found"]),
    "direction folder": (["-l", "0", "-p", "a", "--from-direction", "/"],
                         ["/ is a folder, not a direction file"]),
}


@pytest.mark.parametrize("case", CHEAP_CASES)
def test_cheap_checks_fire_before_the_model_loads(capsys, tmp_path, case):
    arguments, words = CHEAP_CASES[case]
    message = run_failing(capsys, tmp_path, *neurons(MISSING_MODEL, *arguments))
    for word in words:
        assert word in message


@pytest.mark.parametrize("kind,words", [
    ("not_npz", ["not an .npz"]),
    ("raw_pickle", ["not an .npz"]),
    ("no_direction", ["no 'direction'"]),
    ("non_finite", ["NaN"]),
    ("pickled", ["pickled"]),
])
def test_bad_direction_files(capsys, tmp_path, direction_files, kind, words):
    message = run_failing(capsys, tmp_path, *neurons(MISSING_MODEL, "-l", "0", "-p", "a",
                                                     "--from-direction", direction_files[kind]))
    for word in words:
        assert word in message


def test_direction_of_the_wrong_length(capsys, tmp_path, llama_dir, direction_files):
    message = run_failing(capsys, tmp_path, *neurons(llama_dir, "-l", "0", "-p", "a",
                                                     "--from-direction",
                                                     direction_files["wrong_length"]))
    assert "10 weights" in message
    assert "the resid_post site has 64 neurons" in message


def test_unwritable_output_is_caught_before_the_model(capsys, tmp_path):
    message = run_failing(capsys, tmp_path, *neurons(MISSING_MODEL, "-l", "0", "-p", "a",
                                                     "-n", "1", "-o", "/nonexistent/dir/o.json"))
    assert "does not exist" in message
    message = run_failing(capsys, tmp_path, *neurons(MISSING_MODEL, "-l", "0", "-p", "a",
                                                     "-n", "1", "-o", str(tmp_path)))
    assert "is a folder" in message


@pytest.mark.parametrize("under", ["out.json", "sub/out.json"])
def test_output_under_a_file_says_it_is_a_file(capsys, tmp_path, under):
    (tmp_path / "wfile").write_text("a file")
    output = tmp_path / "wfile" / under
    message = run_failing(capsys, tmp_path, *neurons(MISSING_MODEL, "-l", "0", "-p", "a",
                                                     "-n", "1", "-o", output))
    assert message == (f"lazarus: error: cannot write {output}: {tmp_path / 'wfile'} is a "
                       "file, not a folder (give a path inside a folder)")


def test_unknown_model_path(capsys, tmp_path):
    message = run_failing(capsys, tmp_path, *neurons(MISSING_MODEL, "-l", "0", "-p", "a",
                                                     "-n", "1"))
    assert "model not found" in message
    assert MISSING_MODEL in message


def test_unknown_hub_id_offline(capsys, tmp_path):
    message = run_failing(capsys, tmp_path, *neurons("nobody-at-all/no-such-model", "-l", "0",
                                                     "-p", "a", "-n", "1"))
    assert "model not found" in message
    assert "nobody-at-all/no-such-model" in message


def test_layer_out_of_range_names_the_valid_range(capsys, tmp_path, llama_dir):
    message = run_failing(capsys, tmp_path, *neurons(llama_dir, "-l", "4", "-p", "a", "-n", "1"))
    assert "layer 4 is out of range" in message
    assert "0 to 3" in message
    message = run_failing(capsys, tmp_path, *neurons(llama_dir, "-l", "-5", "-p", "a", "-n", "1"))
    assert "layer -5 is out of range" in message


def test_neuron_out_of_range_names_the_hidden_size(capsys, tmp_path, llama_dir):
    message = run_failing(capsys, tmp_path, *neurons(llama_dir, "-l", "0", "-p", "a",
                                                     "-n", "3,64"))
    assert "neuron 64" in message
    assert "the resid_post site has 64 neurons at layer 0" in message


def test_missing_required_option_is_one_line(capsys, tmp_path):
    message = run_failing(capsys, tmp_path, "introspect", "neurons", "-l", "0", "-p", "a")
    assert "-m/--model" in message
    assert "--help" in message


@pytest.mark.parametrize("arguments,words", [
    (["-n", ""], ["''", "whole number"]),
    (["-n", "1", "--labels", ""], ["no labels"]),
    (["--from-direction", ""], ["path is empty"]),
    (["-n", "1", "-o", ""], ["output path is empty"]),
])
def test_empty_option_values_are_errors(capsys, arguments, words):
    code = main(neurons(MISSING_MODEL, "-l", "0", "-p", "a", *arguments))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err


def test_config_that_is_not_an_object(capsys, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("[1, 2]")
    message = run_failing(capsys, tmp_path, *neurons(folder, "-l", "0", "-p", "a", "-n", "1"))
    assert "not a JSON object" in message


def test_prompt_longer_than_the_context(capsys, tmp_path, tiny_model_dirs):
    too_long = "y" * 300  # the tiny GPT-2 has 256 positions
    message = run_failing(capsys, tmp_path, *neurons(tiny_model_dirs["gpt2"], "-l", "0",
                                                     "-p", f"ok|{too_long}", "-n", "1"))
    assert "prompt 2 of 2 has 300 tokens" in message
    assert "at most 256" in message


def config_only(model_dir: Path, folder: Path) -> Path:
    """The model's config and tokenizer without its weights: a run that reads them fails."""
    import shutil

    folder.mkdir()
    for entry in model_dir.iterdir():
        if entry.suffix != ".safetensors":
            shutil.copy(entry, folder / entry.name)
    return folder


# An mlp_post id no layer has, refused from config.json before any weight is read.
WIDE_NEURON = {
    "neurons": ["-l", "0", "-p", "ab", "-n", "3,5000"],
    "ablate": ["-l", "0", "-p", "ab", "-n", "3,5000"],
    "steer": ["-l", "0", "-p", "ab", "-n", "3:1,5000:2"],
    "examples": ["-l", "0", "--corpus", "CORPUS", "-n", "3,5000", "--work-dir", "WORK"],
}


@pytest.mark.parametrize("command", sorted(WIDE_NEURON))
def test_an_mlp_neuron_wider_than_the_config_says_is_refused_before_the_weights(
        capsys, tmp_path, tiny_model_dirs, command):
    model = config_only(tiny_model_dirs["llama"], tmp_path / "llama")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("I like to read books.\n")
    argv = [{"CORPUS": str(corpus), "WORK": str(tmp_path / "work")}.get(a, a)
            for a in WIDE_NEURON[command]]
    message = run_failing(capsys, tmp_path, "introspect", command, "-m", model, *argv,
                          "--site", "mlp_post")
    assert message == ("lazarus: error: neuron 5000 is out of range: the mlp_post site has at "
                       "most 128 neurons at any layer of this model (config.json: "
                       "intermediate_size = 128; use ids 0 to 127)")


def test_an_moe_neuron_is_checked_against_experts_times_units(capsys, tmp_path, tiny_model_dirs):
    """gpt-oss: 4 experts x 128 units each, so mlp_post ids run to 511."""
    model = config_only(tiny_model_dirs["gpt_oss"], tmp_path / "gpt_oss")
    message = run_failing(capsys, tmp_path, *neurons(model, "-l", "1", "-p", "ab", "--site",
                                                     "mlp_post", "-n", "511,512"))
    assert message == ("lazarus: error: neuron 512 is out of range: the mlp_post site has at "
                       "most 512 neurons at any layer of this model (config.json: 4 experts x "
                       "128 units; use ids 0 to 511)")
    code = main(neurons(tiny_model_dirs["gpt_oss"], "-l", "1", "-p", "ab", "--site", "mlp_post",
                        "-n", "511"))
    assert code == 0, capsys.readouterr().err


def test_a_residual_neuron_wider_than_the_hidden_size_is_refused_before_the_weights(
        capsys, tmp_path, tiny_model_dirs):
    model = config_only(tiny_model_dirs["llama"], tmp_path / "llama")
    message = run_failing(capsys, tmp_path, "introspect", "steer", "-m", model, "-l", "2", "-p",
                          "ab", "-n", "3:1,64:2")
    assert message == ("lazarus: error: neuron 64 is out of range: the resid_post site has 64 "
                       "neurons at layer 2 (use ids 0 to 63)")


THREE = "\u0663"  # an Arabic-Indic three: int() and float() read it as 3
OTHER_DIGITS = {
    "layer": (["-l", THREE, "-n", "1"], f"layer '{THREE}' is not a layer number"),
    "layer range": (["-l", f"0-{THREE}", "-n", "1"], f"layer '0-{THREE}' is not"),
    "top-k": (["-l", "0", "--top-k", THREE], f"argument --top-k: '{THREE}' is not a whole"),
    "position": (["-l", "0", "-n", "1", "--position", THREE], f"position '{THREE}' is not"),
    "permutations": (["-l", "0", "-n", "1", "--labels", "x", "--permutations", THREE],
                     f"argument --permutations: '{THREE}' is not a whole"),
}


@pytest.mark.parametrize("case", OTHER_DIGITS)
def test_numbers_in_digits_other_than_ascii_are_refused(capsys, tmp_path, llama_dir, case):
    arguments, words = OTHER_DIGITS[case]
    message = run_failing(capsys, tmp_path, *neurons(llama_dir, "-p", "a", *arguments))
    assert words in message


def test_steer_values_in_digits_other_than_ascii_are_refused(capsys, tmp_path, llama_dir):
    message = run_failing(capsys, tmp_path, "introspect", "steer", "-m", llama_dir, "-l", "0",
                          "-p", "ab", "-n", f"3:{THREE}")
    assert message == (f"lazarus: error: --neurons: '{THREE}' is not a number (give numbers, "
                       "e.g. --neurons 808:2.5,1190:-1)")


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_a_tokenizer_that_fails_to_load_is_blamed_not_the_weights(capsys, tmp_path, llama_dir,
                                                                   name):
    model = tmp_path / "model"
    shutil.copytree(llama_dir, model)
    (model / name).write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    message = run_failing(capsys, tmp_path, *neurons(model, "-l", "0", "-p", "a", "-n", "1",
                                                     "--no-cache"))
    assert message.startswith(f"lazarus: error: cannot load {model}: ")
    assert ("check its tokenizer files (tokenizer.json, tokenizer_config.json); if they are "
            "intact") in message


ZERO_DIRECTION_CASES = {  # what each command says an all-zero direction leaves it without
    "neurons": (["neurons", "-p", "a", "-l", "0", "--from-direction"], "so it ranks no neuron ("),
    "ablate": (["ablate", "-p", "a", "-l", "0", "--from-direction"],
               "so it ranks no neuron to ablate ("),
    "steer": (["steer", "-p", "a", "-l", "0", "--direction"], "so there is nothing to add ("),
    "examples": (["examples", "--corpus", "CORPUS", "-l", "0", "--from-direction"],
                 "so it ranks no neuron ("),
    "examples --projection": (["examples", "--corpus", "CORPUS", "-l", "0", "--projection",
                               "--from-direction"], "so its projection is 0 on every token ("),
    "card": (["card", "-l", "0", "--from-direction"], "so its projection is 0 on every token ("),
}


@pytest.mark.parametrize("case", ZERO_DIRECTION_CASES)
def test_an_all_zero_direction_is_refused_in_the_commands_own_words(capsys, tmp_path,
                                                                     llama_dir, case):
    zero = tmp_path / "zero.npz"
    np.savez(zero, direction=np.zeros(64, np.float32))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the fox ran over the hill\n")
    arguments, words = ZERO_DIRECTION_CASES[case]
    arguments = [str(corpus) if a == "CORPUS" else a for a in arguments]
    message = run_failing(capsys, tmp_path, "introspect", arguments[0], "-m", str(llama_dir),
                          *arguments[1:], str(zero))
    assert message == (f"lazarus: error: {zero}: 'direction' is all zeros, {words}re-run the "
                       "probe that made it)")


def test_steer_refuses_an_all_zero_mean_difference(capsys, tmp_path, llama_dir):
    message = run_failing(capsys, tmp_path, "introspect", "steer", "-m", str(llama_dir), "-p",
                          "a", "-l", "0", "--positive", "hello|ab", "--negative", "ab|hello")
    assert message == ("lazarus: error: mean(--positive) - mean(--negative) is all zeros, so "
                       "there is nothing to add")


def test_output_where_no_file_can_be_made_is_caught_before_the_model(capsys, tmp_path):
    """sysfs refuses new files even to root, whom os.access lets through: the output is tried
    before the model loads (here the model does not exist, so a later check would say that)."""
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs here")
    message = run_failing(capsys, tmp_path, *neurons(MISSING_MODEL, "-l", "0", "-p", "a",
                                                     "-n", "1", "-o", "/sys/kernel/o.json"))
    assert message.startswith("lazarus: error: cannot write /sys/kernel/o.json")
    assert not Path("/sys/kernel/o.json").exists()
