"""QA regressions of `lazarus introspect examples` and `Model.examples`: direction widths and
sites, API input checks, warnings, and the wording of corpus and layer messages."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from lazarus.cli.main import main

CORPUS = Path(__file__).parent / "data" / "corpus.txt"


def examples(model: Path, corpus: Path | str, *extra: str) -> list[str]:
    return ["introspect", "examples", "-m", str(model), "-l", "1", "--corpus", str(corpus),
            *extra]


def fails(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def save(path: Path, size: int, **extra) -> str:
    weights = np.linspace(1.0, 2.0, size, dtype=np.float32)
    np.savez(path, direction=weights, **extra)
    return str(path)


@pytest.fixture
def no_weights(monkeypatch):
    """Any weight load fails the test: the checks must come first."""
    from lazarus.api import Model

    def refuse(*args, **kwargs):
        raise AssertionError("weights loaded before the check")

    monkeypatch.setattr(Model, "weights", refuse)


def test_examples_refuses_a_direction_of_the_wrong_width(llama_dir, tmp_path, capsys,
                                                         no_weights):
    from lazarus.engine.model_info import read_model_info

    hidden = read_model_info(str(llama_dir)).hidden_size
    for size in (hidden - 10, hidden * 3):
        message = fails(capsys, examples(llama_dir, CORPUS, "--from-direction",
                                         save(tmp_path / f"d{size}.npz", size)))
        assert f"has {size} weights but the resid_post site has {hidden} neurons" in message


def test_examples_refuses_a_direction_wider_than_mlp_post(llama_dir, tmp_path, capsys,
                                                          no_weights):
    from lazarus.engine.model_info import read_model_info
    from lazarus.engine.widths import mlp_post_bound

    width = mlp_post_bound(read_model_info(str(llama_dir)).config)[0]
    message = fails(capsys, examples(llama_dir, CORPUS, "--site", "mlp_post", "--from-direction",
                                     save(tmp_path / "wide.npz", width + 5, site="mlp_post")))
    assert f"has {width + 5} weights but the mlp_post site has at most {width}" in message


def test_a_direction_that_names_no_site_is_not_checked_on_it(llama_dir, tmp_path, capsys):
    from lazarus.engine.model_info import read_model_info
    from lazarus.engine.widths import mlp_post_bound

    width = mlp_post_bound(read_model_info(str(llama_dir)).config)[0]
    bare = save(tmp_path / "bare.npz", width)  # only the required key
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS.read_text().splitlines()[:5]) + "\n")
    assert main(examples(llama_dir, corpus, "--site", "mlp_post", "--from-direction", bare,
                         "--top-k", "2", "--window", "8", "--work-dir",
                         str(tmp_path / "w"))) == 0
    assert "made at" not in capsys.readouterr().err
    assert main(["introspect", "neurons", "-m", str(llama_dir), "-l", "1", "--site", "mlp_post",
                 "--from-direction", bare, "--top-k", "2", "-p", "hello", "-p", "world"]) == 0
    assert "made at" not in capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"neurons": [1.5]}, "neuron id 1.5 is not a whole number"),
    ({"neurons": "78,191"}, "neurons='78,191' is a str; neurons takes a list of neuron ids"),
    ({"corpus": 123}, "corpus=123 is an int; corpus takes a path"),
])
def test_api_examples_refuses_bad_input_in_one_line(llama_dir, no_weights, kwargs, expected):
    from lazarus import Model
    from lazarus.errors import LazarusError

    model = Model(str(llama_dir))
    arguments = {"corpus": str(CORPUS), **kwargs}
    with pytest.raises(LazarusError) as caught:
        model.examples(layer=1, **arguments)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_api_examples_warns_of_ignored_arguments(llama_dir, tmp_path):
    from lazarus import Model

    said: list[str] = []
    model = Model(str(llama_dir), warn=said.append)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS.read_text().splitlines()[:3]) + "\n")
    model.examples(str(corpus), 1, neurons=[1], top_k=3, ray_workers=2, window=8,
                   work_dir=str(tmp_path / "w"))
    assert said == ["top_k is ignored without a direction (it chooses a direction's top "
                    "neurons)",
                    "ray_workers is ignored without ray=True or ray_address (add ray=True)"]


def test_cli_examples_warns_of_ignored_options(llama_dir, tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS.read_text().splitlines()[:3]) + "\n")
    assert main(examples(llama_dir, corpus, "-n", "1", "--window", "8", "--ray-workers", "2",
                         "--text-field", "body", "--work-dir", str(tmp_path / "w"))) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "lazarus: warning: --ray-workers is ignored without --ray or --ray-address (add --ray)",
        "lazarus: warning: --text-field is ignored with a .txt corpus (each line is a "
        "document)"]


def test_hub_corpus_messages_name_the_hf_command(llama_dir, capsys):
    message = fails(capsys, examples(llama_dir, "hf:nobody-lazarus-qa/never-cached"))
    assert ("(fetch it first: hf download nobody-lazarus-qa/never-cached --repo-type dataset)"
            in message)
    for spec in ("hf:", "hf::data/train.jsonl"):
        assert "the dataset name is missing (give hf:ORG/NAME" in fails(
            capsys, examples(llama_dir, spec))


def test_messages_say_layers_json_kinds_and_folders_plainly(llama_dir, tmp_path, capsys):
    argv = examples(llama_dir, CORPUS)
    argv[argv.index("-l") + 1] = "0,1"
    assert fails(capsys, argv).endswith("examples reads one layer; 0,1 names 2 (give one)")
    for value, kind in (("3", "a number"), ("[1]", "a list")):  # a null is skipped
        jsonl = tmp_path / "c.jsonl"
        jsonl.write_text('{"text": "1+1=2"}\n{"text": ' + value + "}\n")
        assert fails(capsys, examples(llama_dir, jsonl, "--work-dir", str(tmp_path))).endswith(
            f"line 2: field 'text' is {kind}, not a string (give each line a string 'text' "
            "field)")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert fails(capsys, examples(llama_dir, folder)).endswith(
        f"--corpus {folder} is a folder (give a .txt, .jsonl or .parquet file)")


def test_a_txt_document_is_a_line_ended_by_a_newline_only(tmp_path):
    """A lone carriage return (scraped text holds them) ends no line: document ids are the
    lines that `wc -l`, `sed -n` and `lazarus.io.files.read_lines` count, with CRLF endings
    stripped; in JSON Lines a carriage return is whitespace between tokens."""
    from lazarus.io.corpus import read_documents

    lines = ["aaaa\rbbbb", "cccc\r", "", "dddd"]
    path = tmp_path / "c.txt"
    path.write_bytes("\n".join(lines).encode())
    assert list(read_documents(str(path))) == [(0, "aaaa\rbbbb"), (1, "cccc"), (3, "dddd")]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_bytes(b'{"text": "a b",\r "id": 1}\n{"text": "c"}\n')
    assert list(read_documents(str(jsonl))) == [(0, "a b"), (1, "c")]


def test_a_projection_that_overflows_float32_is_one_line_naming_it(llama_dir, tmp_path,
                                                                    capsys):
    """A direction of finite but huge weights: its dot products overflow to +-inf (and their
    sums to NaN); said as an overflow of the projection, not as MoE units without a value, and
    with no numpy warning before the line."""
    direction = save(tmp_path / "huge.npz", 64, site="resid_post")
    np.savez(direction, direction=np.full(64, 3e38, np.float32), site="resid_post")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = fails(capsys, examples(llama_dir, CORPUS, "--from-direction", direction,
                                         "--projection", "--work-dir", str(tmp_path / "work"),
                                         "-o", str(tmp_path / "out.json")))
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []
    assert "overflow" in message
    assert "--projection" in message
    assert not (tmp_path / "out.json").exists()
