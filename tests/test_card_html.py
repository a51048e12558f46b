"""The HTML pages without a browser, read back through a parser: the `examples` page shades
every context token with the neuron's value there, equal to `capture` of the document (an
independent route), and its histogram and quantiles are the `examples` JSON's; the card
dashboard shows the JSON's numbers, keeps hostile corpus and prompt text as text (no element,
attribute or script from it), fetches nothing, and the CLI writes it or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from page_tree import Node, parse

import lazarus
from lazarus.cli.main import main
from lazarus.render.card_assets import SCRIPT
from lazarus.render.card_html import render_card_html
from lazarus.results import palette
from lazarus.text import escape

WINDOW = 32
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
LINES = ['<b>bold</b> & "q" <i>x</i>', "the cat sat on a mat", '<img src=x onerror="y()">',
         "</table></td> it ran to", "a big red house & more", "<script>x=1</script> 2+2"]


@pytest.fixture(scope="module")
def short_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lines shorter than WINDOW (one token per character): each document is one window."""
    path = tmp_path_factory.mktemp("html") / "corpus.txt"
    path.write_text("\n".join(LINES) + "\n")
    assert all(len(line) < WINDOW for line in LINES)
    return path


def _number(node: Node) -> float:
    return float(node.attrs["data-value"])


def test_examples_page_shades_every_token_by_captured_values(llama_dir, short_corpus, tmp_path,
                                                             capsys):
    neurons = [3, 50]
    common = ["introspect", "examples", "-m", str(llama_dir), "-l", "1", "--site", "mlp_post",
              "--corpus", str(short_corpus), "-n", ",".join(map(str, neurons)), "--examples",
              "3", "--window", str(WINDOW), "--work-dir", str(tmp_path / "w")]
    assert main([*common, "-o", str(tmp_path / "page.html")]) == 0
    assert main([*common, "-o", str(tmp_path / "page.json")]) == 0
    capsys.readouterr()
    document = json.loads((tmp_path / "page.json").read_text())
    page = parse((tmp_path / "page.html").read_text())
    assert page.find("script") == [] and page.find("img") == [] and page.find("b") == []
    model = lazarus.load(str(llama_dir))
    captured = model.capture(LINES, 1, site="mlp_post", position="all")
    sections = page.find("section", "neuron")
    assert [s.attrs["id"] for s in sections] == [f"neuron-{n}" for n in neurons]
    largest, shaded = 0.0, 0
    for section, expected in zip(sections, document["neurons"], strict=True):
        bars = section.find("rect", "bar")
        assert [float(b.attrs["data-lo"]) for b in bars] + [float(bars[-1].attrs["data-hi"])] \
            == expected["histogram_edges"]
        assert [int(b.attrs["data-count"]) for b in bars] == expected["histogram_counts"]
        table = section.find("table", "quantiles")[0]
        names = [th.text() for th in table.find("th")]
        assert dict(zip(names, map(_number, table.find("td")), strict=True)) \
            == expected["quantiles"]
        limit = max(abs(expected["min"]), abs(expected["max"]))
        for kind in ("top", "bottom"):
            rows = section.find("table", kind)[0].find("tr")
            assert [_number(r.find("td")[0]) for r in rows] == [e["value"]
                                                               for e in expected[kind]]
            for row, example in zip(rows, expected[kind], strict=True):
                doc, window, token = example["doc"], example["window"], example["token"]
                assert row.find("td")[2].text() == f"doc {doc}:{window}:{token}"
                assert window == 0  # one window per line: its positions are the line's
                tokens = row.find("td", "ctx")[0].elements()
                first = token - len(example["before"])  # one character per token
                values = captured.to_numpy(1)[doc][1:, expected["neuron"]][
                    first:first + len(tokens)]  # after <s>
                shown = np.array([_number(t) for t in tokens])
                np.testing.assert_allclose(shown, values, atol=1e-5)
                largest = max(largest, float(np.abs(shown - values).max()))
                assert "".join(t.text() for t in tokens) == LINES[doc][first:first + len(tokens)]
                assert [t.tag == "mark" for t in tokens] == [i == token - first
                                                             for i in range(len(tokens))]
                for t, v in zip(tokens, shown, strict=True):
                    assert f"background:{palette.hex_colour(v, limit)}" in t.attrs["style"]
                    assert t.attrs["title"] == f"{v:.6g}"
                shaded += len(tokens)
    print(f"{shaded} shaded tokens against capture: largest |difference| {largest:.2e}")


