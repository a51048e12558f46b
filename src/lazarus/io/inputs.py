"""Parsing the command line's lists: prompts, labels, neuron ids; and what a script may give
as neuron ids besides a list (`NeuronIds`).

Everything here is cheap and runs before a model loads, so that mistakes fail fast.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from lazarus.errors import LazarusError, PromptError
from lazarus.io.files import read_lines
from lazarus.text import plural, whole_number


def check_utf8(value: str, option: str) -> None:
    """Refuse an argument that is not UTF-8 text.

    Python hands undecodable argv bytes over as lone surrogates ('\\udcff'), which no
    tokenizer, JSON file or terminal can take; a non-UTF-8 file name is refused the same way.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise LazarusError(
            f"{option} is not valid UTF-8 (character {err.start + 1} is a byte of another "
            "encoding; give UTF-8 text, or rename the file to a UTF-8 name)"
        ) from None


def file_of(value: str) -> str | None:
    """The file an `@file` list argument reads, else None (`a|b` and `@@literal` read none)."""
    if value.startswith("@") and not value.startswith("@@"):
        return value[1:]
    return None


class Items(list[str]):
    """A parsed list that remembers where each item came from, so that a message can name it:
    `test prompt 1 of 2 (line 3 of tests.txt)`."""

    def __init__(self, items: list[str], option: str, noun: str, path: str | None = None,
                 lines: list[int] | None = None) -> None:
        super().__init__(items)
        self.option, self.noun, self.path, self.lines = option, noun, path, lines

    def where(self, index: int) -> str:
        name = self.noun if self.option in ("prompts", f"{self.noun}s") else \
            f"{self.option} {self.noun}"
        place = f" (line {self.lines[index]} of {self.path})" if self.lines is not None else ""
        return f"{name} {index + 1} of {len(self)}{place}"


def parse_list(value: str, option: str, noun: str) -> Items:
    """`a|b|c` or `@file.txt` (one item per line, blank lines skipped); `@@…` is a literal `@…`."""
    path = file_of(value)
    lines = None
    if path is not None:
        numbered = read_lines(path)
        items = [line for _number, line in numbered]
        lines = [number for number, _line in numbered]
        source = f"file {path}"
    else:
        items = (value[1:] if value.startswith("@@") else value).split("|")
        source = f"--{option}"
    if not items or all(not item.strip() for item in items):
        raise LazarusError(f"{source} holds no {noun}s (give at least one, e.g. 'a|b')")
    for position, item in enumerate(items, start=1):
        if not item.strip():
            raise LazarusError(
                f"{noun} {position} of {len(items)} in {source} is empty "
                "(remove the extra '|' or fill it in)"
            )
    return Items(items, option, noun, path, lines)


@contextmanager
def naming_prompts(*lists: list[str] | None) -> Iterator[None]:
    """Within the block, a `PromptError` about a prompt of these lists names it by where it
    came from (`Items.where`) rather than by its text."""
    try:
        yield
    except PromptError as err:
        for items in lists:
            if isinstance(items, Items) and err.prompt in items:
                place = items.where(items.index(err.prompt))
                raise LazarusError(f"{place} {err.problem}") from None
        raise


def parse_prompts(value: str, option: str = "prompts") -> list[str]:
    return parse_list(value, option, "prompt")


def split_answers(items: Sequence[str],
                  split: bool = True) -> tuple[list[str], list[str] | None]:
    """`prompt:answer` items (split at the last ':' not written '\\:'), or bare prompts when
    no item has one; `split=False` (the answers given by an option): every item a whole prompt.
    A ':' written '\\:' is a ':' of the prompt ("Q\\: 2+2=:4")."""
    parts = [_split_item(item) if split else (_unescaped(item), None) for item in items]
    with_answer = [answer is not None for _, answer in parts]
    if not any(with_answer):
        return [prompt for prompt, _ in parts], None
    if not all(with_answer):
        first = with_answer.index(False) + 1
        raise LazarusError(f"prompt {first} has no ':answer' while others do (give every "
                           "prompt an answer, as '45*45=:2025', or none; a ':' inside a prompt "
                           "is written '\\:')")
    for prompt, answer in parts:
        if not prompt:
            raise LazarusError(f"'{prompt}:{answer}' has no prompt before the ':'")
    return [prompt for prompt, _ in parts], [answer or "" for _, answer in parts]


