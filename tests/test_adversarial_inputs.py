"""Adversarial inputs (issue 18): a corpus document of many megabytes is tokenized in bounded
pieces to the ids of tokenizing it whole; a Parquet text column of another type, a null text, a
damaged Parquet page, a device or pipe as a corpus, and `@file` lists that never end or hold
binary data are one line with exit 2; a prompt too long for the model is named by its place
(list, number, file and line). Devices and pipes need a real process: those tests run the
console script, bounded in time and memory; the rest call the real entry point in-process.
"""

from __future__ import annotations

import json
import os
import random
import resource
import string
import subprocess
import sys
from itertools import chain, pairwise
from pathlib import Path

import pytest
import tiny_models
from tokenizers import (
    ByteLevelBPETokenizer,
    SentencePieceBPETokenizer,
    SentencePieceUnigramTokenizer,
    Tokenizer,
    models,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lazarus.cli.main import main
from lazarus.engine.model_info import demo_model_folder
from lazarus.io.corpus import Window, cut, windows
from lazarus.io.corpus_tokens import OVERLAP_CHARS, PIECE_CHARS, document_ids

_SCRIPT = Path(sys.executable).with_name("lazarus")
LAZARUS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lazarus.cli.main"]
MISSING_MODEL = "/nonexistent/model"  # a check that fires before loading never names it


def varied_text(chars: int, seed: int) -> str:
    """Words, digits, punctuation, non-ASCII, emoji (several bytes), blank lines, and now and
    then one long 'word': a run of '=' or a base64-like blob, longer than a test's overlap."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "mat", "über", "naïve", "日本語", "emoji🙂", "123", "4567",
             "don't", "x=1;", "  ", "\n", "\n\n", "\t", "...", "https://example.com/a?b=c"]
    parts: list[str] = []
    size = 0
    while size < chars:
        roll = rng.random()
        if roll < 0.002:
            part = "=" * rng.randint(100, 3000)
        elif roll < 0.004:
            part = "".join(rng.choice(string.ascii_letters + string.digits)
                           for _ in range(rng.randint(100, 2500)))
        else:
            part = rng.choice(words) + rng.choice([" ", "", " ", "\n", ", "])
        parts.append(part)
        size += len(part)
    return "".join(parts)[:chars]


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                   pad_token="<pad>")


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, PreTrainedTokenizerFast]:
    """One of each kind, trained here on varied text (no download): byte-level BPE (GPT-2),
    SentencePiece-style BPE and Unigram (Metaspace, '▁' put before the text), BPE without a
    pre-tokenizer (the whole text one word), the demo model's, and the tiny test models'."""
    train = [varied_text(20_000, seed) for seed in range(5)]
    special = ["<unk>", "<pad>"]
    byte_level = ByteLevelBPETokenizer()
    byte_level.train_from_iterator(train, vocab_size=600, special_tokens=special)
    sentencepiece = SentencePieceBPETokenizer()
    sentencepiece.train_from_iterator(train, vocab_size=600, special_tokens=special)
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(train, vocab_size=400, special_tokens=special, unk_token="<unk>")
    wordless = Tokenizer(models.BPE(unk_token="<unk>"))
    wordless.train_from_iterator(train, trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, max_token_length=8))
    return {"byte-level BPE": _wrap(byte_level._tokenizer),
            "SentencePiece BPE": _wrap(sentencepiece._tokenizer),
            "Unigram": _wrap(unigram._tokenizer), "BPE, one word": _wrap(wordless),
            "demo": AutoTokenizer.from_pretrained(demo_model_folder()),
            "tiny": tiny_models.build_tokenizer(add_bos=True)}


KINDS = ("byte-level BPE", "SentencePiece BPE", "Unigram", "BPE, one word", "demo", "tiny")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("piece", "overlap"), [(1000, 256), (700, 64), (3000, 512)])
def test_a_long_document_in_pieces_has_the_ids_of_the_whole(tokenizers, kind, piece, overlap):
    tokenizer = tokenizers[kind]
    for seed in (100, 101):
        text = varied_text(30_000, seed)
        whole = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        pieces = list(document_ids(tokenizer, text, piece, overlap))
        assert len(pieces) >= 3  # really cut into pieces (fewer where a long word grew one)
        assert list(chain.from_iterable(pieces)) == whole


class _Recording:
    """A tokenizer that records the length of every text it is given."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast) -> None:
        self.tokenizer, self.lengths = tokenizer, []

    def __call__(self, text: str, **options):
        self.lengths.append(len(text))
        return self.tokenizer(text, **options)


def test_a_run_with_no_word_break_is_cut_at_the_longest_piece_and_said(tokenizers):
    """A run of letters no word break splits (DNA, minified code) never agrees across a join: a
    piece grows only up to `longest`, then is cut unchecked there, and the caller is told where.
    Every call tokenizes a bounded text, and the ids still spell the document exactly."""
    tokenizer = tokenizers["byte-level BPE"]
    rng = random.Random(7)
    run = "".join(rng.choice("acgt") for _ in range(30_000))
    text = varied_text(5_000, 1) + " " + run + " " + varied_text(5_000, 2)
    recording, cuts = _Recording(tokenizer), []
    ids = list(chain.from_iterable(document_ids(recording, text, 1000, 256, 4000, cuts.append)))
    assert max(recording.lengths[2:]) <= 4000 + 256  # [:2]: the offset and word probes
    assert cuts
    assert all(5_001 < cut_at < 5_001 + len(run) for cut_at in cuts)
    assert tokenizer.decode(ids) == text
    told = []
    list(document_ids(tokenizer, varied_text(30_000, 100), 1000, 256, 4000, told.append))
    assert told == []


def expected_windows(doc: int, ids: list[int], window: int, stride: int) -> list[Window]:
    """The module's rule, written out: starts every `stride` tokens until a window reaches the
    end; each scores what the previous window did not hold."""
    found, start = [], 0
    while True:
        end = min(start + window, len(ids))
        scored_from = 0 if start == 0 else max(0, window - stride)
        found.append(Window(doc, len(found), start, tuple(ids[start:end]), scored_from))
        if end == len(ids):
            return found
        start += stride


@pytest.mark.parametrize(("window", "stride"), [(64, 64), (64, 48), (5, 1)])
def test_windows_from_pieces_of_any_size_equal_the_rule(window, stride):
    rng = random.Random(window * 100 + stride)
    ids = [rng.randrange(50) for _ in range(3_001)]
    splits = sorted(rng.sample(range(len(ids)), 40)) + [len(ids)]
    pieces = [ids[a:b] for a, b in pairwise([0, *splits])]
    pieces[3:3] = [[], []]  # a piece may hold no token
    assert list(cut(7, pieces, window, stride)) == expected_windows(7, ids, window, stride)
    assert list(cut(7, [], window, stride)) == []


@pytest.mark.parametrize("chars", [5_000, PIECE_CHARS * 2 + OVERLAP_CHARS * 3 + 123])
def test_corpus_windows_equal_the_whole_document_route(tokenizers, tmp_path, chars):
    """A normal document (one call, as before) and one long enough to be cut into pieces: the
    windows of `corpus.windows` equal those of the document tokenized in one call."""
    tokenizer = tokenizers["byte-level BPE"]
    texts = [varied_text(chars, 7), "a short one", varied_text(chars // 2, 8)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    expected = []
    for doc, text in enumerate(texts):
        ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        expected += expected_windows(doc, ids, 64, 48)
    recording = Recording(tokenizer)
    assert list(windows(str(corpus), recording, 64, 48)) == expected
    assert recording.longest <= PIECE_CHARS + OVERLAP_CHARS


class Recording:
    """The tokenizer itself, noting the longest text it was given."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast) -> None:
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, text: str, **options: object) -> object:
        self.longest = max(self.longest, len(text))
        return self.tokenizer(text, **options)


def examples(model: str | Path, corpus: str | Path, *extra: str | Path) -> list[str]:
    return ["introspect", "examples", "-m", str(model), "-l", "1", "--corpus", str(corpus),
            *[str(e) for e in extra]]


def fail_in_process(capsys, argv: list[str]) -> str:
    """Run the CLI expecting a user error: exit 2, nothing on stdout, one stderr line."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lazarus: error: ")
    return lines[0]


@pytest.mark.parametrize(("values", "arrow"), [
    ([1, 2], "int64"), ([b"1+1=2", b"x"], "binary"), ([["1+1=2"], ["x"]], "list<element: string>")])
def test_a_parquet_text_column_of_another_type_is_named(capsys, tmp_path, values, arrow):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": values}), corpus)
    assert fail_in_process(capsys, examples(MISSING_MODEL, corpus)) == (
        f"lazarus: error: {corpus}: column 'text' holds Arrow type {arrow}, not text (choose a "
        "string column with --text-field, or store this one as UTF-8 strings)")


def test_a_null_text_is_skipped_with_a_note_in_jsonl_and_parquet_alike(
        capsys, tmp_path, llama_dir):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = ["1+1=2 and 2+2=4", None, "3+3=6, 4+4=8", None, "5*5=25"]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), parquet)
    results = {}
    for corpus in (jsonl, parquet):
        output = tmp_path / f"{corpus.suffix[1:]}.json"
        assert main(examples(llama_dir, corpus, "-n", "0,5", "--window", "8", "--work-dir",
                             tmp_path / corpus.suffix[1:], "-o", output)) == 0
        warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        assert warnings == [f"lazarus: warning: skipped 2 documents of {corpus} whose 'text' "
                            "is null"]
        results[corpus.suffix] = json.loads(output.read_text())
    first, second = results[".jsonl"], results[".parquet"]
    assert first["documents"] == 3
    assert first["tokens"] == sum(len(t) for t in texts if t)  # one token per character
    assert first["neurons"] == second["neurons"]


