"""Activation patching: run prompts with, per row, some of a site's values taken from another
run (a `patch` edit, `interventions`), and score each row's next-token prediction.

A job is one row of a forward: one pair's prompt (the run patched) and, in each patch edit, what
it takes from a source (that pair's values from the other run, or anything else of the same
length). Rows are batched, right-padded with an attention mask, so each computes exactly what
it would alone; the score is read at each row's last real token. `Metric` scores are torch
tensors, so that `gradients` can differentiate the same function the patches are judged by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus.engine.budget import in_halves
from lazarus.engine.capture import pad_batch, pad_id_of
from lazarus.engine.interventions import Edit
from lazarus.engine.loading import LoadedModel
from lazarus.engine.measures import check_whole
from lazarus.engine.trace import Trace
from lazarus.errors import upstream

METRICS = ("logit_diff", "logprob", "kl")
BATCH = 32  # rows per forward

Progress = Callable[[int, int], None]  # (rows done, rows in all)


@dataclass(frozen=True, eq=False)
class Metric:
    """What a run is scored by, at its last token, per pair:
    - `logit_diff`: logit of the answer minus logit of the wrong token;
    - `logprob`: log-probability of the answer;
    - `kl`: minus KL(reference || run) of the next-token distribution, in nats (0 for the
      reference run itself; `reference` holds its log-probabilities)."""

    kind: str
    answer: tuple[int, ...]  # per pair, the answer's token id
    wrong: tuple[int, ...] | None = None  # per pair, the wrong token's id (logit_diff)
    reference: tuple[np.ndarray, ...] | None = None  # per pair, float [vocab] log-probs (kl)

    def __post_init__(self) -> None:
        if self.kind not in METRICS:
            raise ValueError(f"unknown metric {self.kind!r}")
        if self.kind == "logit_diff" and self.wrong is None:
            raise ValueError("logit_diff needs the wrong tokens")
        if self.kind == "kl" and self.reference is None:
            raise ValueError("kl needs the reference log-probabilities")

    def score(self, logits: Any, pairs: Sequence[int]) -> Any:
        """[rows, vocab] logits of each row's last token -> float32 [rows] scores (torch,
        differentiable); `pairs`: each row's pair."""
        import torch

        logits = logits.float()
        index = torch.as_tensor(list(pairs), device=logits.device)
        rows = torch.arange(len(pairs), device=logits.device)
        answer = torch.as_tensor(self.answer, device=logits.device)[index]
        if self.kind == "logit_diff":
            wrong = torch.as_tensor(self.wrong, device=logits.device)[index]
            return logits[rows, answer] - logits[rows, wrong]
        log_p = torch.log_softmax(logits, dim=-1)
        if self.kind == "logprob":
            return log_p[rows, answer]
        reference = torch.as_tensor(np.stack([self.reference[p] for p in pairs]),
                                    dtype=torch.float32, device=logits.device)
        return (reference.exp() * (log_p - reference)).sum(-1)


def last_logits(loaded: LoadedModel, ids: Any, mask: Any) -> Any:
    """The model's logits at each row's last real token: [rows, vocab] (right padding). Out of
    memory passes through, for the caller's `budget.in_halves` to halve the batch."""
    import torch

    device = loaded.model.get_input_embeddings().weight.device
    with upstream(loaded.info.model_type, "the forward pass failed", pass_out_of_memory=True):
        logits = loaded.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                              use_cache=False).logits  # [rows, tokens, vocab]
    last = mask.sum(-1).to(logits.device) - 1
    return logits[torch.arange(len(last), device=logits.device), last]


def prepare(trace: Trace, mask: Any, jobs: Sequence[int]) -> None:
    """Tell the trace which jobs a batch's rows are, before its forward."""
    import torch

    width = mask.shape[1]
    trace.lengths = mask.sum(-1)
    trace.rows = torch.as_tensor(list(jobs))
    trace.positions = torch.arange(width).expand(len(jobs), width)


def score_jobs(loaded: LoadedModel, token_ids: Sequence[Sequence[int]], pairs: Sequence[int],
               edits: Sequence[Edit], metric: Metric,
               progress: Progress | None = None) -> np.ndarray:
    """float64 [jobs]: the metric of each job, job j running pair `pairs[j]`'s `token_ids`
    with the edits (patch edits index their `jobs` by j)."""
    import torch

    check_whole(loaded)
    pad = pad_id_of(loaded.tokenizer)
    order = sorted(range(len(pairs)), key=lambda j: len(token_ids[pairs[j]]))
    scores = np.empty(len(pairs), np.float64)
    done = 0

    def run(batch: list[int]) -> None:
        nonlocal done
        ids, mask = pad_batch([token_ids[pairs[j]] for j in batch], pad)
        prepare(trace, mask, batch)
        logits = last_logits(loaded, ids, mask)
        scores[batch] = metric.score(logits, [pairs[j] for j in batch]).double().cpu().numpy()
        done += len(batch)
        if progress is not None:
            progress(done, len(order))

    with torch.inference_mode(), Trace(loaded, None, edits=edits) as trace:
        in_halves(order, BATCH, run, "patched run")
    return scores


def as_sources(loaded: LoadedModel, values: Sequence[np.ndarray]) -> tuple[Any, ...]:
    """Patch sources as tensors on the model's device and dtype, converted once rather than in
    every hook."""
    import torch

    weight = loaded.model.get_input_embeddings().weight
    return tuple(torch.as_tensor(v, dtype=weight.dtype, device=weight.device) for v in values)
