"""Every causal-LM family of the installed transformers: lazarus reads exactly what a hook on the
decoder block sees, or refuses in one line. Never a silent difference, never a traceback.

Per family, a tiny seeded random model is saved like a Hub checkpoint. Oracle: that model loaded
whole by transformers, a forward hook on each decoder block, each prompt run alone. lazarus:
`read_model_info` → `load_model(up_to_layer=L)` (the partial load) → `capture`, both prompts in
one padded batch, for a middle layer L and for the last.

Upstream breakage is told from ours by where it happens. Two steps come before any lazarus code:
building and saving the tiny checkpoint (`build`), and the oracle (`hooked_rows`: transformers
loads it and runs it); only transformers and this folder's fixtures take part. What they raise
(but the oracle's own assertions) is skipped with a reason that starts with "upstream:", names
the transformers version, the family, the exception's type and its first line, and is never
counted as a pass (`transformers_alone`). Two kinds:
- transformers cannot build the family from its own defaults (the default config, or the model
  from it, made on the meta device): a bug or a limit of that release, skipped always;
- its defaults build, but the tiny config that tests/tiny_configs.py derives from them (smaller
  sizes) is rejected, or the tiny model cannot be made, saved, loaded or run: skipped on any
  other transformers (a release newer than the fixture: 5.25's kolibri1_1, whose config rejects a
  head size that is not a multiple of 16, was one until tiny_configs knew it), but a failure on
  the version pinned in constraints.txt, where the fixture is known to build and run every
  family, so that such a break is ours.
Everything from lazarus's first call on, its reads and their comparison with the oracle
(`check_family`), fails when wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
import transformers
from tiny_configs import LAYERS, tiny_config
from tiny_models import build_tokenizer
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from lazarus.engine.capture import capture
from lazarus.engine.loading import load_model
from lazarus.engine.model_info import read_model_info
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError

# A sweep that builds and loads a whole model per family: the integration tier.
pytestmark = pytest.mark.integration

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"
PROMPTS = ["The capital of France is", "2+2="]  # of different lengths: the batch is padded
LOADS = ((0,), (0, 1), (LAYERS - 1,))  # layers read per partial load: first, middle, last
TOLERANCE = 1e-4  # relative to the largest value of the oracle's row

FAMILIES = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
T = TypeVar("T")
Oracle = tuple[int, dict[int, np.ndarray | None]]  # (layer count, {layer: rows or None})

# Families this sweep cannot build or run tinily here, and why. Everything else must be read
# exactly or refused.
SKIPPED: dict[str, str] = {
    "gemma3n": "needs timm and Pillow for its vision tower (gemma3n_text is swept)",
    "emu3": "not a causal LM: its text config has no causal-LM class",
    "mllama": "not a causal LM: its text config has no causal-LM class",
    "musicgen": "an audio model: its config has no text decoder to build",
    "musicgen_melody": "an audio model: its config has no text decoder to build",
    "xmod": "needs a language adapter chosen before any forward",
}

# Families lazarus refuses, with a part of its one-line reason.
# Where the oracle reads the number of blocks, when not from num_hidden_layers.
COUNT_KEY = {"longcat_flash": "num_layers"}  # its num_hidden_layers counts 2 sub-layers a block

_NOT_ONE_STREAM = "not one vector per token"
REFUSED: dict[str, str] = {
    "cpmant": _NOT_ONE_STREAM,  # its blocks see learned prompt tokens before the text
    "deepseek_v4": _NOT_ONE_STREAM,  # hyper-connections: four residual streams
    "hy_v4": _NOT_ONE_STREAM,  # hyper-connections
    "gemma3n_text": _NOT_ONE_STREAM,  # AltUp: four parallel predictions of the stream
    "xlnet": _NOT_ONE_STREAM,  # [tokens, batch, width]
    "reformer": _NOT_ONE_STREAM,  # pads the tokens up to its chunk length
    "qwen4_exp": "model is 128 wide but its config says 32",  # hyper-connections
    "qwen4_exp_text": "model is 128 wide but its config says 32",
    "dory": "cannot find the",  # num_hidden_layers counts attention and MLP apart; blocks loop
    "git": "cannot find the",  # image encoder and text blocks of the same count
    "hrm_text": "cannot find the",  # two nested recurrent stacks
    "prophetnet": "names no layer count or hidden size",  # num_decoder_layers, of n-gram streams
    "nemotron_h": "names no layer count or hidden size",  # a pattern string, no count
    "blt": "names no layer count or hidden size",  # byte models around one over patches
    "xlm": "cannot find the",  # attention and MLP in separate lists, no block modules
    "gemma4_assistant": "is an assistant (draft) model",  # needs its target's KV states
    "gemma4_unified_assistant": "is an assistant (draft) model",
    "inkling2_loop_text": "times per forward",  # a loop runs some blocks several times
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small run fastest on one thread; more only spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def locked_transformers() -> str | None:
    """The transformers version pinned in constraints.txt (None without one)."""
    if not CONSTRAINTS.exists():
        return None
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line.startswith("transformers=="):
            return line.removeprefix("transformers==").strip()
    return None


def describe(err: BaseException) -> str:
    """The exception's type and the first line of its message (with the next when the first only
    announces it, ending in a colon)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or ["(no message)"]
    first = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return f"{type(err).__name__}: {first if len(first) <= 300 else first[:297] + '...'}"