def test_a_damaged_parquet_page_is_one_line(capsys, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": [f"document {i} " * 20 for i in range(3000)]}), corpus,
                   compression="NONE", data_page_size=4096)
    data = bytearray(corpus.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 40] = b"\xff" * 40
    corpus.write_bytes(bytes(data))
    message = fail_in_process(capsys, examples("lazarus:demo", corpus, "--work-dir",
                                               tmp_path / "w"))
    assert message.startswith(f"lazarus: error: {corpus} is damaged: ")
    assert message.endswith(" or after; repair or rewrite the file)")


def test_binary_text_in_a_txt_corpus_is_one_line(capsys, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"1+1=2\n" + b"\0" * 100 + b"\n")
    assert fail_in_process(capsys, examples("lazarus:demo", corpus, "--work-dir",
                                            tmp_path / "w")) == (
        f"lazarus: error: {corpus} line 2 holds a NUL byte: binary data, not text (give a "
        "UTF-8 text file)")


@pytest.mark.parametrize("kind", ["device", "pipe"])
def test_a_device_or_pipe_as_corpus_is_refused(capsys, tmp_path, kind):
    corpus = tmp_path / ("c.txt" if kind == "device" else "c.jsonl")
    if kind == "device":
        corpus.symlink_to("/dev/zero")
    else:
        os.mkfifo(corpus)
    assert fail_in_process(capsys, examples(MISSING_MODEL, corpus)) == (
        f"lazarus: error: --corpus {corpus} is not a regular file but a device or a pipe (the "
        "corpus is read more than once: save it to a file and give that)")


