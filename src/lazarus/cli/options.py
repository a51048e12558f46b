"""The options several commands share, built in one place so that they read the same
everywhere: a command's parser with its model, how the model loads, the site and token
position, and `Once`, the action for an option that may be given once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from lazarus.engine.model_info import DEMO_MODEL
from lazarus.engine.placement import DEVICES, DTYPES
from lazarus.engine.sites import SITE_HELP
from lazarus.text import real_number, whole_number

T = TypeVar("T")


def _ascii_type(parse: Callable[[str], T], kind: str, example: str) -> Callable[[str], T]:
    """argparse's type for a number read by `parse`: ASCII digits only (`int` and `float` also
    read '\u0663'), else a usage error saying how to write one."""
    def read(text: str) -> T:
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind} (write it in digits 0-9, "
                                             f"e.g. {example})") from None
    return read


whole = _ascii_type(whole_number, "a whole number", "10")  # a count
real = _ascii_type(real_number, "a number", "0.5")


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


def add_command(commands: argparse._SubParsersAction, name: str, *, help: str,
                description: str, epilog: str) -> argparse.ArgumentParser:
    """An `introspect` command's parser, its help kept as written, with -m first."""
    parser = commands.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", required=True,
                        help=f"Hugging Face model ID, local folder, or {DEMO_MODEL}")
    return parser


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


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(text: str) -> float:
    """'15m', '30s', '2h', '1d' or seconds ('900') -> seconds; '0' or 'off' -> 0."""
    value = text.strip().lower()
    if value == "off":
        return 0.0
    number, unit = (value[:-1], value[-1]) if value[-1:] in UNITS else (value, "s")
    seconds = real_number(number) * UNITS[unit]
    if not 0 <= seconds < float("inf"):
        raise ValueError(text)
    return seconds


def parse_size(text: str) -> int:
    """'8G', '500M', '1.5g' or bytes -> bytes."""
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = (value[:-1], value[-1]) if value[-1:] in ("k", "m", "g", "t") else (value, "")
    size = real_number(number) * SIZES[unit]
    if not 0 < size < float("inf"):
        raise ValueError(text)
    return int(size)


duration = _ascii_type(parse_duration, "a duration", "15m, 30s, 2h or off")
size = _ascii_type(parse_size, "a size above 0", "8G or 500M")


def add_keep_alive_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-alive", type=duration, metavar="DURATION",
                        help="compute on the keep-alive server (lazarus serve), starting it in "
                             "the background when none runs, and keep it DURATION after the "
                             "last request (e.g. 15m; off or 0: run in process; default: "
                             "$LAZARUS_KEEP_ALIVE, else use a server only when one runs)")
