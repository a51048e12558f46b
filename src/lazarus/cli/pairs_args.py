"""The arguments `patch` and `attribute` share: the pairs (on the command line, as
`prompt:answer` items, or from a file) and the metric; and the fields of `PairOptions` they
give."""

from __future__ import annotations

import argparse

from lazarus.cli.options import Once
from lazarus.engine.pair_terms import METRIC_HELP, SCALE
from lazarus.errors import LazarusError
from lazarus.io import inputs
from lazarus.io.pairs import read_pairs


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", metavar="PROMPTS",
                        help="prompts whose run gives the answer, pipe-separated or @file.txt "
                             "(or 'prompt:answer' items; a ':' in a prompt is written '\\:', "
                             "or give --answer)")
    parser.add_argument("--corrupt", metavar="PROMPTS",
                        help="as many prompts, each as long in tokens as its clean one, whose "
                             "run does not (or 'prompt:wrong' items)")
    parser.add_argument("--answer", metavar="TEXT",
                        help="the clean run's answer: one for every pair, or one per pair "
                             "(pipe-separated)")
    parser.add_argument("--wrong", metavar="TEXT",
                        help="the competing answer the corrupted run favours (likewise)")
    parser.add_argument("--pairs", metavar="FILE.tsv",
                        help="pairs from a file instead: clean<TAB>corrupted<TAB>answer<TAB>"
                             "wrong per line")
    parser.add_argument("-l", "--layer", action=Once,
                        help="layer(s): one, a list and ranges (0,2,5-7), or all (default)")
    metrics = "; ".join(f"{name}: {text}" for name, text in METRIC_HELP.items())
    parser.add_argument("--metric", choices=tuple(METRIC_HELP),
                        help=f"what a run is scored by (default logit_diff; {metrics}), "
                             f"normalised so that {SCALE}")


def pair_fields(args: argparse.Namespace) -> dict[str, object]:
    """`PairOptions`' fields from the arguments (None where not given: the default)."""
    if args.pairs is not None:
        given = [name for name in ("clean", "corrupt", "answer", "wrong")
                 if getattr(args, name) is not None]
        if given:
            raise LazarusError(f"--pairs does not go with --{' and --'.join(given)} (give the "
                               "pairs in the file, or on the command line)")
        pairs = read_pairs(args.pairs)
        return {"clean": pairs.clean, "corrupt": pairs.corrupt, "answers": pairs.answers,
                "wrongs": pairs.wrongs, "metric": args.metric}
    if args.clean is None or args.corrupt is None:
        raise LazarusError("give the pairs: --clean and --corrupt prompts (or --pairs FILE.tsv)")
    # With --answer (--wrong) the prompts are whole, a ':' in them theirs ("Q: 2+2=")
    clean, answers = inputs.split_answers(inputs.parse_prompts(args.clean, "clean"),
                                          split=args.answer is None)
    corrupt, wrongs = inputs.split_answers(inputs.parse_prompts(args.corrupt, "corrupt"),
                                           split=args.wrong is None)
    if args.answer is not None:
        answers = inputs.parse_list(args.answer, "answer", "answer")
    if args.wrong is not None:
        wrongs = inputs.parse_list(args.wrong, "wrong", "wrong text")
    if answers is None:
        raise LazarusError("give the answer: --answer TEXT, or 'prompt:answer' clean prompts")
    return {"clean": clean, "corrupt": corrupt, "answers": answers, "wrongs": wrongs,
            "metric": args.metric}