def transformers_alone(family: str, what: str, step: Callable[[], T], locked: str | None) -> T:
    """Run a step in which transformers and this folder's fixtures take part, never lazarus
    (`what`: "build" or "run"). What it raises, but for the oracle's own assertions, is upstream:
    skipped with the reason; except that on the `locked` (pinned) transformers a tiny model that
    fails where the family's defaults build fails the test, the fixture being ours."""
    try:
        return step()
    except AssertionError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever transformers raises, told apart here
        version = transformers.__version__
        problem = _defaults_problem(family)
        if problem is not None:
            pytest.skip(f"upstream: transformers {version} cannot build {family} from its own "
                        f"defaults: {describe(problem)}")
        reason = (f"upstream: transformers {version} cannot {what} a tiny {family}, though it "
                  "builds one from its own defaults (tests/tiny_configs.py may need an EXTRA "
                  f"entry for it): {describe(err)}")
        if version == locked:
            pytest.fail(f"{reason} [on transformers {locked}, pinned in constraints.txt, the "
                        "fixture builds and runs every family: this is a break in the fixture]")
        pytest.skip(reason)


def _defaults_problem(family: str) -> BaseException | None:
    """What transformers raises building the family from its own default config: the config,
    then the model on the meta device (no memory, however large the defaults); None if nothing."""
    try:
        config = CONFIG_MAPPING[family]()
        with torch.device("meta"):
            AutoModelForCausalLM.from_config(config)
    except Exception as err:  # noqa: BLE001 - any failure is transformers' own
        return err
    return None


def build(family: str, folder: Path) -> Path:
    """The family's tiny checkpoint, made and saved by transformers (no lazarus code)."""
    config = tiny_config(family)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _spread_weights(model)
    model.save_pretrained(folder)
    build_tokenizer(add_bos=True).save_pretrained(folder)
    return folder


def _spread_weights(model: torch.nn.Module) -> None:
    """Wider weight matrices than HF's init (see tiny_models), so that a difference shows; other
    parameters (norms, state-space decay rates, convolutions) keep their own init."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2 and "norm" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def block_list(model: torch.nn.Module, count: int) -> torch.nn.ModuleList:
    """The decoder blocks, found without lazarus: of the module lists with one entry per layer,
    outside any vision or audio tower, the one holding the most parameters."""
    lists = [(sum(p.numel() for p in module.parameters()), name, module)
             for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and len(module) == count
             and not any(part in name for part in ("vision", "audio"))]
    assert lists, f"no list of {count} blocks in {type(model).__name__}"
    return max(lists, key=lambda entry: entry[0])[2]


def hooked_rows(family: str, folder: Path) -> Oracle:
    """(layer count, {layer: last-token rows of block L's output for each prompt alone}); None
    for a layer whose block does not output one [batch, tokens, width] residual stream."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)  # as a user would: it depends on the family
    count = getattr(model.config.get_text_config(), COUNT_KEY.get(family, "num_hidden_layers"))
    outputs: dict[int, torch.Tensor] = {}

    def keep(layer: int) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, out: Any) -> None:
            outputs[layer] = out[0] if isinstance(out, (tuple, list)) else out

        return hook

    handles = [block.register_forward_hook(keep(i))
               for i, block in enumerate(block_list(model, count))]
    rows: dict[int, list[np.ndarray]] = {layer: [] for layer in range(count)}
    try:
        for prompt in PROMPTS:
            with torch.inference_mode():
                encoded = tokenizer(prompt, return_tensors="pt", return_token_type_ids=False)
                model(**encoded, use_cache=False)
            for layer, output in outputs.items():
                rows[layer].append(output[0, -1].numpy() if output.dim() == 3 else None)
    finally:
        for handle in handles:
            handle.remove()
    return count, {layer: None if any(r is None for r in found) else np.stack(found)
                   for layer, found in rows.items()}


def lazarus_reads(folder: Path) -> list[dict[int, np.ndarray] | LazarusError]:
    """For each of LOADS, what lazarus's partial load and capture give: rows, or its refusal."""
    outcomes: list[dict[int, np.ndarray] | LazarusError] = []
    for layers in LOADS:
        try:
            info = read_model_info(str(folder))
            loaded = load_model(info, up_to_layer=max(layers))
            outcomes.append(capture(loaded, PROMPTS, CaptureRequest(layers=layers),
                                    token_budget=10_000, max_batch=len(PROMPTS)))
        except LazarusError as err:
            outcomes.append(err)
    return outcomes


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), 1e-12))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_read_exactly_or_refused_in_one_line(family, tmp_path):
    if family in SKIPPED:
        pytest.skip(SKIPPED[family])
    locked = locked_transformers()
    folder = transformers_alone(family, "build", lambda: build(family, tmp_path / family), locked)
    expected = None if family in REFUSED else transformers_alone(
        family, "run", lambda: hooked_rows(family, folder), locked)
    check_family(family, folder, lazarus_reads(folder), expected)