def _limited() -> None:
    """In the child: at most 4 GiB of address space, so a regression fails, never swaps."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def run_limited(argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LAZARUS, *argv], input=stdin, capture_output=True, timeout=60,
                          preexec_fn=_limited, stdin=None if stdin is not None else
                          subprocess.DEVNULL)


@pytest.mark.integration
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_prompt_file_that_is_a_device_is_one_line(device):
    done = run_limited(["introspect", "neurons", "-m", MISSING_MODEL, "-l", "0", "-p",
                        f"@{device}"])
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f"lazarus: error: {device} is a device, not a text file (give a text file after '@', "
        "or pipe the text in with @/dev/stdin)"]


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/dev/zero"])
def test_standard_input_that_is_a_device_is_named_as_such(path):
    """`-p @/dev/stdin < /dev/zero`: the advice is not to do what the user did."""
    with open("/dev/zero", "rb") as zero:
        done = subprocess.run([*LAZARUS, "introspect", "neurons", "-m", MISSING_MODEL, "-l", "0",
                               "-p", f"@{path}"], stdin=zero, capture_output=True, timeout=60,
                              preexec_fn=_limited)
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        "lazarus: error: standard input is a device (/dev/zero), not text: redirect a text file "
        "into it or pipe text in"]


@pytest.mark.integration
@pytest.mark.parametrize(("stdin", "message"), [
    (b"a prompt\n" + b"\0" * 5000, "/dev/stdin holds a NUL byte (byte 10): binary data, not "
     "text (give a UTF-8 text file, one item per line)"),
    (b"a prompt\n\xff\xfe\n", "/dev/stdin is not UTF-8 text (save it as UTF-8, one item per "
     "line)"),
    (b"a\n" * (33 << 20), "/dev/stdin is longer than 64 MiB, the most an @file list may hold "
     "(give fewer items, one per line, or split the run)")])
def test_a_piped_prompt_list_of_binary_or_endless_data_is_one_line(stdin, message):
    done = run_limited(["introspect", "neurons", "-m", MISSING_MODEL, "-l", "0", "-p",
                        "@/dev/stdin"], stdin)
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [f"lazarus: error: {message}"]


def test_a_prompt_file_larger_than_the_cap_is_refused_unread(capsys, tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as handle:
        handle.truncate((64 << 20) + 1)  # sparse: no disk used, never read
    assert fail_in_process(capsys, ["introspect", "neurons", "-m", MISSING_MODEL, "-l", "0",
                                    "-p", f"@{big}"]) == (
        f"lazarus: error: {big} is longer than 64 MiB, the most an @file list may hold (give "
        "fewer items, one per line, or split the run)")


def test_a_long_test_prompt_is_named_by_its_list_file_and_line(capsys, tmp_path, llama_dir):
    tests = tmp_path / "tests.txt"
    tests.write_text("1+1=2\n\n" + "9" * 300 + "\n")  # line 3 is test prompt 2
    message = fail_in_process(capsys, [
        "introspect", "probe", "-m", str(llama_dir), "--class-a", "1+1=2|2+2=4|3+3=6",
        "--class-b", "1+1=3|2+2=5|3+3=7", "-t", f"@{tests}"])
    assert message == (f"lazarus: error: test prompt 2 of 2 (line 3 of {tests}) has 301 tokens "
                       "but this model takes at most 256 (shorten it)")  # 300 and <s>
    message = fail_in_process(capsys, [
        "introspect", "neurons", "-m", str(llama_dir), "-l", "0", "-p", f"@{tests}"])
    assert message == (f"lazarus: error: prompt 2 of 2 (line 3 of {tests}) has 301 tokens but "
                       "this model takes at most 256 (shorten it)")
