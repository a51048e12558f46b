"""`ablate --plot` and `steer --plot` (`results.plot_causal`): the points drawn are the result's
numbers (each prompt's change, each random draw's, the continuation's log-probability at each
coefficient), those numbers equal an independent route (a draw ablated on its own; Hugging
Face's forward with a hook adding the vector), the files are valid PNG / SVG of the expected
size, and an error leaves no file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from plot_files import artist, png_size, run, svg_root
from test_causal import ANSWERS, PAIRS, PROMPTS

import lazarus
from lazarus.io.directions import Direction, save_direction
from lazarus.results.plot_causal import ablation_figure, plot_ablation, plot_steer, steer_figure
from lazarus.results.plot_common import MISSING

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return lazarus.load(str(tiny_model_dirs["llama"]), device="cpu", use_cache=False)


@pytest.fixture(scope="module")
def ablation(model):
    return model.ablate(PROMPTS, 1, answers=ANSWERS, neurons=[3, 40, 77], site="mlp_post",
                        controls=5, seed=3)


@pytest.fixture(scope="module")
def steering(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("steer") / "d.npz"
    save_direction(str(path), Direction(direction=np.linspace(-1, 1, 64).astype(np.float32),
                                        layer=1))
    return model.steer(PROMPTS[:2], 1, direction=str(path), coefficients=[1.5, -0.5],
                       tokens=["a", "he"], max_tokens=3)


# --- ablate -----------------------------------------------------------------------------------


def test_each_draws_per_prompt_changes_are_that_draw_ablated_alone(model, ablation):
    control = ablation.conditions[0].control
    draws = np.array(control.prompt_effects)
    assert draws.shape == (5, len(PROMPTS))
    np.testing.assert_allclose(draws.mean(axis=1), control.effects, atol=1e-12)
    alone = model.ablate(PROMPTS, 1, answers=ANSWERS, neurons=list(control.neurons[4][0]),
                         site="mlp_post", controls=0)
    np.testing.assert_allclose(draws[4], alone.to_numpy()[0], atol=1e-9)
    document = ablation.to_json()["conditions"][0]["control"]
    assert document["prompt_effects"] == [list(row) for row in control.prompt_effects]


def test_ablation_points_are_the_results_numbers(ablation):
    figure = ablation_figure(ablation)
    axes = figure.axes[0]
    condition = ablation.conditions[0]
    chosen = artist(axes, "chosen").get_offsets()
    np.testing.assert_array_equal(chosen[:, 1], [*ablation.to_numpy()[0], condition.effect])
    np.testing.assert_array_equal(chosen[:, 0], np.arange(len(PROMPTS) + 1))
    controls = artist(axes, "controls").get_offsets()
    draws = np.array(condition.control.prompt_effects)
    expected = np.concatenate([*draws.T, condition.control.effects])
    np.testing.assert_array_equal(controls[:, 1], expected)
    # each prompt's draws sit in that prompt's column
    columns = np.repeat(np.arange(len(PROMPTS) + 1), len(draws))
    assert np.all(np.abs(controls[:, 0] - columns) < 0.3)
    assert [t.get_text() for t in axes.get_xticklabels()] == [*PROMPTS, "mean (the effect)"]
    assert axes.get_ylabel() == "drop in the answer's log-probability (nats)"


def test_a_sweep_has_a_panel_per_layer_and_components_have_no_controls(model):
    sweep = model.ablate(PROMPTS, "0,1", neurons=[5], site="mlp_post", controls=2, sweep=True,
                         max_tokens=2)
    figure = ablation_figure(sweep)
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [a.get_title().split(":")[0] for a in panels] == ["layer 0", "layer 1"]
    assert panels[0].get_ylabel() == "KL(baseline || ablated), next token (nats)"
    for axes, row in zip(panels, sweep.to_numpy(), strict=True):
        np.testing.assert_array_equal(artist(axes, "chosen").get_offsets()[:-1, 1], row)
    assert figure.get_suptitle().endswith(": each prompt against random units")
    component = model.ablate(PROMPTS, 1, component="mlp", max_tokens=2)
    figure = ablation_figure(component)
    (axes,) = figure.axes
    assert [c.get_gid() for c in axes.collections] == ["chosen"]
    assert figure.get_suptitle() == "ablating the mlp component (zero): each prompt's change"


def test_ablation_png_and_svg_of_the_asked_for_size(ablation, tmp_path):
    plot_ablation(ablation, str(tmp_path / "a.png"), size=(8, 5), dpi=50)
    assert png_size(tmp_path / "a.png") == (400, 250)
    plot_ablation(ablation, str(tmp_path / "a.svg"), size=(6, 4))
    root = svg_root(tmp_path / "a.svg")
    assert (root.get("width"), root.get("height")) == ("432pt", "288pt")


def test_ablate_cli_plot(capsys, tmp_path, tiny_model_dirs):
    picture = tmp_path / "ablate.png"
    code, out, err = run(capsys, "introspect", "ablate", "-m", tiny_model_dirs["llama"], "-l",
                         "1", "-p", "|".join(PAIRS), "-n", "3,40", "--site", "mlp_post",
                         "--controls", "4", "--plot", picture)
    assert code == 0, err
    # default size: 3 + 0.6 x (4 prompts + the mean) = 6 in wide, 3.2 + 0.8 = 4 in high, 100 dpi
    assert png_size(picture) == (600, 400)
    assert err.splitlines()[-1] == f"lazarus: saved {picture}"
    svg = tmp_path / "ablate.svg"
    code, _, err = run(capsys, "introspect", "ablate", "-m", tiny_model_dirs["llama"], "-l", "1",
                       "-p", "|".join(PAIRS), "-n", "3", "--controls", "2", "--plot", svg)
    assert code == 0, err
    svg_root(svg)


# --- steer ------------------------------------------------------------------------------------


def _hf_log_prob(model, prompt: str, continuation: list[int], layer: int | None,
                 added: np.ndarray | None) -> float:
    """log p(continuation | prompt) summed, from Hugging Face's own forward, with `added` put
    on decoder block `layer`'s output by a forward hook of this test."""
    loaded = model.whole_weights()
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"][0].tolist()
    handle = None
    if added is not None:
        vector = torch.tensor(added, dtype=torch.float32)

        def hook(module, args, output):
            if isinstance(output, tuple):
                return (output[0] + vector, *output[1:])
            return output + vector

        handle = loaded.model.model.layers[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = loaded.model(torch.tensor([ids + continuation])).logits[0].double()
    finally:
        if handle is not None:
            handle.remove()
    log_p = torch.log_softmax(logits, dim=-1)
    return float(sum(log_p[len(ids) - 1 + j, token] for j, token in enumerate(continuation)))


def _hf_greedy(model, prompt: str, count: int) -> list[int]:
    loaded = model.whole_weights()
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = loaded.model.generate(ids, max_new_tokens=count, do_sample=False, pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


def test_unsteered_continuation_log_probs_equal_a_hooked_hugging_face_forward(model,
                                                                              steering):
    for i, prompt in enumerate(PROMPTS[:2]):
        continuation = _hf_greedy(model, prompt, 3)
        assert model.whole_weights().tokenizer.decode(continuation, skip_special_tokens=True) \
            == steering.runs[0].continuations[i]
        for run_ in steering.runs:
            added = None if run_.coefficient == 0 else (
                run_.coefficient * steering.scale * steering.vector.astype(np.float64))
            expected = _hf_log_prob(model, prompt, continuation, 1, added)
            assert run_.unsteered_log_probs[i] == pytest.approx(expected, abs=1e-4), \
                (i, run_.coefficient)
    document = steering.to_json()
    assert [r["unsteered_continuation_log_prob"] for r in document["prompts"][1]["runs"]] == [
        r.unsteered_log_probs[1] for r in steering.runs]


def test_steer_lines_are_the_results_numbers_in_coefficient_order(steering):
    figure = steer_figure(steering)
    kept, named = figure.axes
    order = [2, 0, 1]  # runs are 0, 1.5, -0.5; drawn -0.5, 0, 1.5
    coefficients = [steering.runs[k].coefficient for k in order]
    assert coefficients == [-0.5, 0.0, 1.5]
    for i in range(2):
        line = artist(kept, f"unsteered-{i}")
        assert list(line.get_xdata()) == coefficients
        assert list(line.get_ydata()) == [steering.runs[k].unsteered_log_probs[i] for k in order]
    values = steering.to_numpy()  # [runs, prompts, tokens]
    for t in range(2):
        mean = artist(named, f"token-{t}")
        np.testing.assert_allclose(mean.get_ydata(), values[order, :, t].mean(axis=1),
                                   rtol=0, atol=1e-12)
        for i in range(2):
            line = artist(named, f"token-{t}-prompt-{i}")
            assert list(line.get_ydata()) == list(values[order, i, t])
    prompts = {artist(kept, f"unsteered-{i}").get_color() for i in range(2)}
    tokens = {artist(named, f"token-{t}").get_color() for t in range(2)}
    assert len(prompts) == 2 and len(tokens) == 2 and not prompts & tokens  # no colour, 2 meanings
    for i in range(2):  # a thin line's style is its prompt's, above
        style = artist(kept, f"unsteered-{i}").get_linestyle()
        assert [artist(named, f"token-{t}-prompt-{i}").get_linestyle() for t in range(2)] \
            == [style, style]
    assert artist(kept, "unsteered-0").get_linestyle() != artist(kept, "unsteered-1") \
        .get_linestyle()
    assert kept.get_ylabel().startswith("log p(unsteered continuation)")
    assert named.get_xlabel() == (f"coefficient (× the mean activation norm, "
                                  f"{steering.scale:.3g})")


def test_steer_png_and_svg(steering, tmp_path):
    plot_steer(steering, str(tmp_path / "s.png"), size=(5, 6), dpi=40)
    assert png_size(tmp_path / "s.png") == (200, 240)
    plot_steer(steering, str(tmp_path / "s.svg"))
    root = svg_root(tmp_path / "s.svg")
    # default size: 7 in wide, 3.6 per panel (two: named tokens) + 0.6 in high, at 72 pt/in
    assert (root.get("width"), root.get("height")) == ("504pt", "561.6pt")


def test_steer_cli_plot(capsys, tmp_path, tiny_model_dirs):
    direction = tmp_path / "d.npz"
    save_direction(str(direction), Direction(direction=np.ones(64, np.float32), layer=2))
    picture = tmp_path / "steer.png"
    code, out, err = run(capsys, "introspect", "steer", "-m", tiny_model_dirs["llama"], "-p",
                         "ab|hello", "--direction", direction, "--compare", "-1,1",
                         "--max-tokens", "2", "--plot", picture)
    assert code == 0, err
    assert png_size(picture) == (700, 420)  # one panel (no --tokens): 7 x 4.2 in at 100 dpi
    assert f"saved {picture}" in err


# --- errors -----------------------------------------------------------------------------------

STEER = ["introspect", "steer", "-p", "ab", "-l", "1", "--positive", "ab", "--negative", "hello"]
ABLATE = ["introspect", "ablate", "-p", "ab|hello", "-l", "1", "-n", "3"]


@pytest.mark.parametrize("argv", [STEER, ABLATE])
@pytest.mark.parametrize("name", ["pic.jpg", "pic"])
def test_a_bad_extension_is_one_line_before_the_model_loads(capsys, tmp_path, argv, name):
    code, out, err = run(capsys, *argv, "-m", "/nonexistent/model", "--plot", tmp_path / name)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and "name the --plot file with .png or .svg" in err, err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv, fix", [
    (["introspect", "ablate", "-p", "ab|hello", "-l", "1", "-n", "3,100000", "--site",
      "mlp_post"], "100000"),
    ([*STEER[:-4], "--neurons", "3:1", "--coefficient", "1e30"], "float32"),
])
def test_a_failing_run_writes_no_picture(capsys, tmp_path, tiny_model_dirs, argv, fix):
    code, out, err = run(capsys, *argv, "-m", tiny_model_dirs["llama"], "--plot",
                         tmp_path / "pic.png")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and fix in err, err
    assert os.listdir(tmp_path) == []


# --- without matplotlib, and at --help (child processes) ---------------------------------------

CORPUS = Path(__file__).parent / "data" / "corpus.txt"
WITHOUT = ("import sys\n"
           "sys.modules['matplotlib'] = None\n"
           "from lazarus.cli.main import main\n"
           "sys.exit(main(sys.argv[1:]))\n")


@pytest.mark.integration
@pytest.mark.parametrize("argv", [
    ABLATE, STEER, ["introspect", "examples", "-l", "0", "--corpus", str(CORPUS)]])
def test_missing_matplotlib_is_one_line_before_the_model_loads(tmp_path, argv):
    done = subprocess.run([sys.executable, "-c", WITHOUT, *argv, "-m", "/nonexistent/model",
                           "--plot", str(tmp_path / "pic.png")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"lazarus: error: {MISSING}\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.integration
def test_help_names_plot_and_imports_no_matplotlib():
    script = ("import sys\n"
              "import lazarus.results.plot\n"
              "from lazarus.cli.main import main\n"
              "for command in ('ablate', 'steer', 'examples'):\n"
              "    assert main(['introspect', command, '--help']) == 0\n"
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib')\n"
              "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n  --plot FILE ") == 3  # each command's option list