def check_family(family: str, folder: Path, outcomes: list[dict[int, np.ndarray] | LazarusError],
                 expected: Oracle | None) -> None:
    """Assert that lazarus's outcomes for a built family are right: refusals in one line for a
    family of REFUSED, else no refusal and every row equal to the oracle's (`expected`)."""
    refusals = [str(o) for o in outcomes if isinstance(o, LazarusError)]
    if family in REFUSED:
        assert len(refusals) == len(LOADS), f"{family}: read at some layers, refused at others"
        assert all("\n" not in reason for reason in refusals)
        assert REFUSED[family] in refusals[0]
        return
    assert refusals == [], f"{family} refused: {refusals}"
    assert expected is not None
    count, rows_by_layer = expected
    info = read_model_info(str(folder))
    assert info.layer_count == count
    for rows in outcomes:
        for layer, values in rows.items():
            assert rows_by_layer[layer] is not None, f"{family} block {layer} has no single output"
            assert info.hidden_size == rows_by_layer[layer].shape[1]
            difference = relative_difference(values, rows_by_layer[layer])
            print(f"{family} layer {layer}: relative difference {difference:.2g}")
            assert difference <= TOLERANCE, f"{family} layer {layer} differs by {difference:.2g}"


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_encoder_decoder_models_are_refused_at_every_layer(family, tmp_path):
    """Their decoder blocks need the encoder's output; reading the encoder's blocks instead, or
    the decoder's without it, would be silently something else."""
    config = tiny_config(family)
    torch.manual_seed(0)
    folder = tmp_path / family
    AutoModelForSeq2SeqLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    build_tokenizer(add_bos=False).save_pretrained(folder)
    outcomes = lazarus_reads(folder)
    assert all(isinstance(outcome, LazarusError) for outcome in outcomes)
    for outcome in outcomes:
        assert "\n" not in str(outcome)
        assert f"is an encoder-decoder model ({family})" in str(outcome)


def test_the_tables_name_only_families_transformers_offers():
    """A family that leaves transformers must leave the tables too (no stale skips). Kept against
    the pinned transformers: an older one lacks the families added since."""
    if transformers.__version__ != locked_transformers():
        pytest.skip(f"the tables follow transformers {locked_transformers()} (constraints.txt), "
                    f"this is {transformers.__version__}")
    assert set(SKIPPED) <= set(FAMILIES)
    assert set(REFUSED) <= set(FAMILIES)
    assert set(SKIPPED).isdisjoint(REFUSED)


