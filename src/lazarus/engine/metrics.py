"""The names of the metrics a clean/corrupted pair is judged by, and what each means, without
numpy (the CLI's argument tree shows them in --help); `patching.Metric` computes them."""

from __future__ import annotations

METRICS = ("logit_diff", "logprob", "kl")
# What a normalised score of 1 and 0 mean, for every metric: the clean run's and the corrupted's.
SCALE = "1 = the clean run, 0 = the corrupted run"
METRIC_HELP = {
    "logit_diff": "logit of the answer minus logit of the wrong token",
    "logprob": "log-probability of the answer",
    "kl": "minus KL(clean run || this run) of the next-token distribution, in nats",
}
