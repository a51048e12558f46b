"""A saved direction's corpus view (the scan's projection pseudo-unit) against independent
routes: every scored token's projection computed by hand from Hugging Face's own forward (a
forward hook on the block, dotted with the vector in float64) on two families; the top and
bottom contexts, moments, fraction positive, quantiles and histogram against numpy over those
hand projections; the work folder keyed by the vector; the card's text, JSON and HTML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import lazarus
from lazarus.analyses.examples_plan import plan_examples
from lazarus.analyses.options import ExamplesOptions
from lazarus.cli.main import main
from lazarus.io.directions import Direction, save_direction
from lazarus.render.card import render_card
from lazarus.render.card_html import render_card_html

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "big",
         "red", "house"]
WINDOW = 24
LAYER = 1
KEEP = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Documents of exactly WINDOW characters (one token each): every window is a document."""
    rng = np.random.default_rng(2)
    lines = [" ".join(rng.choice(WORDS, size=12))[:WINDOW].ljust(WINDOW, ".")
             for _ in range(14)]
    path = tmp_path_factory.mktemp("dircorpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _vector(width: int, seed: int) -> np.ndarray:
    """A vector that is not unit norm: the values are the raw dot product with it."""
    return (3.0 * np.random.default_rng(seed).normal(size=width)).astype(np.float32)


def _hand_projections(folder: Path, arch: str, documents: list[str],
                      vector: np.ndarray) -> np.ndarray:
    """float64 [documents, WINDOW]: each text token's block-LAYER output (resid_post) from HF's
    forward, read by a hook of the test's own, dotted with the vector in float64."""
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    block = hf.transformer.h[LAYER] if arch == "gpt2" else hf.model.layers[LAYER]
    seen = []
    handle = block.register_forward_hook(
        lambda module, args, output: seen.append(output[0] if isinstance(output, tuple)
                                                 else output))
    rows = []
    try:
        for text in documents:
            ids = tokenizer(text)["input_ids"]
            bare = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert len(bare) == WINDOW
            seen.clear()
            with torch.no_grad():
                hf(input_ids=torch.tensor([ids]))
            hidden = seen[0][0].double().numpy()[len(ids) - WINDOW:]  # the text's tokens
            rows.append(hidden @ vector.astype(np.float64))
    finally:
        handle.remove()
    return np.array(rows)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_direction_corpus_view_equals_the_hand_projection(tiny_model_dirs, corpus, tmp_path,
                                                          arch):
    folder = tiny_model_dirs[arch]
    model = lazarus.load(str(folder))
    vector = _vector(model.hidden_size, 5)
    direction = Direction(vector, layer=LAYER, site="resid_post")
    result = model.card(LAYER, direction=direction, corpus=corpus, window=WINDOW,
                        examples=KEEP, work_dir=str(tmp_path))
    view = result.units[0].corpus
    assert view is not None
    documents = Path(corpus).read_text().splitlines()
    hand = _hand_projections(folder, arch, documents, vector)  # [documents, WINDOW]
    flat = np.sort(hand.reshape(-1))
    assert view.count == flat.size == result.corpus_tokens
    # top and bottom: the values, where they are, and every shaded token of their contexts
    np.testing.assert_allclose([c.value for c in view.top], flat[::-1][:KEEP], rtol=1e-5)
    np.testing.assert_allclose([c.value for c in view.bottom], flat[:KEEP], rtol=1e-5)
    largest = 0.0
    for context in (*view.top, *view.bottom):
        first = context.position - context.focus
        expected = hand[context.document, first:first + len(context.values)]
        np.testing.assert_allclose(context.values, expected, rtol=1e-5, atol=1e-5)
        assert context.value == pytest.approx(hand[context.document, context.position],
                                              rel=1e-5)
        largest = max(largest, float(np.abs(np.array(context.values) - expected).max()))
    # moments and the fraction positive: exact up to float32 rounding
    assert view.mean == pytest.approx(flat.mean(), rel=1e-5, abs=1e-6)
    assert view.std == pytest.approx(flat.std(), rel=1e-5)
    assert (view.min, view.max) == pytest.approx((flat[0], flat[-1]), rel=1e-6)
    assert view.fraction_active == pytest.approx((flat > 0).mean())
    # quantiles: the sketch's, within its 0.78% relative bucket width, at the same rank
    for q, value in view.quantiles:
        exact = flat[int(np.floor(q * (flat.size - 1)))]
        assert abs(value - exact) <= 0.0079 * abs(exact) + 1e-4, (q, value, exact)
    # the histogram: equal bins from min to max; a value moves bins only within its bucket
    edges = np.linspace(flat[0], flat[-1], len(view.histogram_counts) + 1)
    np.testing.assert_allclose(view.histogram_edges, edges, rtol=1e-5, atol=1e-6)
    counts, _ = np.histogram(flat, edges)
    near = [int((np.abs(flat - e) <= 0.0079 * np.abs(flat)).sum()) for e in edges[1:-1]]
    movable = np.array([0, *near]) + np.array([*near, 0])  # near either of a bin's inner edges
    assert sum(view.histogram_counts) == flat.size
    assert np.all(np.abs(np.array(view.histogram_counts) - counts) <= movable), (
        view.histogram_counts, counts.tolist(), movable.tolist())
    print(arch, "largest |shaded - hand|", largest, "counts", list(view.histogram_counts),
          "numpy", counts.tolist())


def test_a_direction_s_projection_has_a_work_folder_of_its_own(llama_dir, corpus, tmp_path):
    model = lazarus.load(str(llama_dir))
    one, two = _vector(model.hidden_size, 1), _vector(model.hidden_size, 2)
    scaled = one * 2  # the same line, another length: other values, another folder

    def folder(vector: np.ndarray, **options) -> Path:
        options = {"layer": LAYER, "window": WINDOW, "work_dir": str(tmp_path),
                   "direction": Direction(vector), "projection": True, **options}
        return plan_examples(model, corpus, ExamplesOptions(**options)).folder

    base = folder(one)
    assert folder(one.copy()) == base
    assert folder(two) != base
    assert folder(scaled) != base
    assert folder(one, projection=False) != base  # its top neurons are another scan
    scan = model.examples(corpus, LAYER, direction=Direction(two), projection=True,
                          window=WINDOW, examples=2, work_dir=str(tmp_path))
    settings = json.loads((Path(scan.work_dir) / "settings.json").read_text())
    assert settings["direction"].startswith("sha256:") and settings["neurons"] is None
    assert scan.neuron_ids() == (0,) and "projection" in scan.neuron_choice


def test_direction_card_text_json_and_html_show_the_corpus_view(llama_dir, corpus, tmp_path,
                                                                capsys):
    model = lazarus.load(str(llama_dir))
    vector = _vector(model.hidden_size, 7)
    path = tmp_path / "d.npz"
    save_direction(str(path), Direction(vector, layer=LAYER, site="resid_post"))
    base = ["introspect", "card", "-m", str(llama_dir), "-l", str(LAYER), "--corpus", corpus,
            "--window", str(WINDOW), "--examples", "2", "--work-dir", str(tmp_path / "w")]
    assert main([*base, "--from-direction", str(path), "-o", str(tmp_path / "d.json")]) == 0
    text = capsys.readouterr().out
    assert main([*base, "-n", "3", "-o", str(tmp_path / "n.json")]) == 0
    capsys.readouterr()
    direction = json.loads((tmp_path / "d.json").read_text())["units"][0]
    neuron = json.loads((tmp_path / "n.json").read_text())["units"][0]
    assert direction["kind"] == "direction" and direction["corpus"] is not None
    assert set(direction["corpus"]) == set(neuron["corpus"])
    assert len(direction["corpus"]["top"]) == 2 and direction["corpus"]["top"][0]["values"]
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    said = [n for n in direction["notes"] if "dot product" in n]
    assert len(said) == 1 and f"norm {norm:.4g}" in said[0] and "as stored" in said[0]
    top = direction["corpus"]["top"][0]
    assert "corpus  mean" in text and "top 2" in text and "bottom 2" in text
    assert f"{top['value']:.3f}" in text and said[0] in " ".join(text.split())
    assert not any("no corpus view" in n for n in direction["notes"])
    result = model.card(LAYER, direction=str(path), corpus=corpus, window=WINDOW, examples=2,
                        work_dir=str(tmp_path / "w"))
    page = render_card_html(result)
    assert '<div class="view corpus">' in page and '<table class="top">' in page
    assert render_card(result).count("histogram") == 1


def test_examples_projection_cli_equals_the_hand_projection_and_refuses_alone(
        llama_dir, corpus, tmp_path, capsys):
    vector = _vector(lazarus.load(str(llama_dir)).hidden_size, 9)
    path = tmp_path / "d.npz"
    save_direction(str(path), Direction(vector, layer=LAYER, site="resid_post"))
    base = ["introspect", "examples", "-m", str(llama_dir), "-l", str(LAYER), "--corpus", corpus,
            "--window", str(WINDOW), "--examples", "2", "--work-dir", str(tmp_path / "w")]
    out = tmp_path / "e.json"
    assert main([*base, "--from-direction", str(path), "--projection", "-o", str(out)]) == 0
    assert "dot product with the direction's vector as stored" in capsys.readouterr().out
    document = json.loads(out.read_text())
    hand = _hand_projections(llama_dir, "llama", Path(corpus).read_text().splitlines(), vector)
    flat = np.sort(hand.reshape(-1))
    (unit,) = document["neurons"]
    np.testing.assert_allclose([e["value"] for e in unit["top"]], flat[::-1][:2], rtol=1e-5)
    for example in unit["top"]:
        assert example["value"] == pytest.approx(hand[example["doc"], example["token"]],
                                                 rel=1e-5)
    for bad, message in ((["--projection"], "give --from-direction FILE"),
                         (["--from-direction", str(path), "--projection", "--top-k", "2"],
                          "choose one")):
        assert main([*base, *bad]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.integration
def test_ray_projection_equals_one_process(llama_dir, corpus, tmp_path):
    """The direction reaches Ray's actors (through the settings) and they compute the same
    projection, bit for bit."""
    pytest.importorskip("ray.data")
    import ray

    model = lazarus.load(str(llama_dir))
    direction = Direction(_vector(model.hidden_size, 11))
    settings = {"direction": direction, "projection": True, "examples": 3, "window": WINDOW,
                "shard_windows": 3}
    alone = model.examples(corpus, LAYER, work_dir=str(tmp_path / "a"), **settings)
    try:
        spread = lazarus.load(str(llama_dir)).examples(
            corpus, LAYER, work_dir=str(tmp_path / "b"), ray=True, ray_workers=2, **settings)
    finally:
        ray.shutdown()
    assert sorted(Path(spread.work_dir).glob("shard-*.parquet"))
    first, second = alone.to_json(), spread.to_json()
    assert first.pop("work_dir") != second.pop("work_dir")
    assert first == second
