"""A count of one takes the singular, in reports and messages: "1 token", never "1 tokens".

Through the real entry point on the tiny models, with every count that can be 1 set to 1.
"""

from __future__ import annotations

import pytest

from lazarus.cli.main import main
from lazarus.text import agree, plural


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("count", "expected"), [(0, "0 tokens"), (1, "1 token"),
                                                 (2, "2 tokens")])
def test_plural(count, expected):
    assert plural(count, "token") == expected


def test_plural_of_a_phrase_and_an_irregular_noun():
    assert plural(1, "reference prompt") == "1 reference prompt"
    assert plural(3, "reference prompt") == "3 reference prompts"
    assert plural(2, "matrix", "matrices") == "2 matrices"
    assert plural(1, "matrix", "matrices") == "1 matrix"
    assert (agree(1, "was", "were"), agree(2, "was", "were")) == ("was", "were")


def test_ablate_report_of_one_neuron_one_prompt_one_draw(capsys, llama_dir):
    code, out, err = run_cli(capsys, "introspect", "ablate", "-m", llama_dir, "-l", "1",
                             "-p", "ab", "-n", "5", "--method", "mean", "--controls", "1",
                             "--max-tokens", "1")
    assert code == 0, err
    assert "ABLATION: 1 neuron of resid_post [5] (--neurons)" in out
    assert "set to their mean over every token of 1 reference prompt)" in out
    assert "Control: 1 draw of 1 random neuron at the same layer and site" in out
    assert "1 neurons" not in out
    assert "1 draws" not in out


def test_steer_report_of_one_token_and_one_prompt_a_side(capsys, llama_dir):
    code, out, err = run_cli(capsys, "introspect", "steer", "-m", llama_dir, "-l", "1",
                             "-p", "ab", "--positive", "abc", "--negative", "xyz",
                             "--max-tokens", "1")
    assert code == 0, err
    assert "Continuations: 1 token, greedy." in out
    assert "Vector: mean of 1 --positive prompt minus mean of 1 --negative prompt, at the " \
           "last token" in out


def test_a_prompt_of_one_token_has_one_token(capsys, tiny_model_dirs):
    code, out, err = run_cli(capsys, "introspect", "neurons", "-m", tiny_model_dirs["gpt2"],
                             "-l", "0", "-p", "a", "--position", "3")
    assert code == 2
    assert out == ""
    assert "prompt 'a' has 1 token, so it has no token at position 3" in err


def test_examples_report_of_one_document_and_one_window_and_the_resume_note(
        capsys, llama_dir, tmp_path):
    corpus = tmp_path / "one.txt"
    corpus.write_text("I like to read books.\n")
    argv = ["introspect", "examples", "-m", llama_dir, "-l", "1", "--corpus", corpus, "-n",
            "3", "--examples", "1", "--window", "64", "--work-dir", tmp_path / "work"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert f"corpus {corpus}: 1 document, 1 window of 64 tokens (stride 64), 21 tokens " \
           "scored" in out
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "lazarus: resumed: 1 of 1 shard was already in " in err
