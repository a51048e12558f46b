"""Reading a corpus and cutting its documents into windows of tokens.

Formats, chosen by the file's extension:
  .txt      one document per line (blank lines are skipped; a document's id is its line, 0-based)
  .jsonl    one JSON object per line, its text in `text_field` (default "text"); id = line
  .parquet  a text column named `text_field`; id = row (needs pyarrow: pip install
            'lazarus[ray]' or pyarrow)
A document whose text is null (JSON null, a null Parquet cell) is skipped, like an empty one, in
every format, with a note of how many were; a text of another type is an error that names it.

Windows: each document is tokenized without special tokens (a long one in bounded pieces, to the
ids of tokenizing it whole: `corpus_tokens`), then cut into windows of at most `window` tokens
starting every `stride` tokens (default: stride = window, no overlap); the last window ends at
the document's end, and a document shorter than a window is one window. The tokens the
tokenizer puts before a text (Llama's `<s>`, say) are put before every window, as the model saw
them in training, and are never scored. With an overlap (stride < window), a
window scores only its tokens that the previous window did not hold, so every token of the
corpus is counted exactly once, with at least window - stride tokens of context before it.
A window is identified by (doc, index within the document); a token by (doc, window, position
within the window, prefix excluded).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lazarus.errors import LazarusError, first_line
from lazarus.io.corpus_tokens import MAX_PIECE_CHARS, document_ids
from lazarus.text import plural

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
    if not file.exists():
        raise LazarusError(f"corpus file not found: {path} (check the path)")
    if not file.is_file():  # a device or a pipe: it may never end, and it cannot be read twice
        raise LazarusError(f"--corpus {path} is not a regular file but a device or a pipe (the "
                           "corpus is read more than once: save it to a file and give that)")
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
    """Cheap checks before a model loads: format, pyarrow and the Parquet column and its type."""
    if corpus_format(path) == ".parquet":
        schema = _parquet_file(path).schema_arrow
        if text_field not in schema.names:
            raise LazarusError(f"{path} has no column {text_field!r} (its columns: "
                               f"{', '.join(schema.names)}; choose one with --text-field)")
        kind = schema.field(text_field).type
        if not _is_text(kind):
            raise LazarusError(f"{path}: column {text_field!r} holds Arrow type {kind}, not "
                               "text (choose a string column with --text-field, or store this "
                               "one as UTF-8 strings)")


def _is_text(kind: Any) -> bool:
    """Whether a Parquet column of this Arrow type reads as Python strings (or only nulls)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):  # pandas' categorical strings
        kind = kind.value_type
    string_view = getattr(pa.types, "is_string_view", lambda _kind: False)  # pyarrow >= 16
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or string_view(kind)
            or pa.types.is_null(kind))


def check_window(window: int, stride: int | None) -> int:
    """The stride to use (default: the window), after checking both."""
    if window < 1:
        raise LazarusError(f"--window must be at least 1 token (got {window})")
    stride = window if stride is None else stride
    if not 1 <= stride <= window:
        raise LazarusError(f"--stride must be between 1 and --window {window} (got {stride}; "
                           "a longer stride would skip tokens)")
    return stride


def read_documents(path: str, text_field: str = "text",
                   note: Callable[[str], None] | None = None) -> Iterator[tuple[int, str]]:
    """(doc id, text) of every non-empty document, streamed: memory does not grow with the file.

    A document whose text is null (JSON null, a null Parquet cell) is skipped like an empty
    one, in every format, and `note` is told how many were once all are read."""
    nulls = [0]
    if corpus_format(path) == ".parquet":
        yield from _parquet_documents(path, text_field, nulls)
    else:
        yield from _line_documents(path, text_field, nulls)
    if nulls[0] and note is not None:
        note(f"skipped {plural(nulls[0], 'document')} of {path} whose {text_field!r} is null")


def _line_documents(path: str, field: str, nulls: list[int]) -> Iterator[tuple[int, str]]:
    """The documents of a .txt or .jsonl file, a line at a time."""
    json_lines = path.lower().endswith(".jsonl")
    try:
        # lines end at "\n" only (a lone "\r" is text), as `wc -l` and `files.read_lines` count
        with open(path, encoding="utf-8-sig", newline="\n") as handle:
            for number, raw in enumerate(handle):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                if "\0" in line:  # valid UTF-8, but no text has it: a binary file
                    raise LazarusError(f"{path} line {number + 1} holds a NUL byte: binary "
                                       "data, not text (give a UTF-8 text file)")
                text = _json_text(path, number, line, field) if json_lines else line
                if text is None:
                    nulls[0] += 1
                elif text.strip():
                    yield number, text
    except UnicodeDecodeError:
        raise LazarusError(f"{path} is not UTF-8 text (save it as UTF-8)") from None
    except OSError as err:
        raise LazarusError(f"cannot read {path}: {err.strerror} (check its permissions)") from None


