"""The run both pair commands (`patch`, `attribute`) share, between the parsed arguments and
the rendered report: output paths checked before any model is looked at, then the analysis,
the files (-o, --plot) written before the report, so that a closed pipe cannot lose them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from lazarus.cli.common import (
    check_extension,
    check_outputs,
    inputs_of,
    show_report,
    write_output,
)
from lazarus.cli.keep_alive import run_analysis
from lazarus.cli.output import ProgressBar

PAIR_INPUTS = ("clean", "corrupt", "answer", "wrong", "pairs")  # the files a run may read


def run_pairs(args: argparse.Namespace, options: Any, render: Callable[[Any], str],
              doing: str, *extensions: str) -> int:
    """Check the outputs (`-o` takes `extensions`), run the analysis of `options.command`
    (on the keep-alive server or in process) with a progress bar saying `doing`, write the
    files, then show `render(result)`."""
    check_outputs({"--output": args.output, "--plot": args.plot}, inputs_of(args, *PAIR_INPUTS))
    check_extension("--output", args.output, *extensions)
    bar = ProgressBar(doing)
    result = run_analysis(args, options.command, options,
                          progress=lambda done, total: bar(done, total))
    report = render(result)
    write_output(args.output, result.to_json(), result.to_csv() if ".csv" in extensions
                 else None)
    if args.plot is not None:
        result.plot(args.plot)
    show_report(report, args.output, args.plot)
    return 0
