"""A file of clean/corrupted pairs: one pair per line, tab-separated,
`clean<TAB>corrupted<TAB>answer<TAB>wrong` (the wrong text may be left out on every line, for
the logprob and kl metrics). Blank lines are skipped; a line with another number of fields is
refused, naming the line."""

from __future__ import annotations

from dataclasses import dataclass

from lazarus.errors import LazarusError
from lazarus.io.files import read_lines


@dataclass(frozen=True)
class PairFile:
    clean: list[str]
    corrupt: list[str]
    answers: list[str]
    wrongs: list[str] | None


def read_pairs(path: str) -> PairFile:
    rows = []
    for number, line in read_lines(path, "--pairs"):
        fields = line.split("\t")
        if len(fields) not in (3, 4) or not all(field.strip() for field in fields):
            raise LazarusError(f"line {number} of {path} has {len(fields)} tab-separated fields "
                               "(write clean<TAB>corrupted<TAB>answer<TAB>wrong, each "
                               "non-empty; the wrong text may be left out on every line)")
        rows.append(fields)
    if not rows:
        raise LazarusError(f"{path} has no pairs (write one clean<TAB>corrupted<TAB>answer"
                           "<TAB>wrong per line)")
    if len({len(row) for row in rows}) != 1:
        raise LazarusError(f"some lines of {path} have a wrong text and some do not (give it "
                           "on every line, or on none)")
    columns = list(zip(*rows, strict=True))
    return PairFile(list(columns[0]), list(columns[1]), list(columns[2]),
                    list(columns[3]) if len(columns) == 4 else None)
