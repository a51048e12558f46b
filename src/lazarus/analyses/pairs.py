"""Clean/corrupted prompt pairs, shared by `patch` and `attribute`: the fields both commands
take (`PairOptions`), and the pairs made ready to run (`prepare`).

A pair is a clean prompt, whose run gives the behaviour studied (the answer), and a corrupted
one, whose run does not (it favours the wrong token). Patching swaps activations position by
position, so both prompts of a pair must tokenize to the same length.

The metric is read at one next token: where the answer and the wrong text first differ. Their
common beginning is appended to both prompts (teacher forcing), so `--answer 68 --wrong 69`
on `23+45=` / `23+46=` is judged at the token after `23+45=6`, on `8` against `9`. Without a
wrong text (metrics `logprob` and `kl`), the answer's first token is the one judged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lazarus.engine.arguments import Options
from lazarus.engine.capture import context_length, tokenize
from lazarus.engine.loading import LoadedModel
from lazarus.engine.measures import next_token, quoted, warn_unknown
from lazarus.engine.patching import METRICS, Metric, score_jobs
from lazarus.errors import LazarusError
from lazarus.text import plural


@dataclass(frozen=True)
class PairOptions(Options):
    """The pairs and the metric, common to `patch` and `attribute`."""

    command: ClassVar[str] = "pairs"
    clean: Sequence[str]  # prompts whose run gives the answer
    corrupt: Sequence[str]  # as many, each of the same token length as its clean prompt
    answers: Sequence[str]  # one answer for every pair, or one per pair
    wrongs: Sequence[str] | None = None  # likewise: the competing texts (needed by logit_diff)
    metric: str = "logit_diff"  # logit_diff, logprob or kl

    def check(self) -> None:
        if self.metric not in METRICS:
            raise LazarusError(f"unknown metric {self.metric!r} (choose one of: "
                               f"{', '.join(METRICS)})")
        if len(self.clean) != len(self.corrupt):
            raise LazarusError(f"got {plural(len(self.clean), 'clean prompt')} and "
                               f"{plural(len(self.corrupt), 'corrupted prompt')} (give them in "
                               "pairs, in the same order)")
        for name, texts in (("answer", self.answers), ("wrong", self.wrongs)):
            if texts is not None and len(texts) not in (1, len(self.clean)):
                raise LazarusError(f"got {plural(len(texts), name)} for "
                                   f"{plural(len(self.clean), 'pair')} (give one for every "
                                   "pair, or one per pair)")
        if self.metric == "logit_diff" and self.wrongs is None:
            raise LazarusError("the logit_diff metric needs the wrong text (give --wrong, or "
                               "--metric logprob or kl)")


@dataclass(frozen=True, eq=False)
class Pairs:
    """Pairs ready to run: token ids (with the answers' common beginning appended), the
    metric, and each pair's clean and corrupted score."""

    clean_ids: tuple[tuple[int, ...], ...]
    corrupt_ids: tuple[tuple[int, ...], ...]
    tokens: tuple[tuple[str, ...], ...]  # per pair, the clean run's tokens as text
    corrupt_tokens: tuple[tuple[str, ...], ...]
    answer: tuple[str, ...]  # per pair, the judged token of the answer, as text
    wrong: tuple[str, ...] | None  # and of the wrong text
    metric: Metric
    clean_score: np.ndarray  # float64 [pairs]
    corrupt_score: np.ndarray  # float64 [pairs]

    @property
    def length(self) -> int:
        """Tokens of the first pair (the grid's positions; all pairs, when `same_length`)."""
        return len(self.clean_ids[0])

    @property
    def same_length(self) -> bool:
        return len({len(ids) for ids in self.clean_ids}) == 1

    @property
    def gap(self) -> float:
        """Mean clean score minus mean corrupted score: what normalisation divides by."""
        return float(self.clean_score.mean() - self.corrupt_score.mean())


def check_sites(sites: Sequence[str], known: Sequence[str], refusal: str) -> None:
    """At least one site, each of `known` (else `refusal`, formatted with `site` and `known`),
    none twice: the rule of both commands' `--site`."""
    if not sites:
        raise LazarusError(f"no site given (give at least one, e.g. {known[0]})")
    for site in sites:
        if site not in known:
            raise LazarusError(refusal.format(site=repr(site), known=", ".join(known)))
    if len(set(sites)) != len(sites):
        raise LazarusError("a site is listed twice (list each once)")


def prepare(loaded: LoadedModel, options: PairOptions, warn: Callable[[str], None]) -> Pairs:
    """Tokenize and check the pairs, and score the clean and corrupted runs; `warn` is told of
    an answer or wrong text with tokens the tokenizer does not know."""
    count = len(options.clean)
    answers = _per_pair(options.answers, count)
    wrongs = None if options.wrongs is None else _per_pair(options.wrongs, count)
    tokenizer = loaded.tokenizer
    clean_ids, corrupt_ids, judged, competing = [], [], [], []
    warned: set[tuple[str, str]] = set()
    clean, corrupt = tokenize(loaded, options.clean), tokenize(loaded, options.corrupt)
    for index in range(count):
        answer = _text_ids(tokenizer, answers[index], "answer", index)
        wrong = None if wrongs is None else _text_ids(tokenizer, wrongs[index], "wrong", index)
        shared = _shared_start(answer, wrong, answers[index], wrongs, index)
        _check_room(loaded, max(len(clean[index]), len(corrupt[index])), shared, index,
                    answers[index], None if wrongs is None else wrongs[index])
        clean_ids.append((*clean[index], *answer[:shared]))
        corrupt_ids.append((*corrupt[index], *answer[:shared]))
        judged.append(answer[shared])
        competing.append(None if wrong is None else wrong[shared])
        scored = [("answer", answers[index], answer)]
        if wrongs is not None and wrong is not None:
            scored.append(("wrong text", wrongs[index], wrong))
        for name, text, ids in scored:
            if (name, text) not in warned:  # one answer for every pair is warned about once
                warned.add((name, text))
                warn_unknown(warn, tokenizer, name, text, ids, "the metric read for it")
        if len(clean_ids[-1]) != len(corrupt_ids[-1]):
            raise LazarusError(
                f"pair {index + 1}: the clean prompt {quoted(options.clean[index])} is "
                f"{plural(len(clean[index]), 'token')} and the corrupted "
                f"{quoted(options.corrupt[index])} {plural(len(corrupt[index]), 'token')} "
                "(patching swaps activations position by position: change words for ones of "
                "the same token length)")
    reference = None
    if options.metric == "kl":
        reference = tuple(row.astype(np.float32) for row in next_token(loaded, clean_ids))
    metric = Metric(options.metric, tuple(judged),
                    None if wrongs is None else tuple(competing), reference)
    indices = list(range(count))
    clean_score = score_jobs(loaded, clean_ids, indices, [], metric)
    corrupt_score = score_jobs(loaded, corrupt_ids, indices, [], metric)
    pairs = Pairs(tuple(clean_ids), tuple(corrupt_ids), _texts(tokenizer, clean_ids),
                  _texts(tokenizer, corrupt_ids), _pieces(tokenizer, judged),
                  None if wrongs is None else _pieces(tokenizer, competing), metric,
                  clean_score, corrupt_score)
    if abs(pairs.gap) <= 1e-6 * max(1.0, float(np.abs(clean_score).max())):
        raise LazarusError(f"the clean and corrupted prompts give the same {options.metric} on "
                           "average (nothing to patch: choose pairs the model tells apart)")
    return pairs


def _per_pair(texts: Sequence[str], count: int) -> list[str]:
    return list(texts) * count if len(texts) == 1 else list(texts)


def _text_ids(tokenizer: object, text: str, name: str, index: int) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
    if not ids:
        raise LazarusError(f"the {name} of pair {index + 1} ({text!r}) tokenizes to nothing "
                           "(give it some text)")
    return ids


def _check_room(loaded: LoadedModel, size: int, shared: int, index: int, answer: str,
                wrong: str | None) -> None:
    """Refuse a pair whose prompt with the answers' shared start is past the model's context:
    positions past it are out of a learned position table's range (GPT-2's forward fails)."""
    limit = context_length(loaded.info.config)
    if limit is None or size + shared <= limit:
        return
    room = limit - shared
    fix = (f"shorten the prompts to {plural(room, 'token')} or less, or give an answer and a "
           "wrong text that differ sooner" if room > 0
           else "give an answer and a wrong text that differ sooner")
    raise LazarusError(f"pair {index + 1}: the prompt ({plural(size, 'token')}) with the "
                       f"{plural(shared, 'token')} that the answer {quoted(answer)} and the wrong "
                       f"text {quoted(str(wrong))} share at their start (appended to it, to judge "
                       f"where they differ) is {plural(size + shared, 'token')} but this model "
                       f"takes at most {limit} ({fix})")


def _shared_start(answer: list[int], wrong: list[int] | None, text: str,
                  wrongs: list[str] | None, index: int) -> int:
    """How many tokens the answer and the wrong text share at their start (0 with no wrong)."""
    if wrong is None:
        return 0
    shared = 0
    while shared < min(len(answer), len(wrong)) and answer[shared] == wrong[shared]:
        shared += 1
    if shared == min(len(answer), len(wrong)):
        assert wrongs is not None
        raise LazarusError(f"pair {index + 1}: the answer {text!r} and the wrong text "
                           f"{wrongs[index]!r} do not differ at any token both have (give "
                           "texts that differ, e.g. '68' against '69')")
    return shared


def _texts(tokenizer: object, rows: Sequence[Sequence[int]]) -> tuple[tuple[str, ...], ...]:
    return tuple(_pieces(tokenizer, row) for row in rows)


def _pieces(tokenizer: object, ids: Sequence[int]) -> tuple[str, ...]:
    """Each token as the text it decodes to (one token at a time)."""
    return tuple(tokenizer.decode([i]) for i in ids)  # type: ignore[attr-defined]
