"""`prompt:answer` items: split at the last ':' not written '\\:'; with --answer or --wrong
given, the prompts on that side are whole (a ':' in them is theirs)."""

from __future__ import annotations

import argparse

import pytest

from lazarus.cli.pairs_args import pair_fields
from lazarus.errors import LazarusError
from lazarus.io.inputs import split_answers


def pairs(**given: str | None) -> argparse.Namespace:
    fields = {"clean": None, "corrupt": None, "answer": None, "wrong": None, "pairs": None,
              "metric": None}
    return argparse.Namespace(**{**fields, **given})


def test_an_escaped_colon_is_the_prompt_s():
    assert split_answers(["Q\\: 2+2=:4", "A\\:B=:5"]) == (["Q: 2+2=", "A:B="], ["4", "5"])
    assert split_answers(["Q\\: 2+2="]) == (["Q: 2+2="], None)
    assert split_answers(["45*45=:2025"]) == (["45*45="], ["2025"])


def test_items_whole_when_the_answers_come_from_an_option():
    assert split_answers(["Q: 2+2=", "x:y"], split=False) == (["Q: 2+2=", "x:y"], None)


def test_a_missing_answer_names_the_escape():
    with pytest.raises(LazarusError, match=r"prompt 2 has no ':answer'.*written '\\:'"):
        split_answers(["a=:1", "b\\:c="])


def test_answer_and_wrong_options_keep_colons_in_the_prompts():
    got = pair_fields(pairs(clean="Q: 2+2=|Q: 3+3=", corrupt="Q: 2+3=|Q: 3+4=", answer="4|6",
                            wrong="5|7"))
    assert got["clean"] == ["Q: 2+2=", "Q: 3+3="]
    assert got["corrupt"] == ["Q: 2+3=", "Q: 3+4="]
    assert (got["answers"], got["wrongs"]) == (["4", "6"], ["5", "7"])


def test_inline_answers_with_an_escaped_colon_and_a_whole_corrupt_side():
    got = pair_fields(pairs(clean="Q\\: 2+2=:4", corrupt="Q\\: 2+3=", wrong=None))
    assert (got["clean"], got["answers"]) == (["Q: 2+2="], ["4"])
    assert (got["corrupt"], got["wrongs"]) == (["Q: 2+3="], None)
