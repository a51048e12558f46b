"""Memory of `attribute` and `patch`: the estimate is a running sum over pairs (equal to the mean
of each pair's estimate, weighted as the normalisation says), and a batch that runs out of
memory is run again in halves (`budget.in_halves`) with the same answer as without."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lazarus
from lazarus.engine.budget import in_halves
from lazarus.errors import LazarusError

CLEAN = ["the cat sat", "a dog", "my red hat", "one big tree", "the sun"]
CORRUPT = ["the cot sat", "a fog", "my red bat", "one big free", "the son"]
PAIRS = {"clean": CLEAN, "corrupt": CORRUPT, "answers": ["x"], "wrongs": ["y"]}


def _oom_above(rows: int, refused: list[int]):
    """A forward pre-hook for the HF embedding that fails as CUDA does when a batch has more
    than `rows` rows (noting their count in `refused`)."""
    def hook(module, args):
        if args[0].shape[0] > rows:
            refused.append(args[0].shape[0])
            raise torch.OutOfMemoryError(f"CUDA out of memory (test: {args[0].shape[0]} rows)")
    return hook


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory."),
                                   RuntimeError("DefaultCPUAllocator: not enough memory")])
def test_in_halves_retries_in_halves_with_the_same_result(error):
    items = list(range(23))
    seen, sums = [], []

    def run(batch):
        seen.append(len(batch))
        if len(batch) > 3:
            raise error
        sums.append(sum(batch))

    in_halves(items, 16, run)
    assert sum(sums) == sum(items)  # every item once, none twice
    assert max(len_ for len_ in seen if len_ <= 3) == 2  # 16 -> 8 -> 4 -> 2, then no larger
    assert seen[:4] == [16, 8, 4, 2]


def test_in_halves_says_in_one_line_when_one_item_does_not_fit():
    def run(batch):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    with pytest.raises(LazarusError) as caught:
        in_halves([0, 1], 2, run, "pair")
    assert "out of memory running one pair" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_in_halves_lets_other_errors_through():
    def run(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        in_halves([0, 1], 2, run)


@pytest.mark.parametrize("method", ["atp", "ig"])
def test_the_running_sum_is_the_gap_weighted_mean_of_each_pairs_estimate(llama_dir, method):
    """estimate(all pairs) = mean over pairs of (products_i) / mean gap, and each pair alone
    gives products_i / gap_i: so estimate = mean_i(estimate_i * gap_i) / mean_i(gap_i)."""
    model = lazarus.load(str(llama_dir))
    options = {"sites": ["mlp_post", "attn_head"], "method": method, "steps": 3,
               "self_check": 0}
    together = model.attribute(**PAIRS, **options)
    alone = [model.attribute([c], [k], ["x"], ["y"], **options)
             for c, k in zip(CLEAN, CORRUPT, strict=True)]
    for site in options["sites"]:
        for index in range(len(together.layers)):
            expected = np.mean([r.estimates[site][index] * r.gap for r in alone], axis=0)
            np.testing.assert_allclose(together.estimates[site][index] * together.gap,
                                       expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["atp", "ig"])
def test_a_forced_out_of_memory_gives_the_same_attribution(tiny_model_dirs, method):
    """The model's own forward fails on batches of more than 2 rows: every batch (clean values,
    gradients, integrated-gradient rows, the self-check's patched runs) is halved until it
    fits, and the numbers are those of a run that never ran out of memory."""
    model = lazarus.load(str(tiny_model_dirs["llama"]))
    options = {"sites": ["mlp_post"], "method": method, "steps": 4, "self_check": 3}
    plain = model.attribute(**PAIRS, **options)
    embedding = model.whole_weights().model.get_input_embeddings()
    refused: list[int] = []
    handle = embedding.register_forward_pre_hook(_oom_above(2, refused))
    try:
        squeezed = model.attribute(**PAIRS, **options)
    finally:
        handle.remove()
    assert refused  # batches did run out of memory
    for before, after in zip(plain.estimates["mlp_post"], squeezed.estimates["mlp_post"],
                             strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(squeezed.check.real, plain.check.real, rtol=1e-4, atol=1e-6)


def test_a_forced_out_of_memory_gives_the_same_patch_grid(llama_dir):
    model = lazarus.load(str(llama_dir))
    options = {"sites": ["resid_post", "attn_head"]}
    plain = model.patch(CLEAN, CORRUPT, ["x"], ["y"], **options)
    embedding = model.whole_weights().model.get_input_embeddings()
    refused: list[int] = []
    handle = embedding.register_forward_pre_hook(_oom_above(3, refused))
    try:
        squeezed = model.patch(CLEAN, CORRUPT, ["x"], ["y"], **options)
    finally:
        handle.remove()
    assert refused
    for site in options["sites"]:
        np.testing.assert_allclose(squeezed.grid(site).scores, plain.grid(site).scores,
                                   rtol=1e-4, atol=1e-5)


def test_the_self_check_in_groups_of_pairs_equals_one_group(llama_dir, monkeypatch):
    """The self-check's real patches go a group of pairs at a time (memory does not grow with
    the pairs): groups of 2 give what one group of every pair gives."""
    import lazarus.analyses.attribute as attribute

    model = lazarus.load(str(llama_dir))
    options = {"sites": ["mlp_post", "attn_head"], "layers": [0, 2], "self_check": 4}
    whole = model.attribute(**PAIRS, **options)
    monkeypatch.setattr(attribute, "BATCH", 2)
    grouped = model.attribute(**PAIRS, **options)
    assert grouped.check.units == whole.check.units
    assert np.abs(whole.check.real).max() > 1e-3
    np.testing.assert_allclose(grouped.check.real, whole.check.real, rtol=1e-5, atol=1e-6)