@pytest.fixture
def fake_families(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four Llama-like families registered with transformers for one test: one whose config
    rejects its own defaults, one whose model cannot be made at all, one that rejects the tiny
    sizes only, one whose forward raises. The registries are restored afterwards."""
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    models = AutoModelForCausalLM._model_mapping
    monkeypatch.setattr(CONFIG_MAPPING, "_extra_content", dict(CONFIG_MAPPING._extra_content))
    monkeypatch.setattr(models, "_extra_content", dict(models._extra_content))

    class UnbuildableConfig(LlamaConfig):
        model_type = "lazarus_unbuildable"

        def __init__(self, **kwargs: Any):
            raise ValueError("head_dim 8 is not a multiple of 16, which NVFP4 rounding needs\n"
                             "(a second line, left out)")

    class WideOnlyConfig(LlamaConfig):
        model_type = "lazarus_wide_only"

        def __init__(self, hidden_size: int = 64, **kwargs: Any):
            if hidden_size < 64:
                raise ValueError(f"hidden_size {hidden_size} is below 64")
            super().__init__(hidden_size=hidden_size, **kwargs)

    class NoModelConfig(LlamaConfig):
        model_type = "lazarus_no_model"

    class NoForwardConfig(LlamaConfig):
        model_type = "lazarus_no_forward"

    class NoModel(LlamaForCausalLM):
        config_class = NoModelConfig

        def __init__(self, config: Any):
            raise RuntimeError("this release's model code is broken")

    class NoForward(LlamaForCausalLM):
        config_class = NoForwardConfig

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (5x32 and 64x4)")

    for config_class, model_class in (
            (UnbuildableConfig, type("Unbuildable", (LlamaForCausalLM,),
                                     {"config_class": UnbuildableConfig})),
            (WideOnlyConfig, type("WideOnly", (LlamaForCausalLM,),
                                  {"config_class": WideOnlyConfig})),
            (NoModelConfig, NoModel), (NoForwardConfig, NoForward)):
        AutoConfig.register(config_class.model_type, config_class)
        AutoModelForCausalLM.register(config_class, model_class)


@pytest.mark.parametrize(("family", "reason"), [
    ("lazarus_unbuildable", "ValueError: head_dim 8 is not a multiple of 16, which NVFP4 rounding "
                            "needs"),
    ("lazarus_no_model", "RuntimeError: this release's model code is broken"),
])
def test_a_family_transformers_cannot_build_from_its_defaults_is_skipped_as_upstream(
        fake_families, family, reason, tmp_path):
    """Skipped with the reason, even on the pinned transformers; lazarus never runs."""
    version = transformers.__version__
    with pytest.raises(pytest.skip.Exception) as skipped:
        transformers_alone(family, "build", lambda: build(family, tmp_path / family), version)
    assert str(skipped.value) == (f"upstream: transformers {version} cannot build {family} from "
                                  f"its own defaults: {reason}")
    assert not (tmp_path / family).exists()


@pytest.mark.parametrize(("family", "what", "reason"), [
    ("lazarus_wide_only", "build", "ValueError: hidden_size 32 is below 64"),
    ("lazarus_no_forward", "run", "RuntimeError: mat1 and mat2 shapes cannot be multiplied (5x32 "
                                  "and 64x4)"),
])
def test_a_tiny_model_transformers_cannot_make_is_skipped_except_on_the_pinned_version(
        fake_families, family, what, reason, tmp_path):
    """Its defaults build, so the tiny sizes may be at fault: a newer transformers may have a rule
    the fixture does not know yet (skipped), the pinned one has none (a failure of ours)."""
    version = transformers.__version__

    def step(folder: Path) -> Any:
        return build(family, folder) if what == "build" else hooked_rows(family, build(family,
                                                                                         folder))

    with pytest.raises(pytest.skip.Exception) as skipped:
        transformers_alone(family, what, lambda: step(tmp_path / "newer"), locked="0.0")
    assert str(skipped.value) == (
        f"upstream: transformers {version} cannot {what} a tiny {family}, though it builds one "
        f"from its own defaults (tests/tiny_configs.py may need an EXTRA entry for it): {reason}")
    with pytest.raises(pytest.fail.Exception, match="this is a break in the fixture"):
        transformers_alone(family, what, lambda: step(tmp_path / "pinned"), locked=version)


def test_a_wrong_read_by_lazarus_fails_the_comparison(tmp_path):
    """What lazarus reads for a buildable family passes; the same reads with one defect each (a
    value off by 1%, the rows of the wrong layer, a refusal) fail."""
    folder = build("llama", tmp_path / "llama")
    expected = hooked_rows("llama", folder)
    outcomes = lazarus_reads(folder)
    check_family("llama", folder, outcomes, expected)
    first, middle, last = (dict(rows) for rows in outcomes)
    off = middle[1].copy()
    off[0, 0] += 0.01 * np.abs(off).max()
    with pytest.raises(AssertionError, match="llama layer 1 differs by 0.01"):
        check_family("llama", folder, [first, {**middle, 1: off}, last], expected)
    with pytest.raises(AssertionError, match="llama layer 0 differs by"):
        check_family("llama", folder, [{0: middle[1]}, middle, last], expected)
    with pytest.raises(AssertionError, match="llama refused"):
        check_family("llama", folder, [first, middle, LazarusError("cannot find the blocks")],
                     expected)


def test_the_release_users_are_told_to_try_is_the_locked_one():
    """A failure inside transformers advises `pip install transformers==TESTED_TRANSFORMERS`:
    that must be the release the suite passed with, the one constraints.txt pins."""
    from lazarus.errors import TESTED_TRANSFORMERS

    assert locked_transformers() is not None
    assert locked_transformers() == TESTED_TRANSFORMERS
