"""Activation patching (`lazarus introspect patch`, `Model.patch`).

Oracle: the model's own forward, run one prompt at a time (no padding) by transformers, with a
forward hook written here that replaces one token's output of a block, its attention or its
MLP by the value the same hook read on the other prompt of the pair. lazarus's patched scores,
computed in padded batches that mix pairs of different lengths, must match it to float32
rounding. The normalisation's fixed points need no oracle: patching the last block's residual
at the last token gives the other run's logits exactly, and a token before the first one that
differs carries the same values in both runs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lazarus.api import Model
from lazarus.cli.main import main
from lazarus.engine.pair_terms import DIRECTIONS
from lazarus.engine.patching import BATCH
from lazarus.render.patch import render_patch
from lazarus.results.patch import PatchResult, SiteGrid
from lazarus.results.patch_plot import plot_patch
from lazarus.stats.bootstrap import normalised, ratio_interval

# Two pairs of different token lengths, so that every batch pads and some mix both lengths.
CLEAN = ["the cat sat", "a dog ran far away"]
CORRUPT = ["the cot sat", "a dog ran fur away"]
ANSWER, WRONG = "x", "q"
PATCHED = ("resid_post", "attn_out", "mlp_out")
FAMILIES = ("llama", "gpt2", "gpt_oss")


def _first(output):
    return output[0] if isinstance(output, tuple | list) else output


def _replaced(output, new):
    return (new, *output[1:]) if isinstance(output, tuple | list) else new


def _module(model, family: str, layer: int, site: str):
    block = (model.transformer.h if family == "gpt2" else model.model.layers)[layer]
    if site == "resid_post":
        return block
    if site == "attn_out":
        return block.attn if family == "gpt2" else block.self_attn
    return block.mlp


def _run(model, ids: list[int], hook=None, module=None) -> torch.Tensor:
    """Last-token logits of one unpadded prompt, with `hook` on `module` if given."""
    handle = None if hook is None else module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    finally:
        if handle is not None:
            handle.remove()


def hook_route(folder: Path, family: str, clean: list[str], corrupt: list[str], layers: int,
               span: int, noise: bool = False) -> dict[str, np.ndarray]:
    """Per site, float64 [pairs, layers, span]: the logit difference of the target run with
    (layer, site, token) taken from the source run, by a hook on the HF modules."""
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    answer = tokenizer(ANSWER, add_special_tokens=False)["input_ids"][0]
    wrong = tokenizer(WRONG, add_special_tokens=False)["input_ids"][0]
    found = {site: np.empty((len(clean), layers, span)) for site in PATCHED}
    for p, (good, bad) in enumerate(zip(clean, corrupt, strict=True)):
        source, target = (good, bad) if not noise else (bad, good)
        source_ids, target_ids = (tokenizer(t)["input_ids"] for t in (source, target))
        assert len(source_ids) == len(target_ids)
        for site in PATCHED:
            for layer in range(layers):
                module = _module(model, family, layer, site)
                kept = {}

                def read(_module, _args, output, kept=kept):
                    kept["value"] = _first(output).detach().clone()

                _run(model, source_ids, read, module)
                for column in range(span):
                    token = len(target_ids) - span + column

                    def write(_module, _args, output, token=token, kept=kept):
                        new = _first(output).clone()
                        new[:, token] = kept["value"][:, token]
                        return _replaced(output, new)

                    logits = _run(model, target_ids, write, module)
                    found[site][p, layer, column] = float(logits[answer] - logits[wrong])
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_equals_a_hook_on_the_model(tiny_model_dirs, family):
    folder = tiny_model_dirs[family]
    result = Model(str(folder)).patch(CLEAN, CORRUPT, [ANSWER], [WRONG], sites=PATCHED)
    span = len(result.positions)
    assert span == min(result.lengths) < max(result.lengths)  # aligned from the end
    rows = len(result.layers) * span  # the short pair's jobs come first (sorted by length)
    assert rows % BATCH != 0  # so one batch holds rows of both lengths
    expected = hook_route(folder, family, CLEAN, CORRUPT, len(result.layers), span)
    for site in PATCHED:
        scores = result.grid(site).scores
        difference = np.abs(scores - expected[site]).max()
        print(f"{family} {site}: max |lazarus - hook| = {difference:.2e} "
              f"(scores up to {np.abs(expected[site]).max():.2f})")
        assert np.allclose(scores, expected[site], rtol=1e-4, atol=1e-4)
        assert np.allclose(result.to_numpy(site), normalised(
            expected[site], result.clean_score, result.corrupt_score), atol=1e-4)


def test_noising_equals_a_hook_on_the_model(llama_dir):
    result = Model(str(llama_dir)).patch(CLEAN, CORRUPT, [ANSWER], [WRONG], sites=PATCHED,
                                         direction="noise", layers="1,3")
    span = len(result.positions)
    expected = hook_route(llama_dir, "llama", CLEAN, CORRUPT, 4, span, noise=True)
    for site in PATCHED:
        assert np.allclose(result.grid(site).scores, expected[site][:, [1, 3]], rtol=1e-4,
                           atol=1e-4)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_fixed_points_of_the_normalisation(tiny_model_dirs, direction):
    """The last block's residual at the last token decides the logits: patching it gives the
    source run (1 denoising, 0 noising). Tokens before the first that differs are the same in
    both runs, so patching them changes nothing (0 denoising, 1 noising), at every site."""
    result = Model(str(tiny_model_dirs["gpt2"])).patch(
        CLEAN, CORRUPT, [ANSWER], [WRONG], sites=PATCHED, direction=direction)
    source, target = (1.0, 0.0) if direction == "denoise" else (0.0, 1.0)
    last = result.grid("resid_post").values[-1, -1]
    assert last == pytest.approx(source, abs=1e-5)
    same = result.differs.index(True)  # columns before the first differing token
    assert same > 0
    for site in PATCHED:
        assert np.allclose(result.grid(site).values[:, :same], target, atol=1e-5)
    # and each pair's raw score there is its own target run's
    scores = result.grid("resid_post").scores
    target_scores = result.corrupt_score if direction == "denoise" else result.clean_score
    assert np.allclose(scores[:, :, 0], target_scores[:, None], atol=1e-4)


def test_one_pair_has_no_interval_and_several_do():
    one = ratio_interval(np.ones((1, 2, 3)), np.array([2.0]), np.array([0.0]), seed=0)
    assert one is None
    rng = np.random.default_rng(0)
    low, high = ratio_interval(rng.normal(size=(6, 2, 3)), rng.normal(5, 1, 6),
                               rng.normal(0, 1, 6), seed=0)
    assert low.shape == high.shape == (2, 3)
    assert np.all(low < high)


def test_bootstrap_interval_covers_the_ratio_of_population_means():
    """Seeded simulation: 20 pairs of normal scores, patched mean 0.5 of the way from the
    corrupted mean (0) to the clean (4); the percentile interval should cover 0.5 about 95% of
    the time (coverage of the bootstrap is approximate: we accept 88% to 99%)."""
    rng = np.random.default_rng(7)
    trials, covered = 300, 0
    for trial in range(trials):
        clean, corrupt = rng.normal(4, 1, 20), rng.normal(0, 1, 20)
        patched = rng.normal(2, 1, (20, 1))
        low, high = ratio_interval(patched, clean, corrupt, seed=trial, resamples=400)
        covered += bool(low[0] <= 0.5 <= high[0])
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_interval_covers_at_the_fewest_pairs_not_called_rough():
    """Seeded simulation at 6 pairs (just past `FEW_PAIRS`, where the intervals are no longer
    said to be rough), noisy patched scores: a plain percentile bootstrap covers about 85%
    there (a resample of 6 pairs shows too little of their spread); the interval must cover
    0.5, the ratio of population means, at least 90% of the time."""
    rng = np.random.default_rng(11)
    trials, covered = 300, 0
    for trial in range(trials):
        clean, corrupt = rng.normal(6, 1, 6), rng.normal(-5, 1, 6)
        patched = (corrupt + 0.5 * (clean - corrupt) + rng.normal(0, 3, 6))[:, None]
        low, high = ratio_interval(patched, clean, corrupt, seed=trial)
        covered += bool(low[0] <= 0.5 <= high[0])
    assert covered / trials >= 0.90


# --- the command ------------------------------------------------------------------------------


DEMO = ["-m", "lazarus:demo", "--clean", "23+45=", "--corrupt", "23+46=", "--answer", "68",
        "--wrong", "69"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_command_shows_token_labels_and_writes_json_csv_and_a_picture(capsys, tmp_path):
    output, table, picture = tmp_path / "p.json", tmp_path / "p.csv", tmp_path / "p.png"
    assert main(["introspect", "patch", *DEMO, "--site", "resid_post,attn_out", "-l", "0,3",
                 "-o", str(output), "--plot", str(picture)]) == 0
    report = capsys.readouterr().out
    assert "denoising: clean activations patched into the corrupted run" in report
    assert "1 = the clean run, 0 = the corrupted run" in report
    header = next(line for line in report.splitlines() if line.startswith("Layer |"))
    assert [cell.strip() for cell in header.split("|")[1:]] == [
        "<s>", "2", "3", "+", "4", "5*", "=", "6"]  # '6': the answers' shared start
    document = json.loads(output.read_text())
    assert document["tokens"] == ["<s>", "2", "3", "+", "4", "5", "=", "6"]
    assert document["differs"] == [False] * 5 + [True, False, False]
    assert document["layers"] == [0, 3]
    assert np.array(document["sites"]["attn_out"]["values"]).shape == (2, 8)
    assert document["sites"]["resid_post"]["values"][1][7] == pytest.approx(1.0, abs=1e-5)
    assert document["interval"] is None  # one pair
    width, height = png_size(picture)
    assert width > 300 and height > 300
    assert main(["introspect", "patch", *DEMO, "-o", str(table)]) == 0
    capsys.readouterr()
    lines = table.read_text().splitlines()
    assert lines[0] == "site,layer,axis,index,token,differs,value,low,high"
    assert len(lines) == 1 + 4 * 8  # every layer of the demo model x 8 positions
    site, layer, axis, index, token, differs, value, low, high = lines[1 + 5].split(",")
    assert (site, layer, axis, index, token, differs) == ("resid_post", "0", "position", "5",
                                                          "5", "True")
    assert float(value) == pytest.approx(document["sites"]["resid_post"]["values"][0][5])
    assert low == high == ""


def test_the_picture_has_the_asked_for_size(tmp_path):
    result = Model("lazarus:demo").patch(["23+45="], ["23+46="], ["68"], ["69"],
                                         sites="resid_post,mlp_out")
    plot_patch(result, str(tmp_path / "p.png"), size=(8, 5), dpi=100)
    assert png_size(tmp_path / "p.png") == (800, 500)


@pytest.mark.parametrize("argv, words", [
    (["--clean", "23+45=", "--corrupt", "23+456=", "--answer", "68", "--wrong", "69"],
     "pair 1: the clean prompt '23+45=' is 7 tokens and the corrupted '23+456=' 8 tokens"),
    ([*DEMO[2:], "--site", "resid_post,neurons"], "cannot patch the site 'neurons'"),
    (["--pairs", "{pairs}", "--clean", "23+45="], "--pairs does not go with --clean"),
    ([*DEMO[2:], "--plot", "{out}.gif"], "cannot tell the picture format"),
    (["--pairs", "{out}.tsv"], "file not found: {out}.tsv (check the path after --pairs)"),
    ([*DEMO[2:], "--site", "resid_post,"], "--site 'resid_post,' holds an empty site name"),
    ([*DEMO[2:], "-l", "9"], "layer 9 is out of range: this model has 4 layers"),
    ([*DEMO[2:], "--plot", "{folder}"], "cannot tell the picture format"),
    (["--clean", "23+45=", "--corrupt", "23+46=", "--answer", "68", "--wrong", "68"],
     "pair 1: the answer '68' and the wrong text '68' do not differ"),
    (["--clean", "23+45=", "--corrupt", "23+45=", "--answer", "68", "--wrong", "69"],
     "the clean and corrupted prompts give the same logit_diff"),
    (["--clean", "1+1=" * 63 + "12", "--corrupt", "1+1=" * 63 + "13", "--answer", "1234567",
      "--wrong", "1234568"],  # 255 tokens with <s>, then the answers' shared 123456
     "pair 1: the prompt (255 tokens) with the 6 tokens that the answer '1234567' and the wrong "
     "text '1234568' share at their start (appended to it, to judge where they differ) is 261 "
     "tokens but this model takes at most 256 (shorten the prompts to 250 tokens or less"),
])
def test_bad_input_is_one_line_and_no_file(capsys, tmp_path, argv, words):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("23+45=\t23+46=\t68\t69\n")
    output = tmp_path / "never.json"
    argv = [a.replace("{pairs}", str(pairs)).replace("{out}", str(tmp_path / "never"))
            .replace("{folder}", str(tmp_path)) for a in argv]
    words = words.replace("{out}", str(tmp_path / "never"))
    code = main(["introspect", "patch", "-m", "lazarus:demo", *argv, "-o", str(output)])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert words in lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


# --- resid_pre (layers x positions) and attn_head (layers x heads) ----------------------------


def _pre_hook_route(folder: Path, family: str, site: str, layers: int, span: int,
                    heads: int) -> np.ndarray:
    """float64 [pairs, layers, columns]: denoising by a forward pre-hook written here: on the
    block (resid_pre: its input at one token) or on the attention's output projection
    (attn_head: one head's columns of its input, at every token)."""
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    answer = tokenizer(ANSWER, add_special_tokens=False)["input_ids"][0]
    wrong = tokenizer(WRONG, add_special_tokens=False)["input_ids"][0]
    columns = span if site == "resid_pre" else heads
    found = np.empty((len(CLEAN), layers, columns))
    for p, (clean, corrupt) in enumerate(zip(CLEAN, CORRUPT, strict=True)):
        source, target = (tokenizer(t)["input_ids"] for t in (clean, corrupt))
        for layer in range(layers):
            block = (model.transformer.h if family == "gpt2" else model.model.layers)[layer]
            module = block if site == "resid_pre" else (
                block.attn.c_proj if family == "gpt2" else block.self_attn.o_proj)
            kept = {}

            def read(_module, args, kwargs, kept=kept):
                kept["value"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

            handle = module.register_forward_pre_hook(read, with_kwargs=True)
            _run(model, source)
            handle.remove()
            for column in range(columns):
                def write(_module, args, kwargs, column=column, kept=kept, target=target):
                    value = (args[0] if args else kwargs["hidden_states"]).clone()
                    if site == "resid_pre":
                        token = len(target) - span + column
                        value[:, token] = kept["value"][:, token]
                    else:
                        width = value.shape[-1] // heads
                        part = slice(column * width, (column + 1) * width)
                        value[..., part] = kept["value"][..., part]
                    if args:
                        return (value, *args[1:]), kwargs
                    return args, {**kwargs, "hidden_states": value}

                handle = module.register_forward_pre_hook(write, with_kwargs=True)
                logits = _run(model, target)
                handle.remove()
                found[p, layer, column] = float(logits[answer] - logits[wrong])
    return found


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_head_and_resid_pre_patching_equal_a_hook_on_the_model(tiny_model_dirs, family):
    folder = tiny_model_dirs[family]
    result = Model(str(folder)).patch(CLEAN, CORRUPT, [ANSWER], [WRONG],
                                      sites=["resid_pre", "attn_head"])
    heads = result.grid("attn_head").values.shape[1]
    assert heads == 4  # the tiny models' num_attention_heads
    assert result.grid("attn_head").axis == "head"
    for site in ("resid_pre", "attn_head"):
        expected = _pre_hook_route(folder, family, site, len(result.layers),
                                   len(result.positions), heads)
        difference = np.abs(result.grid(site).scores - expected).max()
        print(f"{family} {site}: max |lazarus - hook| = {difference:.2e}")
        assert np.allclose(result.grid(site).scores, expected, rtol=1e-4, atol=1e-4)
    # resid_pre of layer L + 1 is resid_post of layer L
    assert np.allclose(result.grid("resid_pre").values[1:], Model(str(folder)).patch(
        CLEAN, CORRUPT, [ANSWER], [WRONG], layers="0-2").grid("resid_post").values, atol=1e-4)


def test_the_text_heatmap_of_a_hand_made_result():
    values = np.array([[0.0, 0.5, -0.25], [1.0, 0.0, 0.75]])
    grid = SiteGrid(site="mlp_out", axis="position", values=values, low=values - 0.1,
                    high=values + 0.1, scores=np.zeros((2, 2, 3)))
    result = PatchResult(
        model_id="m", direction="noise", direction_text=DIRECTIONS["noise"], metric="logprob",
        metric_text="log-probability of the answer", clean=("a b", "c d e"),
        corrupt=("a x", "c d f"), answer=("y", "y"), wrong=None,
        clean_score=np.array([-1.0, -2.0]), corrupt_score=np.array([-3.0, -4.0]),
        layers=(0, 5), positions=(0, 1, 2), tokens=("a", " b", "\n"),
        differs=(False, True, False), lengths=(3, 4), seed=0, grids=(grid,))
    text = render_patch(result)
    assert ("noising: corrupted activations patched into the clean run" in
            text.splitlines()[1])
    assert "2 pairs: mean logprob -1.5 on the clean run, -3.5 on the corrupted run." in text
    assert "Pairs have 3 to 4 tokens: positions are counted from each pair's end" in text
    assert "with fewer than 5 pairs the intervals are rough" in text
    grid_lines = text.split("mlp_out (layers x token positions")[1].splitlines()
    assert grid_lines[2:6] == [
        "Layer |       a |     ␣b* |      \\n",
        "-" * 35,
        "    0 | +0.00   | +0.50 ▒ | -0.25",  # shades: quarters of -0.25 .. 1.00
        "    5 | +1.00 █ | +0.00   | +0.75 ▓",
    ]
    # the cells shown are the largest of 6: their intervals are not one cell's chosen in advance
    assert ("(intervals: each its own cell's 95%; these cells were picked as the largest of 6 "
            "per site, so their intervals cover less and their values lean away from 0)"
            in text.splitlines())
    assert text.splitlines()[-3:] == [
        "  mlp_out    layer 5   position 0 'a': +1.00  [+0.90, +1.10]",
        "  mlp_out    layer 5   position 2 '\\n': +0.75  [+0.65, +0.85]",
        "  mlp_out    layer 0   position 1 ' b'*: +0.50  [+0.40, +0.60]",
    ]
    table = result.to_pandas()
    assert list(table.columns) == ["site", "layer", "axis", "index", "token", "differs",
                                   "value", "low", "high"]
    assert len(table) == 6
    row = table[(table.layer == 5) & (table["index"] == 2)].iloc[0]
    assert (row.token, row.differs, row.value, row.high) == ("\n", False, 0.75, 0.85)


def test_the_csv_holds_exact_zeros_and_ones_over_many_pairs(capsys, tmp_path):
    """With 12 pairs (numpy sums more than 8 numbers pairwise, so the order of a mean's sums
    differs between a column of cells and the scores themselves): where every pair's patched
    score is, to the bit, its corrupted score (a token before the one that differs) the CSV says
    0, and where it is its clean score (the last block's residual at the last token) 1, in the
    value and in both interval bounds."""
    clean = [f"{10 + i}+4{i % 8}=" for i in range(12)]
    corrupt = [f"{10 + i}+4{i % 8 + 1}=" for i in range(12)]
    answers = [str(10 + i + 40 + i % 8) for i in range(12)]
    wrongs = [str(10 + i + 41 + i % 8) for i in range(12)]
    result = Model("lazarus:demo").patch(clean, corrupt, answers, wrongs, layers=3)
    scores = result.grid().scores[:, 0]  # [pairs, positions] at layer 3
    assert (scores[:, :5] == result.corrupt_score[:, None]).all()  # the premise, bit for bit
    assert (scores[:, -1] == result.clean_score).all()
    table = tmp_path / "p.csv"
    assert main(["introspect", "patch", "-m", "lazarus:demo", "--clean", "|".join(clean),
                 "--corrupt", "|".join(corrupt), "--answer", "|".join(answers), "--wrong",
                 "|".join(wrongs), "-l", "3", "-o", str(table)]) == 0
    capsys.readouterr()
    rows = [line.split(",") for line in table.read_text().splitlines()[1:]]
    assert [row[6:] for row in rows[:5]] == [["0.0", "0.0", "0.0"]] * 5
    assert rows[-1][6:] == ["1.0", "1.0", "1.0"]


def test_an_answer_or_wrong_text_the_tokenizer_does_not_know_is_warned_about(capsys, tmp_path):
    """The metric read for '日本' is that of the unknown token: said on stderr, once per text."""
    argv = ["introspect", "patch", "-m", "lazarus:demo", "--clean", "23+45=|23+45=",
            "--corrupt", "23+46=|23+46=", "--answer", "日本", "--wrong", "69", "-l", "3"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err.count("unknown token") == 1
    assert ("answer: 2 of the 2 tokens of '日本' are this tokenizer's unknown token <unk>, so "
            "the metric read for it is that of <unk>, not of the text") in err
    assert "unknown token" not in out
    assert main([*argv[:-6], "--answer", "68", "--wrong", "6本", "-l", "3"]) == 0
    assert "wrong text: 1 of the 2 tokens of '6本' is this tokenizer's unknown token" in (
        capsys.readouterr().err)