def _json_text(path: str, number: int, line: str, field: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise LazarusError(f"{path} line {number + 1} is not JSON ({err.msg}); give one JSON "
                           "object per line") from None
    if not isinstance(record, dict) or field not in record:
        raise LazarusError(f"{path} line {number + 1} has no {field!r} field (choose the text "
                           "field with --text-field)")
    text = record[field]
    if text is not None and not isinstance(text, str):
        raise LazarusError(f"{path} line {number + 1}: field {field!r} is {_json_kind(text)}, "
                           f"not a string (give each line a string {field!r} field)")
    return text


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words: a boolean, a number, a list, an object."""
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
        raise LazarusError(f"{path} is not a readable Parquet file ({first_line(err)})") from None


def _parquet_documents(path: str, field: str, nulls: list[int]) -> Iterator[tuple[int, str]]:
    import pyarrow as pa

    check_corpus(path, field)
    number = 0
    batches = _parquet_file(path).iter_batches(batch_size=PARQUET_BATCH, columns=[field])
    while True:
        try:
            batch = next(batches, None)
            texts = [] if batch is None else batch.column(0).to_pylist()
        except (OSError, UnicodeDecodeError, pa.ArrowException) as err:  # a damaged page
            raise LazarusError(f"{path} is damaged: {first_line(err)} (at row {number} or after; "
                               "repair or rewrite the file)") from None
        if batch is None:
            return
        for text in texts:
            if text is None:
                nulls[0] += 1
            elif text.strip():
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


def prefix_length(ids: Sequence[int], prefix: Sequence[int]) -> int:
    """How many leading tokens of `ids` are the tokenizer's `prefix` (`prefix_of`): all of it
    when `ids` start with it, else 0."""
    return len(prefix) if prefix and tuple(ids[:len(prefix)]) == tuple(prefix) else 0


def cut(doc: int, pieces: Iterable[Sequence[int]], window: int,
        stride: int) -> Iterator[Window]:
    """The windows of one document's tokens, given as consecutive pieces (see the module's
    notes); only the tokens of the current window and the piece being read are held."""
    held: list[int] = []  # the document's tokens from `offset` on, as far as read
    offset, start, index, previous_end = 0, 0, 0, 0
    stream = iter(pieces)
    more = True
    while True:
        while more and offset + len(held) <= start + window:  # is there a token past it?
            piece = next(stream, None)
            more = piece is not None
            held.extend(piece or ())
        known = offset + len(held)
        if known == 0:
            return
        end = min(start + window, known)
        yield Window(doc, index, start, tuple(held[start - offset:end - offset]),
                     max(0, previous_end - start))
        if end >= known:
            return
        previous_end = end
        start += stride
        index += 1
        if start - offset > len(held) // 2:  # drop what no window needs any more
            del held[:start - offset]
            offset = start


def document_windows(tokenizer: Any, doc: int, text: str, window: int, stride: int,
                     note: Callable[[str], None] | None = None) -> Iterator[Window]:
    """The windows of one document, tokenized in bounded pieces (`corpus_tokens`); `note` is
    told once if a piece was cut inside an over-long run with no word break."""
    told = []

    def cut_inside_word(character: int) -> None:
        if note is not None and not told:
            told.append(character)
            note(f"document {doc} holds a run of over {MAX_PIECE_CHARS:,} characters with no "
                 f"word break: tokenized in pieces cut inside it (at character {character:,}), "
                 "so the tokens next to that cut may differ from tokenizing it whole")

    return cut(doc, document_ids(tokenizer, text, cut_inside_word=cut_inside_word), window,
               stride)


def windows(path: str, tokenizer: Any, window: int, stride: int, text_field: str = "text",
            note: Callable[[str], None] | None = None) -> Iterator[Window]:
    """Every window of the corpus, in order, streamed (`note`: see `read_documents`)."""
    for doc, text in read_documents(path, text_field, note):
        yield from document_windows(tokenizer, doc, text, window, stride, note)
