"""Identical prompts, found once for every analysis whose statistics count prompts: a prompt is
one sample however often it is listed.

Listed twice, a prompt would be two rows that are one observation: its copies would land in the
training and the held-out fold together, a shuffle could split copies that the real labelling
keeps together, and every test would count it twice. So copies are merged into one (the
analyses say so through their `notify`), and refused where merging cannot be right: one prompt
under two labels, or in both classes of a probe.

Identical means the same text, character for character: the activation cache keys a row by the
exact UTF-8 text and `engine.collect` runs each exact text once, so the prompts merged here are
exactly those that give the same activations. "2+3=" and "2+3= " tokenize differently and stay
two prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lazarus.errors import LazarusError
from lazarus.text import plural, shorten

SHOWN = 3  # repeated prompts named in a note; the rest are counted


@dataclass(frozen=True)
class Distinct:
    """Prompts as given, each once: in the order first given, with the label of each (None:
    unlabelled) and how many times it was given."""

    prompts: tuple[str, ...]
    labels: tuple[str, ...] | None
    copies: tuple[int, ...]

    @property
    def given(self) -> int:
        return sum(self.copies)

    @property
    def merged(self) -> int:
        """Copies merged away: prompts given minus distinct prompts."""
        return self.given - len(self.prompts)

    def note(self, what: str = "prompts") -> str | None:
        """What was merged, naming the first few repeated prompts; None when nothing was."""
        if not self.merged:
            return None
        repeated = [(prompt, times) for prompt, times in zip(self.prompts, self.copies,
                                                             strict=True) if times > 1]
        named = [f"{quoted(prompt)} ×{times}" for prompt, times in repeated[:SHOWN]]
        if len(repeated) > SHOWN:
            named.append(f"{plural(len(repeated) - SHOWN, 'more prompt')}")
        return (f"{self.given} {what} given, {len(self.prompts)} distinct: merged "
                f"{plural(self.merged, 'copy', 'copies')} ({', '.join(named)}), since a "
                "prompt is one sample however often it is listed")


def quoted(prompt: str) -> str:
    """A prompt in a one-line message: shortened, quoted, its line breaks escaped."""
    return repr(shorten(prompt, mark="…"))


def merge(prompts: Sequence[str], labels: Sequence[str] | None = None,
          option: str = "labels") -> Distinct:
    """Each prompt once, with its label; a prompt given under two labels is refused (`option`
    names the labels' option in the message)."""
    if labels is not None and len(labels) != len(prompts):
        raise ValueError("one label per prompt is needed")
    first: dict[str, int] = {}  # prompt -> where it was first given
    copies: dict[str, int] = {}
    for index, prompt in enumerate(prompts):
        if prompt not in first:
            first[prompt], copies[prompt] = index, 1
            continue
        copies[prompt] += 1
        if labels is not None and labels[index] != labels[first[prompt]]:
            where = first[prompt]
            raise LazarusError(
                f"prompt {quoted(prompt)} is given under two labels, {labels[where]!r} (prompt "
                f"{where + 1}) and {labels[index]!r} (prompt {index + 1}): a prompt is one "
                f"sample with one label (fix --{option}, or remove one of the copies)")
    kept = tuple(first)
    return Distinct(kept, None if labels is None else tuple(labels[first[p]] for p in kept),
                    tuple(copies[p] for p in kept))


def merge_classes(class_a: Sequence[str], class_b: Sequence[str], label_a: str,
                  label_b: str) -> tuple[Distinct, int]:
    """The prompts of both classes, each once, class A first, and how many are class A's; a
    prompt in both classes is refused, since no probe can tell a prompt from itself."""
    in_b = {prompt: index for index, prompt in reversed(list(enumerate(class_b)))}
    for index, prompt in enumerate(class_a):
        if prompt in in_b:
            raise LazarusError(
                f"prompt {quoted(prompt)} is in both classes, {label_a!r} (--class-a prompt "
                f"{index + 1}) and {label_b!r} (--class-b prompt {in_b[prompt] + 1}): no probe "
                "can tell a prompt from itself (keep it in one class only)")
    a, b = merge(class_a), merge(class_b)
    return Distinct((*a.prompts, *b.prompts), None, (*a.copies, *b.copies)), len(a.prompts)


def in_sample(prompts: Sequence[str], training: Sequence[str]) -> tuple[bool, ...]:
    """Which of `prompts` are also training prompts: a fit has seen those, so they are not
    held out."""
    seen = set(training)
    return tuple(prompt in seen for prompt in prompts)