@pytest.fixture(scope="module")
def hostile_card(llama_dir, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile")
    corpus = folder / "hostile.txt"
    corpus.write_text("".join(f"{HOSTILE} {line}\n" for line in LINES))
    result = lazarus.load(str(llama_dir)).card(
        1, neurons=[3, 50, 7], corpus=str(corpus), window=WINDOW, examples=2, causal=True,
        causal_windows=2, controls=2, coefficients=[1.0], max_tokens=3, prompt=HOSTILE,
        work_dir=str(folder / "w"))
    return result, str(corpus)


def test_card_dashboard_shows_the_json_and_keeps_hostile_text_as_text(hostile_card):
    result, _ = hostile_card
    document = result.to_json()
    page = parse(render_card_html(result))
    scripts = page.find("script")
    assert [s.text() for s in scripts] == [SCRIPT]  # ours alone, and it holds no data
    for element in page.elements():
        assert element.tag not in {"img", "iframe", "object", "embed", "link", "b"}
        assert not any(name.startswith("on") for name in element.attrs), element.attrs
        assert "src" not in element.attrs
        assert (element.attrs.get("href") or "#").startswith("#"), element.attrs
    rows = page.find("table")[0].find("tbody")[0].find("tr")
    assert [r.find("a")[0].text() for r in rows] == [u["id"] for u in document["units"]]
    for row, unit in zip(rows, document["units"], strict=True):
        cells = row.find("td")
        assert _number(cells[3]) == unit["weights"]["promoted"][0]["value"]
        for cell, key in zip(cells[4:9], ("mean", "std", "min", "max", "fraction_active"),
                             strict=True):
            assert _number(cell) == unit["corpus"][key]
        assert _number(cells[9]) == unit["causal"]["ablation"]["effect"]
    sections = page.find("section", "unit")
    assert [s.attrs["id"] for s in sections] == [f"unit/{i}" for i in range(3)]
    contexts = 0
    for section, unit in zip(sections, document["units"], strict=True):
        promoted = section.find("table", "promoted")[0].find("td", "num")
        assert [_number(td) for td in promoted] == [t["value"]
                                                   for t in unit["weights"]["promoted"]]
        for kind in ("top", "bottom"):
            for row, context in zip(section.find("table", kind)[0].find("tr"),
                                    unit["corpus"][kind], strict=True):
                tokens = row.find("td", "ctx")[0].elements()
                assert [t.text() for t in tokens] == context["tokens"]
                assert [_number(t) for t in tokens] == context["values"]
                contexts += 1
        bars = section.find("rect", "bar")
        assert [int(b.attrs["data-count"]) for b in bars] \
            == unit["corpus"]["histogram"]["counts"]
        _check_zero_and_controls(section, unit)
        assert section.find("span", "prompt")[0].text() == HOSTILE  # shown as text, whole
        steering = section.find("table", "steering")[0].find("td", "text")
        assert [td.text() for td in steering] == [  # non-printables shown as escapes
            escape(run["continuation"]) or "(empty)" for run in unit["causal"]["steering"]]
    assert contexts == 3 * 2 * 2
    assert any("<" in "".join(c["tokens"]) for u in document["units"]
               for c in u["corpus"]["top"] + u["corpus"]["bottom"])


def _check_zero_and_controls(section: Node, unit: dict) -> None:
    """The histogram marks 0 where it lies between its ends; the number line of the ablation
    puts the unit's dot, the random units' band and mean and 0 where their values are, and
    says which is which."""
    edges = unit["corpus"]["histogram"]["edges"]
    svg = section.find("svg", "histogram")[0]
    zero = svg.find("line", "zero")
    if edges[0] < 0 < edges[-1]:
        width = float(svg.attrs["width"])
        assert float(zero[0].attrs["x1"]) == pytest.approx(
            width * -edges[0] / (edges[-1] - edges[0]), abs=0.06)
    else:
        assert zero == []
    a = unit["causal"]["ablation"]
    effect, mean, std = a["effect"], a["controls"]["mean"], a["controls"]["std"]
    line = section.find("svg", "controls")[0]
    lo, hi = min(effect, mean - std, 0.0), max(effect, mean + std, 0.0)

    def x(v: float) -> float:
        return 10 + 340 * (v - lo) / (hi - lo)

    assert float(line.find("circle")[0].attrs["cx"]) == pytest.approx(x(effect), abs=0.06)
    band = line.find("rect")[0]
    assert float(band.attrs["x"]) == pytest.approx(x(mean - std), abs=0.06)
    assert float(band.attrs["width"]) == pytest.approx(x(mean + std) - x(mean - std), abs=0.1)
    assert float(line.find("line", "mean")[0].attrs["x1"]) == pytest.approx(x(mean), abs=0.06)
    assert float(line.find("line", "zero")[0].attrs["x1"]) == pytest.approx(x(0.0), abs=0.06)
    notes = [p.text() for p in section.find("p", "note")]
    assert any(n.startswith("dot: the unit's loss change; grey band: the random units' mean")
               for n in notes), notes
    headers = [th.text() for th in section.find("table", "ablation")[0].find("th")]
    assert headers[-1] == "p (one-sided: loss rising)"


def test_card_cli_writes_the_dashboard_or_nothing(llama_dir, short_corpus, tmp_path, capsys):
    out = tmp_path / "card.html"
    base = ["introspect", "card", "-m", str(llama_dir), "-l", "1", "-n", "3,50"]
    assert main([*base, "--corpus", str(short_corpus), "--window", str(WINDOW), "--examples",
                 "2", "--work-dir", str(tmp_path / "w"), "-o", str(out)]) == 0
    assert capsys.readouterr().err.strip().endswith(f"saved {out}")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "http:" not in page
    assert "https:" not in page
    assert [s.attrs["data-title"] for s in parse(page).find("section", "unit")] == [
        "L1 N3", "L1 N50"]
    bad = tmp_path / "never.html"
    assert main([*base, "--causal", "-o", str(bad)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "give --corpus" in error[0]
    assert not bad.exists()
