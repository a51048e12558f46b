"""What steering found (`SteerResult`): per coefficient and prompt the continuation and the
named tokens' log-probabilities, with the JSON `lazarus introspect steer -o` writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus import __version__
from lazarus.results.plot_causal import plot_steer
from lazarus.results.tables import dataframe
from lazarus.text import json_plain


@dataclass(frozen=True)
class SteerRun:
    coefficient: float
    continuations: tuple[str, ...]  # per prompt
    log_probs: tuple[tuple[float, ...], ...]  # per prompt, per named token
    changes: tuple[tuple[float, ...], ...]  # the same minus coefficient 0's
    # per prompt: log p(coefficient 0's continuation | prompt) at this coefficient, summed
    # over its tokens (teacher-forced; nats)
    unsteered_log_probs: tuple[float, ...] = ()


@dataclass(frozen=True)
class SteerResult:
    model_id: str
    prompts: tuple[str, ...]
    layer: int
    site: str
    source: str  # where the vector came from, said to the user
    scale_kind: str  # "relative" or "absolute"
    scale: float  # what the coefficient multiplies: mean activation norm, or 1
    vector: np.ndarray  # unit direction, or the neuron values
    tokens: tuple[str, ...]
    max_tokens: int
    temperature: float
    seed: int
    runs: tuple[SteerRun, ...]  # coefficient 0 first, then the ones asked for
    activation_norm: float = 0.0  # mean per-token L2 norm of the site, BOS-like prefix left out
    norm_tokens: int = 0  # the tokens that mean is over
    clamp: bool = False  # neurons set to coefficient x value, not added to
    # MoE expert units: the norm is over the units of the experts each token was routed to
    # (the others do not exist for it, and the vector is added there only)
    routed_only: bool = False

    def added_fraction(self, run: SteerRun) -> float | None:
        """The added vector's length over `activation_norm` (None when clamping: nothing is
        added, or when the norm is 0)."""
        if self.clamp or not self.activation_norm:
            return None
        return self.added_norm(run) / self.activation_norm

    def added_norm(self, run: SteerRun) -> float:
        """The L2 length of the vector `run` added."""
        return abs(run.coefficient) * self.scale * float(np.linalg.norm(self.vector))

    def plot(self, path: str) -> None:
        """Log-probabilities against the coefficient (see `results.plot_causal`), as .png or
        .svg; needs matplotlib."""
        plot_steer(self, path)

    def to_json(self) -> dict[str, Any]:
        """Every number: what `lazarus introspect steer -o FILE.json` writes (plain JSON types;
        a non-finite log-probability is null)."""
        return json_plain({
            "lazarus_version": __version__, "model_id": self.model_id, "layer": self.layer,
            "site": self.site, "source": self.source, "scale_kind": self.scale_kind,
            "scale": self.scale, "vector": [float(v) for v in self.vector],
            "tokens": list(self.tokens), "max_tokens": self.max_tokens,
            "temperature": self.temperature, "seed": self.seed,
            "activation_norm": self.activation_norm, "norm_tokens": self.norm_tokens,
            "clamp": self.clamp, "norm_routed_units_only": self.routed_only,
            "prompts": [{"prompt": prompt, "runs": [{
                "coefficient": run.coefficient,
                "added_norm": self.added_norm(run),
                "added_fraction": self.added_fraction(run),
                "continuation": run.continuations[i],
                "token_log_probs": dict(zip(self.tokens, run.log_probs[i], strict=True)),
                "token_log_prob_changes": dict(zip(self.tokens, run.changes[i], strict=True)),
                "unsteered_continuation_log_prob": (run.unsteered_log_probs[i]
                                                    if run.unsteered_log_probs else None),
            } for run in self.runs]} for i, prompt in enumerate(self.prompts)],
        })

    def to_numpy(self) -> np.ndarray:
        """The named tokens' log-probabilities (nats), float64 [runs, prompts, tokens]: runs in
        `runs` order (coefficient 0 first); the vector added is `vector`."""
        shape = (len(self.runs), len(self.prompts), len(self.tokens))
        return np.array([run.log_probs for run in self.runs], dtype=np.float64).reshape(shape)

    def to_pandas(self):  # -> pandas.DataFrame
        """One row per coefficient x prompt (x named token, with `tokens`): the continuation,
        the added vector's length and, per token, its log-probability and change from
        coefficient 0; needs pandas."""
        records: dict[str, list[Any]] = {
            "coefficient": [], "prompt_index": [], "prompt": [], "added_norm": [],
            "added_fraction": [],
            "continuation": [], "token": [], "log_prob": [], "log_prob_change": []}
        for run in self.runs:
            for i, prompt in enumerate(self.prompts):
                named = list(zip(self.tokens, run.log_probs[i], run.changes[i], strict=True))
                for token, log_prob, change in named or [(None, None, None)]:
                    for key, value in (("coefficient", run.coefficient), ("prompt_index", i),
                                       ("prompt", prompt), ("added_norm", self.added_norm(run)),
                                       ("added_fraction", self.added_fraction(run)),
                                       ("continuation", run.continuations[i]), ("token", token),
                                       ("log_prob", log_prob), ("log_prob_change", change)):
                        records[key].append(value)
        if not self.tokens:
            for key in ("token", "log_prob", "log_prob_change"):
                del records[key]
        return dataframe(records)
