"""Every JSON key the README names for the statistics of `neurons` (LABEL CORRELATION,
--auto-discover, repeated prompts) and `probe` is in the JSON those commands really write: the
README's sentences are read, their backticked names collected, and each looked up in a real
document of the demo model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lazarus

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = ["cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock"]
POOL = [f"{word} {i}" for i, word in enumerate(WORDS)]

NEURONS_SENTENCES = [
    "The JSON gives each neuron's `r`",  # LABEL CORRELATION and label_correlation_method
    "The JSON adds `discovery`:",  # --auto-discover
    "the JSON counts them in `merged_copies`",  # repeated prompts
]
PROBE_SENTENCES = [
    "the JSON has `merged_copies`",
    "repeated test prompts are merged too",
    "The JSON has it as `smallest_detectable`",
    "The JSON\n(`-o`) holds every training prompt's projection",
]


def sentence(anchor: str) -> str:
    """The README's sentence that holds `anchor`, from the anchor to the first full stop."""
    readme = README.read_text(encoding="utf-8")
    start = readme.index(anchor)
    return readme[start:start + re.search(r"\.(\s|$)", readme[start:]).end()]


def names(text: str) -> set[str]:
    """The backticked JSON names of `text` (`in_sample: true` names in_sample); options such
    as `--test` and marks such as `in-sample` are not names."""
    found = {code.split(":")[0].strip() for code in re.findall(r"`([^`]+)`", text)}
    return {name for name in found if re.fullmatch(r"[a-z_][a-z0-9_]*", name)}


def keys(document: object) -> set[str]:
    """Every key at any depth of a JSON document (in objects inside lists too)."""
    if isinstance(document, dict):
        return set(document).union(*(keys(value) for value in document.values()))
    if isinstance(document, list):
        return set().union(*(keys(value) for value in document))
    return set()


@pytest.fixture(scope="module")
def demo():
    return lazarus.Model("lazarus:demo", notify=lambda _: None, warn=lambda _: None)


def test_the_readme_names_only_keys_the_neurons_json_has(demo):
    prompts, labels = [*POOL, *POOL[:2]], ["x", "y"] * 5  # two copies, merged
    document = demo.neurons(prompts, layers=1, labels=labels, auto_discover=True, top_k=3,
                            permutations=50).to_json()
    assert document["merged_copies"] == 2
    for anchor in NEURONS_SENTENCES:
        named = names(sentence(anchor))
        assert named, anchor
        within = keys(document["discovery"]) | {"discovery"} if "discovery" in anchor \
            else keys(document)
        assert named <= within, (anchor, sorted(named - within))


def test_the_readme_names_only_keys_the_probe_json_has(demo):
    result = demo.probe([*POOL[:4], POOL[0]], POOL[4:], layers="0,1", permutations=20,
                        test=[POOL[0], "new one", "new one"],
                        test_labels=["class_a", "class_b", "class_b"])
    document = result.to_json()
    assert (document["merged_copies"], document["test_merged_copies"]) == (1, 1)
    for anchor in PROBE_SENTENCES:
        named = names(sentence(anchor))
        assert named, anchor
        assert named <= keys(document), (anchor, sorted(named - keys(document)))
