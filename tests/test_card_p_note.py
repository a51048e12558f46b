"""`card`'s ablation p are each unit's own test: where they are shown (text and HTML), a note
says they are uncorrected across the units on the page and gives the Bonferroni threshold."""

from __future__ import annotations

from page_tree import parse

from lazarus.render.card import render_card
from lazarus.render.card_html import render_card_html
from lazarus.results.card import Ablation, CardResult, CausalView, UnitCard


def _card(ps: list[float | None]) -> CardResult:
    units = tuple(UnitCard(
        id=f"L1 N{i}", kind="neuron", neuron=i, expert=None, expert_unit=None, weights=None,
        corpus=None, notes=(), causal=CausalView(Ablation(
            metric="next-token loss", effect=0.01 * i, windows=2, tokens=64, controls=19,
            controls_mean=0.0, controls_std=0.01, percentile=None if p is None else 50.0, p=p,
            note=None), None)) for i, p in enumerate(ps))
    return CardResult(model_id="tiny", site="mlp_post", layer=1, corpus="c.txt",
                      corpus_windows=2, corpus_tokens=64, units=units)


def test_text_says_the_p_are_uncorrected_with_the_bonferroni_threshold():
    text = render_card(_card([0.05, 0.5, 0.01, None, 0.2]))  # four units with a p
    print(text)
    head = text.split("\n\n")[0]
    assert "uncorrected across the 4 units on this page" in head
    assert "Bonferroni threshold for reference: 0.05 / 4 = 0.0125" in head
    assert text.count("(one-sided: loss rising; uncorrected, see the note at the top)") == 4
    assert "sorting" not in text  # the text keeps the units' order: only the HTML index sorts


def test_one_unit_needs_no_note():
    text = render_card(_card([0.05]))
    assert "uncorrected" not in text and "Bonferroni" not in text
    assert "p 0.05 (one-sided: loss rising)" in text
    assert "Bonferroni" not in render_card_html(_card([0.05]))


def test_html_says_it_under_the_sortable_index_and_beside_each_p():
    page = parse(render_card_html(_card([0.05, 0.5, 0.01])))
    index = [s for s in page.find("section") if s.attrs.get("id") == "index"]
    notes = index[0].find("p", "p-note")
    assert len(notes) == 1
    assert "uncorrected across the 3 units on this page" in notes[0].text()
    assert "Bonferroni threshold for reference: 0.05 / 3 = 0.0167" in notes[0].text()
    assert "the smallest of 3, which sorting puts first, is small" in notes[0].text()
    units = page.find("section", "unit")
    assert len(units) == 3
    assert all(len(unit.find("p", "p-note")) == 1 for unit in units)
