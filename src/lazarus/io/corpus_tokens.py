"""Tokenizing a long document in bounded pieces, to the ids of tokenizing it whole.

Why: one tokenizer call on a whole 18 MB document holds some 200 bytes per token at once (the
fast tokenizer's encoding: offsets, masks, words), 3.6 GB, and its time grows faster than the
text; in pieces, time and memory grow with the document, and one piece is held at a time.

How the pieces are chosen. A document of at most PIECE_CHARS + OVERLAP_CHARS characters is
tokenized in one call, exactly as before. A longer one is tokenized as consecutive pieces, each
PIECE_CHARS characters long plus OVERLAP_CHARS reaching into the next, with each token's
characters and word (`return_offsets_mapping`, `word_ids`). A piece may only be joined to the
next at a join point: a token that starts a word of the tokenizer's pre-tokenizer (any token,
for a tokenizer without one, which makes the whole text one word: the demo model's) and starts
where the token before it ended (never inside a character's bytes). The next piece starts at
this piece's first join point at or after PIECE_CHARS; the two are joined at the first join
point x of both, less than OVERLAP_CHARS / 2 past the cut, from which both pieces hold the same
tokens (ids and characters) up to OVERLAP_CHARS / 4 before the end of this piece's text (tokens
nearer to where its text was cut may change with what follows, so they are not compared): this
piece's tokens before x, then the next piece's from x on. The tokens at the start of a piece
are used only where the previous piece agrees with them, so a tokenizer that treats the start
of a text apart (SentencePiece's '▁' put before it, say) joins a word later. Where the two
agree on no such stretch (one word longer than the overlap: a base64 blob, a run of '='), this
piece is made twice as long and the join sought again further on, up to MAX_PIECE_CHARS: past
that (a run of hundreds of thousands of characters with no word break) the piece is cut at the
first token boundary after PIECE_CHARS without a check, and `cut_inside_word` is told where, so
that time and memory stay linear in the document; the tokens near such a cut may differ from
those of one call over the whole text.

The ids are those of the whole document when the tokens after a word boundary both pieces share
do not depend on the text before it, and no token depends on text more than OVERLAP_CHARS / 4
after it: true of every tokenizer that splits words by whitespace or a regex (byte-level BPE,
Metaspace, BERT's) with BPE, WordPiece, Unigram or a word-level vocabulary, and of a BPE
without a pre-tokenizer where merges reach a few characters; the tests compare the two routes
for each of these kinds. A tokenizer that gives no offsets (a pure-Python one) tokenizes the
document in one call, as before.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

PIECE_CHARS = 1 << 16  # characters per piece (some tens of milliseconds of a fast tokenizer)
OVERLAP_CHARS = 1 << 11  # how far a piece reaches into the next, to find where they agree
MAX_PIECE_CHARS = 1 << 19  # the longest a piece grows while no join is found


def document_ids(tokenizer: Any, text: str, piece: int = PIECE_CHARS,
                 overlap: int = OVERLAP_CHARS, longest: int = MAX_PIECE_CHARS,
                 cut_inside_word: Callable[[int], None] | None = None) -> Iterator[list[int]]:
    """The ids of `text` tokenized whole without special tokens, as consecutive lists, each
    from one piece of the text (see the module's notes); `cut_inside_word(character)` is told
    of each cut made without a check, in a run longer than `longest` with no word break."""
    if len(text) <= piece + overlap or not _has_offsets(tokenizer):
        yield _ids(tokenizer, text)
        return
    pieces = _Pieces(tokenizer, text, piece, overlap)
    start, length = 0, piece
    part, keep = pieces.encode(start, length), 0  # part's tokens before `keep` went out
    while start + length + overlap < len(text):
        joined = pieces.join(part, start + length)
        if joined is None and 2 * length > longest:
            joined = pieces.force(part, start + length)
            if joined is not None and cut_inside_word is not None:
                cut_inside_word(joined[1].base)
        if joined is None:  # no stretch both agree on: grow this piece and look further on
            kept_from = part.begin(keep)
            length *= 2
            part = pieces.encode(start, length)
            keep = part.first_at(kept_from)
            continue
        end, following, following_keep = joined
        yield part.ids[keep:end]
        part, keep, start, length = following, following_keep, following.base, piece
    yield part.ids[keep:]


@dataclass(frozen=True)
class _Piece:
    """The tokens of text[base:...]: ids, each token's characters (relative to base) and the
    pre-tokenizer's word each belongs to."""

    base: int
    ids: list[int]
    offsets: list[tuple[int, int]]
    words: list[int | None]

    def begin(self, index: int) -> int:
        return self.base + self.offsets[index][0]

    def end(self, index: int) -> int:
        return self.base + self.offsets[index][1]

    def first_at(self, char: int) -> int:
        """The index of the first token starting at `char` or later."""
        return bisect_left(self.offsets, (char - self.base,))

    def starts(self, first: int, last: int, any_token: bool) -> Iterator[int]:
        """The tokens starting at characters first..last-1 where a piece may be joined: a
        word's first token (any token, for a tokenizer without words) that starts where the
        one before it ended, so never inside a character's bytes."""
        for index in range(max(1, self.first_at(first)), self.first_at(last)):
            if (self.offsets[index - 1][1] <= self.offsets[index][0]
                    and (any_token or self.words[index] != self.words[index - 1])):
                yield index


class _Pieces:
    """One document's text and its tokenizer, tokenized a piece at a time."""

    def __init__(self, tokenizer: Any, text: str, piece: int, overlap: int) -> None:
        self.tokenizer, self.text, self.piece, self.overlap = tokenizer, text, piece, overlap
        words = tokenizer("a b\nc", add_special_tokens=False).word_ids()
        self.wordless = len(set(words)) == 1  # no pre-tokenizer: the whole text is one word

    def encode(self, start: int, length: int) -> _Piece:
        """The tokens of the piece starting at `start`: `length` characters and the overlap."""
        encoded = self.tokenizer(self.text[start:start + length + self.overlap],
                                 add_special_tokens=False, verbose=False,
                                 return_offsets_mapping=True)
        return _Piece(start, list(encoded["input_ids"]), list(encoded["offset_mapping"]),
                      encoded.word_ids())

    def join(self, part: _Piece, cut: int) -> tuple[int, _Piece, int] | None:
        """(part's index to stop before, the next piece, its index to go on from), or None
        where the two agree on no stretch."""
        stop = cut + self.overlap  # where part's text ends
        trusted = stop - self.overlap // 4  # part's tokens ending later may change past `stop`
        latest = cut + self.overlap // 2  # a later join would be checked over too short a stretch
        starts = {}
        for i in part.starts(cut, latest, self.wordless):
            starts.setdefault(part.begin(i), i)
        if not starts:
            return None
        following = self.encode(min(starts), self.piece)
        for j in following.starts(following.base, latest, self.wordless):
            i = starts.get(following.begin(j))
            if i is not None and _agree(part, i, following, j, trusted):
                return i, following, j
        return None


    def force(self, part: _Piece, cut: int) -> tuple[int, _Piece, int] | None:
        """A join at part's first token boundary at or after `cut`, unchecked (None if part has
        none there)."""
        i = next(part.starts(cut, cut + self.overlap // 2, True), None)
        return None if i is None else (i, self.encode(part.begin(i), self.piece), 0)


def _agree(part: _Piece, i: int, following: _Piece, j: int, trusted: int) -> bool:
    """Whether both pieces hold the same tokens (ids and characters) from part's i and
    following's j on, up to `trusted` (at least one token)."""
    compared = 0
    while i < len(part.ids) and part.end(i) <= trusted:
        if j >= len(following.ids) or part.ids[i] != following.ids[j]:
            return False
        if (part.begin(i), part.end(i)) != (following.begin(j), following.end(j)):
            return False
        i, j, compared = i + 1, j + 1, compared + 1
    return compared > 0


def _has_offsets(tokenizer: Any) -> bool:
    """Whether the tokenizer tells each token's characters (transformers' Python ones do not)."""
    try:
        tokenizer("a", add_special_tokens=False, return_offsets_mapping=True).word_ids()
    except (NotImplementedError, ValueError):
        return False
    return True


def _ids(tokenizer: Any, text: str) -> list[int]:
    # verbose=False: a document longer than the model's context is cut into windows by the
    # caller, so the tokenizer's warning that it would not fit does not apply.
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
