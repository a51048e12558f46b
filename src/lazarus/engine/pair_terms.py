"""The words of the clean/corrupted pair commands (`patch`, `attribute`) that their `--help`
shows too: metrics, what the normalised scale means, patch's sites and directions. Light (no
numpy), so that the argument tree can import them."""

from __future__ import annotations

from lazarus.engine.sites import SITES

# What a normalised score of 1 and 0 mean, for every metric: the clean run's and the corrupted's.
SCALE = "1 = the clean run, 0 = the corrupted run"
METRIC_HELP = {
    "logit_diff": "logit of the answer minus logit of the wrong token",
    "logprob": "log-probability of the answer",
    "kl": "minus KL(clean run || this run) of the next-token distribution, in nats",
}

# Sites patched one token position at a time (a grid of layers x positions), and sites whose
# units are heads, patched one head at a time at every position (layers x heads); only those
# the engine knows (`engine.sites.SITES`) are offered.
POSITION_SITES = ("resid_pre", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("attn_head",)
DIRECTIONS = {
    "denoise": "denoising: clean activations patched into the corrupted run",
    "noise": "noising: corrupted activations patched into the clean run",
}


def patch_sites() -> tuple[str, ...]:
    return tuple(site for site in (*POSITION_SITES, *HEAD_SITES) if site in SITES)