def _split_item(item: str) -> tuple[str, str | None]:
    """(prompt, answer) at the last ':' not written '\\:'; (item, None) without one."""
    at = len(item) - 1
    while at >= 0 and not (item[at] == ":" and (at == 0 or item[at - 1] != "\\")):
        at -= 1
    if at < 0:
        return _unescaped(item), None
    return _unescaped(item[:at]), _unescaped(item[at + 1:])


def _unescaped(text: str) -> str:
    return text.replace("\\:", ":")


def parse_labels(value: str, prompt_count: int, option: str = "labels") -> list[str]:
    labels = parse_list(value, option, "label")
    check_label_count(len(labels), prompt_count, option)
    return [label.strip() for label in labels]


def check_label_count(labels: int, prompts: int, option: str = "labels") -> None:
    """One label per prompt, or a one-line error that counts both."""
    if labels != prompts:
        where = f" in --{option}" if option != "labels" else ""
        noun = "test prompt" if option == "test-labels" else "prompt"
        raise LazarusError(f"got {counted(labels, 'label')}{where} for {counted(prompts, noun)} "
                           "(give one label per prompt, in the same order)")


def counted(count: int, noun: str) -> str:
    """`1 label`, `3 labels`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


@runtime_checkable
class NeuronIds(Protocol):
    """Anything that names neurons (a neurons result, an examples result): taken wherever
    neuron ids are (`model.ablate(..., neurons=result)`). A method, not a `neurons` attribute:
    several results hold per-neuron records, not ids, under that name."""

    def neuron_ids(self) -> Sequence[int]: ...


def parse_neurons(value: str) -> list[int]:
    """Comma-separated neuron ids, e.g. `808,1190`; duplicates are an error."""
    ids: list[int] = []
    seen: set[int] = set()
    for part in value.split(","):
        text = part.strip()
        try:
            neuron = whole_number(text)
        except ValueError:
            raise LazarusError(
                f"neuron id {text!r} is not a whole number (use e.g. --neurons 808,1190)"
            ) from None
        if neuron < 0:
            raise LazarusError(f"neuron id {neuron} is negative (ids count from 0)")
        if neuron in seen:
            raise LazarusError(f"neuron {neuron} is listed twice in --neurons (list each once)")
        ids.append(neuron)
        seen.add(neuron)
    return ids


def resolve_layer(layer: int, layer_count: int) -> int:
    """A layer index, negative counting from the end, checked against the model's depth."""
    if not -layer_count <= layer < layer_count:
        raise LazarusError(
            f"layer {layer} is out of range: this model has {plural(layer_count, 'layer')} "
            f"(use 0 to {layer_count - 1}, or -1 to -{layer_count} from the end)"
        )
    return layer % layer_count


def parse_layers(text: str, layer_count: int) -> tuple[int, ...]:
    """`3`, `-1`, `0,2,5-7` or `all`: layers in the order given, each resolved and listed once.

    A range `a-b` includes both ends; negative layers count from the end (a range of them is
    written with spaces or commas around it, e.g. `-2`, or `0,-1`)."""
    value = text.strip()
    if value == "all":
        return tuple(range(layer_count))
    layers: list[int] = []
    for part in value.split(","):
        item = part.strip()
        if item == "all":
            raise LazarusError("'all' stands alone in -l (give -l all, or a list such as 0,2)")
        try:
            if "-" in item[1:]:
                cut = item.index("-", 1)
                first = resolve_layer(whole_number(item[:cut]), layer_count)
                last = resolve_layer(whole_number(item[cut + 1:]), layer_count)
                if first > last:
                    raise LazarusError(f"layer range {item!r} runs backwards (write it low-high, "
                                       "e.g. 2-5)")
                numbers = list(range(first, last + 1))
            else:
                numbers = [whole_number(item)]
        except ValueError:
            raise LazarusError(f"layer {item!r} is not a layer number, a range or 'all' "
                               "(e.g. -l 3, -l 0,2,5-7, -l all)") from None
        for number in numbers:
            layer = resolve_layer(number, layer_count)
            if layer in layers:
                raise LazarusError(f"layer {layer} is listed twice in -l (list each once)")
            layers.append(layer)
    return tuple(layers)
