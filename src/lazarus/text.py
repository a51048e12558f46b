"""Small text helpers shared by the renderers and the messages: banners, plurals, values cut
short, one-line prompts, terminal widths."""

from __future__ import annotations

import math
import re
import reprlib
import unicodedata
from numbers import Integral, Real
from typing import Any

RULE = "=" * 80
PROMPT_WIDTH = 20
_WHOLE = re.compile(r"[+-]?[0-9]+")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`count` and the noun that goes with it: "1 token", "0 tokens", "2 tokens"; `nouns` for
    an irregular plural (plural(2, "matrix", "matrices"))."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def agree(count: int, one: str, many: str) -> str:
    """The word that agrees with `count`: agree(1, "was", "were") == "was"."""
    return one if count == 1 else many


def shorten(text: str, limit: int = 40, mark: str = "...") -> str:
    """`text` if it has at most `limit` characters, else its start and `mark`, `limit` long
    in all: a value quoted in a one-line message stays short."""
    return text if len(text) <= limit else text[:limit - len(mark)] + mark


def shown(value: object, limit: int = 40) -> str:
    """A value as a script wrote it (its repr), cut short for a message; through reprlib, so a
    huge list is not written out in full first, and a repr that fails is replaced."""
    return shorten(reprlib.repr(value), limit)


def whole_number(text: str) -> int:
    """`int(text)` for ASCII digits only: `int` also reads other scripts' digits ('\u0663', an
    Arabic-Indic three) and underscores, which a user never means as a number. ValueError else."""
    value = text.strip()
    if not _WHOLE.fullmatch(value):
        raise ValueError(text)
    return int(value)


def real_number(text: str) -> float:
    """`float(text)` for ASCII text only (`float` also reads other scripts' digits)."""
    if not text.isascii():
        raise ValueError(text)
    return float(text)


def p_shown(value: float, text: str, alpha: float) -> str:
    """`text`, a p-value rounded for display, with more decimals where the rounding took a p
    below `alpha` up to it (0.0499 is not shown as 0.050 beside "p < 0.05")."""
    decimals = 3
    while value < alpha <= float(text) and decimals < 9:
        decimals += 1
        text = f"{value:.{decimals}f}"
    return text


def banner(title: str) -> list[str]:
    return [RULE, title, RULE]


def escape(text: str) -> str:
    """Show newlines, tabs and other non-printable characters (terminal escape sequences, bidi
    overrides, lone surrogates) as `\\x1b`-style escapes, so a row stays one harmless line."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def terminal_safe(text: str, keep_color: bool = False) -> str:
    """`escape` every line of `text`, keeping its line breaks.

    The last step before anything reaches a terminal: prompts, labels and a direction file's
    texts come from files, and an escape sequence in them must never reach the terminal raw.
    Printable Unicode is kept as it is. `keep_color` lets colour codes (`ESC[…m`, which can
    only set colours) through: the renderers escape user text first, so any left are theirs.
    """
    if not keep_color:
        return "\n".join(escape(line) for line in text.split("\n"))
    parts = _COLOR.split(text)  # text, code, text, code, ...
    return "".join(part if k % 2 else terminal_safe(part) for k, part in enumerate(parts))


_COLOR = re.compile(r"(\x1b\[[0-9;]*m)")


def char_width(ch: str) -> int:
    """Terminal cells of one character: wide East Asian = 2, combining marks = 0."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def pad(text: str, width: int, right: bool = False) -> str:
    """Left-align (or `right`-align) `text` in `width` terminal cells: every table's padding,
    so a wide character or a combining mark does not shift the columns after it."""
    space = " " * max(0, width - display_width(text))
    return space + text if right else text + space


def fit_cell(text: str, width: int) -> str:
    """Escape, cut to `width` cells with a trailing '…' if longer, pad to exactly `width`."""
    text = escape(text)
    if display_width(text) > width:
        kept, used = [], 0
        for ch in text:
            used += char_width(ch)
            if used > width - 1:
                break
            kept.append(ch)
        text = "".join(kept) + "…"
    return text + " " * (width - display_width(text))


def json_number(value: float | None) -> float | None:
    """A plain float for JSON; NaN and infinities become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_plain(value: Any) -> Any:
    """`value` in plain JSON types, for `to_json`: tuples become lists, numpy scalars Python
    ones, NaN and infinities null (as `json_number`); `json.dumps` writes the rest as before."""
    if isinstance(value, dict):
        return {key: json_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_plain(item) for item in value]
    if type(value).__name__ in ("bool", "bool_"):  # Python's or numpy's
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return json_number(float(value))
    return value


def routed_share(routed: int, scored: int, expert: int | str = "the units'") -> str:
    """What an MoE expert's statistics are over, said to the user."""
    share = 100 * routed / scored if scored else 0.0
    name = f"expert {expert}" if isinstance(expert, int) else f"{expert} expert"
    return (f"statistics over the {plural(routed, 'token')} routed to {name} ({share:.1f}% of "
            f"the {plural(scored, 'scored token')}; elsewhere its units have no value)")
