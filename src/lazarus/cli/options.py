"""The options several commands share, built in one place so that they read the same
everywhere: the model and how it loads, the site and token position, and `Once`, the action
for an option that may be given once."""

from __future__ import annotations

import argparse

from lazarus.engine.model_info import DEMO_MODEL
from lazarus.engine.placement import DEVICES, DTYPES
from lazarus.engine.sites import SITE_HELP
from lazarus.text import real_number, whole_number


def whole(text: str) -> int:
    """argparse's type for a count: ASCII digits only (`int` also reads '\u0663')."""
    try:
        return whole_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (write it in "
                                         "digits 0-9, e.g. 10)") from None


def real(text: str) -> float:
    """argparse's type for a number: ASCII only (`float` also reads '\u0663')."""
    try:
        return real_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (write it in digits 0-9, "
                                         "e.g. 0.5)") from None


class Once(argparse.Action):
    """An option that may be given once: a second -l is a mistake, not a silent override."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        if getattr(namespace, f"_{self.dest}_seen", False):
            example = {"layer": "-l 0,2,5-7", "neurons": "-n 808,1190"}.get(self.dest)
            parser.error(f"{option_string} was given twice (give it once"
                         + (f", with every value in it, e.g. {example})" if example else ")"))
        setattr(namespace, f"_{self.dest}_seen", True)
        setattr(namespace, self.dest, values)


def add_site_options(parser: argparse.ArgumentParser, probe: bool = False) -> None:
    sites = "; ".join(f"{name}: {text}" for name, text in SITE_HELP.items())
    parser.add_argument("--site", choices=tuple(SITE_HELP), action=Once,
                        help=f"what to read in each block ({sites})")
    positions = "last (default), first, an index (negative from the end), mean"
    parser.add_argument("--position", action=Once,
                        help=f"which token of each prompt: {positions}"
                             + ("" if probe else ", or all (every token, shown as strips)"))


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True,
                        help=f"Hugging Face model ID, local folder, or {DEMO_MODEL}")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where to run (default auto: cuda, then mps, then cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="weights' precision (default auto: the checkpoint's on a GPU, "
                             "float32 on CPU)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model's own Python code from the Hub (off by default)")
    parser.add_argument("--device-map", choices=("auto",), default=None,
                        help="spread a big model over the GPUs / offload to CPU (needs "
                             "accelerate)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the activation cache")
