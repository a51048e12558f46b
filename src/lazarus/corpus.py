"""Reading a corpus and cutting its documents into windows of tokens.

Formats, chosen by the file's extension:
  .txt      one document per line (blank lines are skipped; a document's id is its line, 0-based)
  .jsonl    one JSON object per line, its text in `text_field` (default "text"); id = line
  .parquet  a text column named `text_field`; id = row (needs pyarrow: pip install
            'lazarus[ray]' or pyarrow)

Windows: each document is tokenized without special tokens, then cut into windows of at most
`window` tokens starting every `stride` tokens (default: stride = window, no overlap); the last
window ends at the document's end, and a document shorter than a window is one window. The
tokens the tokenizer puts before a text (Llama's `<s>`, say) are put before every window, as
the model saw them in training, and are never scored. With an overlap (stride < window), a
window scores only its tokens that the previous window did not hold, so every token of the
corpus is counted exactly once, with at least window - stride tokens of context before it.
A window is identified by (doc, index within the document); a token by (doc, window, position
within the window, prefix excluded).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lazarus.errors import LazarusError

FORMATS = (".txt", ".jsonl", ".parquet")
PARQUET_BATCH = 1024  # rows read from a Parquet file at a time


@dataclass(frozen=True)
class Window:
    doc: int  # the document's id (line or row, 0-based)
    index: int  # the window's number within its document
    start: int  # offset of its first token in the document's tokens
    tokens: tuple[int, ...]  # the document's tokens in the window (no prefix)
    scored_from: int  # positions before this one were scored by the previous window


def corpus_format(path: str) -> str:
    """The format of `path` from its extension, after checking the file can be read."""
    file = Path(path)
    suffix = file.suffix.lower()
    if file.is_dir():
        raise LazarusError(f"--corpus {path} is a folder (give a .txt, .jsonl or .parquet file)")
    if suffix not in FORMATS:
        raise LazarusError(f"--corpus {path}: unknown format {suffix or '(no extension)'!r} "
                           "(give a .txt, .jsonl or .parquet file)")
    if not file.is_file():
        raise LazarusError(f"corpus file not found: {path} (check the path)")
    return suffix


HUB_PREFIX = "hf:"


def resolve_corpus(spec: str) -> str:
    """A corpus file: `spec` itself, or for `hf:org/name[:path/in/repo]` a data file of that
    dataset in the local Hugging Face cache (never downloaded): the one .txt/.jsonl/.parquet
    file of its snapshot, or the path named after the colon."""
    if not spec.startswith(HUB_PREFIX):
        return spec
    repo, _, inner = spec[len(HUB_PREFIX):].partition(":")
    if not repo.strip():
        raise LazarusError(f"--corpus {spec}: the dataset name is missing (give hf:ORG/NAME, "
                           "e.g. hf:roneneldan/TinyStories)")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, repo_type="dataset", local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or not a valid name: one message either way
        raise LazarusError(f"--corpus {spec}: the dataset {repo!r} is not in the local Hugging "
                           f"Face cache (fetch it first: hf download {repo} --repo-type "
                           "dataset)") from None
    if inner:
        return str(folder / inner)
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.suffix.lower() in FORMATS and p.is_file())
    if len(found) != 1:
        listed = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "") or "none"
        raise LazarusError(f"--corpus {spec}: the dataset has {len(found)} data files "
                           f"({listed}); name one, e.g. --corpus {spec}:{(found or ['x'])[0]}")
    return str(folder / found[0])


def check_corpus(path: str, text_field: str = "text") -> None:
    """Cheap checks before a model loads: format, pyarrow and the Parquet column."""
    if corpus_format(path) == ".parquet":
        schema = _parquet_file(path).schema_arrow
        if text_field not in schema.names:
            raise LazarusError(f"{path} has no column {text_field!r} (its columns: "
                               f"{', '.join(schema.names)}; choose one with --text-field)")


def check_window(window: int, stride: int | None) -> int:
    """The stride to use (default: the window), after checking both."""
    if window < 1:
        raise LazarusError(f"--window must be at least 1 token (got {window})")
    stride = window if stride is None else stride
    if not 1 <= stride <= window:
        raise LazarusError(f"--stride must be between 1 and --window {window} (got {stride}; "
                           "a longer stride would skip tokens)")
    return stride


def read_documents(path: str, text_field: str = "text") -> Iterator[tuple[int, str]]:
    """(doc id, text) of every non-empty document, streamed: memory does not grow with the file."""
    suffix = corpus_format(path)
    if suffix == ".parquet":
        yield from _parquet_documents(path, text_field)
        return
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, raw in enumerate(handle):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                text = line if suffix == ".txt" else _json_text(path, number, line, text_field)
                if text.strip():
                    yield number, text
    except UnicodeDecodeError:
        raise LazarusError(f"{path} is not UTF-8 text (save it as UTF-8)") from None
    except OSError as err:
        raise LazarusError(f"cannot read {path}: {err.strerror} (check its permissions)") from None


def _json_text(path: str, number: int, line: str, field: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise LazarusError(f"{path} line {number + 1} is not JSON ({err.msg}); give one JSON "
                           "object per line") from None
    if not isinstance(record, dict) or field not in record:
        raise LazarusError(f"{path} line {number + 1} has no {field!r} field (choose the text "
                           "field with --text-field)")
    text = record[field]
    if not isinstance(text, str):
        raise LazarusError(f"{path} line {number + 1}: field {field!r} is {_json_kind(text)}, "
                           f"not a string (give each line a string {field!r} field)")
    return text


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words: null, a boolean, a number, a list, an object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def _parquet_file(path: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LazarusError("reading .parquet needs pyarrow (pip install pyarrow), or give "
                           "a .txt or .jsonl corpus") from None
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow's many error types
        raise LazarusError(f"{path} is not a readable Parquet file ({err})") from None


def _parquet_documents(path: str, field: str) -> Iterator[tuple[int, str]]:
    check_corpus(path, field)
    number = 0
    for batch in _parquet_file(path).iter_batches(batch_size=PARQUET_BATCH, columns=[field]):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                yield number, text
            number += 1


def prefix_of(tokenizer: Any) -> tuple[int, ...]:
    """The tokens the tokenizer puts before any text by default (e.g. BOS), found by comparing
    a text's ids with and without special tokens."""
    probe = "a"
    full = list(tokenizer(probe)["input_ids"])
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return tuple(full[:start])
    return ()


def cut(doc: int, ids: list[int], window: int, stride: int) -> Iterator[Window]:
    """The windows of one document's tokens (see the module's notes)."""
    start, index, previous_end = 0, 0, 0
    while True:
        end = min(start + window, len(ids))
        yield Window(doc, index, start, tuple(ids[start:end]), max(0, previous_end - start))
        if end >= len(ids):
            return
        previous_end = end
        start += stride
        index += 1


def windows(path: str, tokenizer: Any, window: int, stride: int,
            text_field: str = "text") -> Iterator[Window]:
    """Every window of the corpus, in order, streamed."""
    for doc, text in read_documents(path, text_field):
        # verbose=False: a document longer than the model's context is cut into windows here,
        # so the tokenizer's warning that it would not fit does not apply.
        ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        if ids:
            yield from cut(doc, ids, window, stride)
