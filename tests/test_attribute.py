"""`attribute`: gradient estimates of patching effects, checked against routes written here
(hand-run forwards with hooks, finite differences, real patches), on llama, gpt2 and an MoE
(gpt-oss), with pairs of different lengths (right padding) where the site allows it."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import lazarus
from lazarus.analyses.attribute import AttributeOptions, analyse_attribution
from lazarus.analyses.pairs import PairOptions, prepare
from lazarus.cli.main import main
from lazarus.engine.gradients import attribution, integrated
from lazarus.stats.rank import pearson, ranks, spearman

DEMO = str(Path(lazarus.__file__).parent / "demo_model")
# Two pairs of different token lengths: the batch is right-padded.
PADDED = {"clean": ["the cat sat", "a dog"], "corrupt": ["the cot sat", "a fog"],
          "answers": ["x"], "wrongs": ["y"]}
FINAL_NORM = {"llama": "model.norm", "gpt2": "transformer.ln_f", "gpt_oss": "model.norm"}
DOWN = {"llama": "model.layers.{}.mlp.down_proj", "gpt2": "transformer.h.{}.mlp.c_proj"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _identity_final_norm(model: torch.nn.Module, architecture: str) -> None:
    owner, _, name = FINAL_NORM[architecture].rpartition(".")
    setattr(model.get_submodule(owner), name, torch.nn.Identity())


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "gpt_oss"])
def test_estimate_is_the_patch_effect_when_the_metric_is_linear_in_the_unit(
        tiny_model_dirs, architecture):
    """With the final norm replaced by the identity (in this test's copy of the model), the
    logits are W_U x the last layer's resid_post, which is linear in that layer's mlp_post
    (the down projection; for MoE, sum over routed experts of weight x down_e, the routing
    being computed before the units). At the last layer, a unit's values at earlier positions
    reach no later token, so the logit difference at the last token is linear in the patched
    unit: the estimate g . (clean - corrupted) is the patch's effect exactly (to float32)."""
    model = lazarus.load(str(tiny_model_dirs[architecture]))
    _identity_final_norm(model.whole_weights().model, architecture)
    result = model.attribute(**PADDED, layers=-1, self_check=30)
    check = result.check
    estimate = np.array([u.estimate for u in check.units])
    real = np.array(check.real)
    print(architecture, "max |estimate - real| (normalised):", np.abs(estimate - real).max())
    assert len(check.units) == 60
    assert np.abs(real).max() > 1e-3  # the patches change something
    np.testing.assert_allclose(estimate, real, atol=1e-4 * max(1.0, np.abs(real).max()))


class _Zero(torch.nn.Module):
    def forward(self, hidden_states):
        return torch.zeros_like(hidden_states)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_head_estimate_is_the_patch_effect_when_the_metric_is_linear_in_the_head(
        tiny_model_dirs, architecture):
    """Heads of the last layer reach the logits through the output projection and, after it,
    the MLP (not linear): with that MLP replaced by zero and the final norm by the identity (in
    this test's copy), the logit difference is linear in every head, so estimate = patch."""
    model = lazarus.load(str(tiny_model_dirs[architecture]))
    hf = model.whole_weights().model
    _identity_final_norm(hf, architecture)
    block = (hf.model.layers if architecture == "llama" else hf.transformer.h)[-1]
    block.mlp = _Zero()
    result = model.attribute(**PADDED, sites=["attn_head"], layers=-1, self_check=2)
    check = result.check
    estimate, real = np.array([u.estimate for u in check.units]), np.array(check.real)
    print(architecture, "heads: max |estimate - real|", np.abs(estimate - real).max())
    assert len(check.units) == 4  # every head of the layer
    assert np.abs(real).max() > 1e-3
    np.testing.assert_allclose(estimate, real, atol=1e-4 * max(1.0, np.abs(real).max()))


def _hand_products(model_dir: Path, architecture: str, layer: int) -> list[np.ndarray]:
    """Per pair, run alone in a forward written here: the gradient of logit(x) - logit(y) at
    the last token with respect to the down projection's input of `layer` (corrupted run),
    times clean - corrupted, summed over positions: float64 [units]."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = lazarus.load(str(model_dir)).tokenizer()
    answer, wrong = (tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in "xy")
    down = model.get_submodule(DOWN[architecture].format(layer))
    out = []
    for clean, corrupt in zip(PADDED["clean"], PADDED["corrupt"], strict=True):
        seen = {}

        def grab(module, args, seen=seen):
            seen["value"] = args[0]
            if args[0].requires_grad:
                args[0].retain_grad()

        handle = down.register_forward_pre_hook(grab)
        with torch.no_grad():
            model(torch.tensor([tokenizer(clean)["input_ids"]]))
        clean_value = seen["value"].clone()
        logits = model(torch.tensor([tokenizer(corrupt)["input_ids"]])).logits
        (logits[0, -1, answer] - logits[0, -1, wrong]).backward()
        handle.remove()
        value = seen["value"]
        out.append(((clean_value - value.detach()) * value.grad)[0].sum(0).double().numpy())
    return out


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_gradient_products_equal_a_hand_route(tiny_model_dirs, architecture):
    """Each pair alone equals the hand route; both pairs in one right-padded batch give the sum
    of the two (a running sum over pairs, to which padding adds nothing)."""
    model_dir = tiny_model_dirs[architecture]
    loaded = lazarus.load(str(model_dir)).whole_weights()
    pairs = prepare(loaded, PairOptions(**PADDED), pytest.fail)
    key = (1, "mlp_post")
    hand = _hand_products(model_dir, architecture, 1)
    for index, expected in enumerate(hand):
        got = attribution(loaded, pairs.clean_ids[index:index + 1],
                          pairs.corrupt_ids[index:index + 1], [key], {key: 1}, pairs.metric)[key]
        print(architecture, "pair", index, "max diff", np.abs(got - expected).max())
        np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
    both = attribution(loaded, pairs.clean_ids, pairs.corrupt_ids, [key], {key: 1},
                       pairs.metric)[key]
    assert len(set(map(len, pairs.clean_ids))) == 2  # the batch is padded
    np.testing.assert_allclose(both, hand[0] + hand[1], atol=1e-5 * np.abs(hand[0]).max())


def test_estimate_equals_a_finite_difference(llama_dir):
    """Where the metric is not linear (layer 0, through three blocks and the final norm), the
    estimate is a directional derivative: central differences of the metric along (clean -
    corrupted) of one unit, in a float64 copy of the model with a hook written here. Its norms
    still compute in float32 (transformers upcasts to float32, not float64), so the step is
    not tiny: 1e-2 of (clean - corrupted), whose curvature error (step^2) is ~1e-4."""
    loaded = lazarus.load(str(llama_dir)).whole_weights()
    pairs = prepare(loaded, PairOptions(**{**PADDED, "clean": PADDED["clean"][:1],
                                           "corrupt": PADDED["corrupt"][:1]}), pytest.fail)
    key = (0, "mlp_post")
    products = attribution(loaded, pairs.clean_ids, pairs.corrupt_ids, [key], {key: 1},
                           pairs.metric)[key]
    model = copy.deepcopy(loaded.model).double()
    down = model.get_submodule(DOWN["llama"].format(0))
    clean_ids, corrupt_ids = (torch.tensor([ids]) for ids in (pairs.clean_ids[0],
                                                            pairs.corrupt_ids[0]))
    answer, wrong = pairs.metric.answer[0], pairs.metric.wrong[0]
    seen, shift = {}, {}

    def hook(module, args):
        seen["value"] = args[0].clone()
        if shift:
            new = args[0].clone()
            new[0, :, shift["unit"]] += shift["by"]
            return (new,)
        return None

    down.register_forward_pre_hook(hook)

    def metric(ids):
        with torch.no_grad():
            logits = model(ids).logits
        return float(logits[0, -1, answer] - logits[0, -1, wrong])

    metric(clean_ids)
    clean = seen["value"]
    metric(corrupt_ids)
    difference = clean - seen["value"]  # [1, tokens, units]
    step = 1e-2
    for unit in np.argsort(-np.abs(products))[:5]:
        ends = []
        for sign in (1, -1):
            shift.update(unit=int(unit), by=sign * step * difference[0, :, unit])
            ends.append(metric(corrupt_ids))
        shift.clear()
        derivative = (ends[0] - ends[1]) / (2 * step)
        print("unit", unit, "estimate", products[unit], "finite difference", derivative)
        assert products[unit] == pytest.approx(derivative, rel=2e-3, abs=1e-6)


def test_integrated_gradients_converge_to_the_real_effect(llama_dir):
    """Summed over a site's units, integrated gradients tend to the real effect of patching the
    whole site (clean values at every unit and position, by a hook written here) as the steps
    grow (midpoint rule: the error falls about as 1/steps^2)."""
    loaded = lazarus.load(str(llama_dir)).whole_weights()
    pairs = prepare(loaded, PairOptions(**PADDED), pytest.fail)
    key = (0, "mlp_post")
    down = loaded.model.get_submodule(DOWN["llama"].format(0))
    real = []
    for clean_ids, corrupt_ids, answer, wrong in zip(
            pairs.clean_ids, pairs.corrupt_ids, pairs.metric.answer, pairs.metric.wrong,
            strict=True):
        kept = {}

        def keep(module, args, kept=kept):
            kept["clean"] = args[0].clone()

        handle = down.register_forward_pre_hook(keep)
        with torch.no_grad():
            loaded.model(torch.tensor([clean_ids]))
        handle.remove()
        handle = down.register_forward_pre_hook(lambda module, args, kept=kept: (kept["clean"],))
        with torch.no_grad():
            logits = loaded.model(torch.tensor([corrupt_ids])).logits
        handle.remove()
        real.append(float(logits[0, -1, answer] - logits[0, -1, wrong]))
    real_effect = np.mean(real) - pairs.corrupt_score.mean()
    errors = []
    for steps in (1, 4, 16):
        products = integrated(loaded, pairs.clean_ids, pairs.corrupt_ids, [key], {key: 1},
                              pairs.metric, steps)[key]
        errors.append(abs(products.sum() / len(real) - real_effect))
    print("real effect", real_effect, "errors at 1, 4, 16 steps", errors)
    assert abs(real_effect) > 0.05
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.01 * abs(real_effect)


def test_self_check_trusts_the_estimate_on_the_demo_task(capsys, tmp_path):
    output = tmp_path / "attribution.json"
    code, out, err = run(capsys, "introspect", "attribute", "-m", DEMO, "--clean", "23+45=",
                         "--corrupt", "23+46=", "--answer", "68", "--wrong", "69",
                         "-o", output)
    assert code == 0, err
    document = json.loads(output.read_text())
    check = document["self_check"]
    print("demo self-check: Spearman", check["spearman"], "Pearson", check["pearson"])
    assert check["spearman"] > 0.9
    assert check["verdict"] == "good"
    assert (check["checked"], check["of"]) == (40, 4 * 512)
    assert "Self-check: 40 of 2048 units patched for real" in out
    assert "Verdict: good (both rank correlations >= 0.9): trust the ranking." in out
    sections = [out.index(s) for s in ("ATTRIBUTION:", "Metric:", "Estimate:", "Top 20 units",
                                       "Self-check:", "Largest misses:")]
    assert sections == sorted(sections)


def test_the_command_says_poor_when_the_linear_estimate_fails(capsys, llama_dir, tmp_path):
    """A llama with every weight but the norms doubled (saved here) and prompts that differ
    in three tokens: the residual stream's response is far from linear, and the self-check
    must say so."""
    folder = tmp_path / "sharp"
    shutil.copytree(llama_dir, folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.mul_(2)
    model.save_pretrained(folder)
    output = tmp_path / "poor.json"
    code, out, err = run(capsys, "introspect", "attribute", "-m", folder, "--clean",
                         "the cat sat|one dog ran", "--corrupt", "xyz cot sat|two fog ran",
                         "--answer", "x", "--wrong", "y", "--site", "resid_post", "--check",
                         "10", "-o", output)
    assert code == 0, err
    check = json.loads(output.read_text())["self_check"]
    print("constructed poor case: Spearman", check["spearman"])
    assert check["spearman"] < 0.5
    assert check["verdict"] == "poor"
    assert ("Verdict: poor (the lower rank correlation is < 0.5): the linear estimate fails "
            "here; try --method ig.") in " ".join(out.split())


def test_cli_and_api_give_the_same_json_and_a_plot(capsys, llama_dir, tmp_path):
    output, picture = tmp_path / "a.json", tmp_path / "a.png"
    code, out, err = run(capsys, "introspect", "attribute", "-m", llama_dir, "--clean",
                         "|".join(PADDED["clean"]), "--corrupt", "|".join(PADDED["corrupt"]),
                         "--answer", "x", "--wrong", "y", "--site", "mlp_post", "-l", "0,2",
                         "--method", "ig", "--steps", "3", "--top", "5", "--check", "4",
                         "-o", output, "--plot", picture)
    assert code == 0, err
    result = lazarus.load(str(llama_dir)).attribute(
        **PADDED, layers=[0, 2], method="ig", steps=3, top=5, self_check=4)
    assert json.loads(output.read_text()) == json.loads(json.dumps(result.to_json()))
    assert result.to_numpy().shape == (2, 128)
    assert len(result.to_pandas()) == 2 * 128
    assert "Top 5 units by |estimate| (of 256)" in out
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1100, 420)  # 11 x 4.2 inches at 100 dpi
    if importlib.util.find_spec("matplotlib") is not None:
        from lazarus.results.attribute_plot import attribution_figure

        profile = attribution_figure(result).axes[0]
        assert list(profile.get_xticks()) == [0, 2]  # the layers run, not 0.25, 0.5, ...


def test_the_self_check_title_stays_inside_the_picture(llama_dir):
    """The check panel's title (both Spearman figures and the verdict) ran past the right edge
    of its 5.5-inch panel, cutting the verdict: it is wrapped to the panel."""
    pytest.importorskip("matplotlib")
    from lazarus.results.attribute_plot import attribution_figure

    result = lazarus.load(str(llama_dir)).attribute(**PADDED, layers=[0], self_check=2)
    figure = attribution_figure(result)
    figure.savefig(io.BytesIO(), format="png")  # laid out as when saved (a draw alone is not)
    title = figure.axes[1].title
    box = title.get_window_extent()
    assert box.x0 >= 0
    assert box.x1 <= figure.bbox.width
    assert f"({result.check.verdict})" in title.get_text()


@pytest.mark.parametrize("argv, message", [
    (["--method", "ig", "--steps", "0"], "--steps must be from 1 to 1000 (got 0)"),
    (["--site", "router"], "site 'router' has no units to attribute"),
    (["--metric", "logit_diff", "--wrong", None], "the logit_diff metric needs the wrong text"),
    (["--clean", None, "--corrupt", None, "--answer", None, "--wrong", None, "--pairs",
      "missing.tsv"], "file not found: missing.tsv (check the path after --pairs)"),
    (["--site", "mlp_post,"], "--site 'mlp_post,' holds an empty site name"),
    (["--site", "attn_head", "-l", "0", "--check", "4"],
     "--check 4 asks for the top 4 units and as many random ones, but there are only 4 units"),
    (["--corrupt", "the cot sat"], "pair 1: the clean prompt 'the cat' is"),
    (["-l", "9"], "layer 9 is out of range"),
    (["--answer", "x|y|z"], "got 3 answers for 1 pair"),
    (["--clean", "a" * 250, "--corrupt", "a" * 249 + "b", "--answer", "bcdefgh", "--wrong",
      "bcdefgi"], "the prompt (251 tokens) with the 6 tokens that the answer 'bcdefgh'"),
])
def test_bad_input_is_one_line_and_no_file(capsys, llama_dir, tmp_path, argv, message):
    output = tmp_path / "out.json"
    base = {"--clean": "the cat", "--corrupt": "the cot", "--answer": "x", "--wrong": "y"}
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    merged = {**base, **pairs}
    args = [item for option, value in merged.items() if value is not None
            for item in (option, value)]
    code, out, err = run(capsys, "introspect", "attribute", "-m", llama_dir, *args,
                         "-o", output)
    assert code == 2
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err
    assert not output.exists()


def test_output_to_a_folder_is_one_line(capsys, llama_dir, tmp_path):
    code, out, err = run(capsys, "introspect", "attribute", "-m", llama_dir, "--clean",
                         "the cat", "--corrupt", "the cot", "--answer", "x", "--wrong", "y",
                         "-o", tmp_path)
    assert code == 2
    assert err.count("\n") == 1 and "is a folder (give a file name)" in err
    assert list(tmp_path.iterdir()) == []


def test_the_default_self_check_takes_half_the_units_when_there_are_few(llama_dir):
    result = lazarus.load(str(llama_dir)).attribute(["the cat"], ["the cot"], ["x"], ["y"],
                                                    sites=["attn_head"], layers=0)
    assert result.check.total == 4  # the tiny llama's heads
    assert result.check.top_count == 2 and len(result.check.units) == 4


def test_position_sites_refuse_pairs_of_different_lengths(llama_dir):
    with pytest.raises(lazarus.LazarusError, match="different token lengths"):
        analyse_attribution(lazarus.load(str(llama_dir)),
                            AttributeOptions(**PADDED, sites=["resid_post"]))


def test_rank_statistics_against_pandas_ranks():
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 40).astype(float)  # many ties
    y = x + rng.normal(0, 2, 40)
    np.testing.assert_array_equal(ranks(x), pandas.Series(x).rank(method="average").to_numpy())
    expected = np.corrcoef(pandas.Series(x).rank(), pandas.Series(y).rank())[0, 1]
    assert spearman(x, y) == pytest.approx(expected, rel=1e-12)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_units_are_named_the_same_in_text_and_json(capsys, tiny_model_dirs, tmp_path):
    """MoE layers' mlp_post units are `E<expert> U<unit>` (column = expert x units per expert +
    unit, the units per expert read here from config.json), heads `H<head>`, and a dense
    model's neurons `N<neuron>`, in the report's tables and the JSON."""
    folder = tiny_model_dirs["gpt_oss"]
    per_expert = json.loads((folder / "config.json").read_text())["intermediate_size"]
    output = tmp_path / "moe.json"
    code, out, err = run(capsys, "introspect", "attribute", "-m", folder, "--clean",
                         "the cat sat", "--corrupt", "the cot sat", "--answer", "x", "--wrong",
                         "y", "--site", "mlp_post,attn_head", "--top", "40", "--check", "2",
                         "-o", output)
    assert code == 0, err
    document = json.loads(output.read_text())
    assert document["units_per_expert"] == {str(layer): per_expert
                                            for layer in document["layers"]}
    experts = [u for u in document["top"] if u["site"] == "mlp_post"]
    heads = [u for u in document["top"] if u["site"] == "attn_head"]
    assert experts and heads
    for unit in experts:
        assert unit["expert"] * per_expert + unit["expert_unit"] == unit["unit"]
        assert unit["units_per_expert"] == per_expert
        assert unit["label"] == f"E{unit['expert']} U{unit['expert_unit']}"
    assert all(u["label"] == f"H{u['unit']}" for u in heads)
    table = out.split("Top 40 units")[1].split("Self-check")[0].splitlines()[2:]
    named = [(int(row.split()[0]), row.split()[1], " ".join(row.split()[2:-1]))
             for row in table if row.strip()]
    assert named == [(u["layer"], u["site"], u["label"]) for u in document["top"]]
    result = lazarus.load(str(tiny_model_dirs["llama"])).attribute(
        **PADDED, layers=0, top=3, self_check=0)
    dense = result.to_json()
    assert dense["units_per_expert"] == {}
    if importlib.util.find_spec("pandas") is not None:
        frame = result.to_pandas()
        assert list(frame["label"]) == [f"N{unit}" for unit in frame["unit"]]
    assert [u["label"] for u in dense["top"]] == [f"N{u['unit']}" for u in dense["top"]]
    assert "expert" not in dense["top"][0]


def test_an_answer_the_tokenizer_does_not_know_is_a_python_warning():
    """Through the API, the rule steer, ablate and patch share is a LazarusWarning."""
    with pytest.warns(lazarus.LazarusWarning, match="answer: 2 of the 2 tokens of '日本' are "
                                                    "this tokenizer's unknown token <unk>"):
        lazarus.load("lazarus:demo").attribute(["23+45="], ["23+46="], ["日本"], ["69"],
                                               layers=[3], self_check=1)
