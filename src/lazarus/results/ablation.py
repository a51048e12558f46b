"""What an ablation found, as frozen dataclasses: per prompt and condition the outcome, the
control, per-label summaries, the JSON `lazarus introspect ablate -o` writes, and each prompt's
change as an array (`to_numpy`) and a table (`to_pandas`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lazarus import __version__
from lazarus.results.plot_causal import plot_ablation
from lazarus.results.tables import dataframe
from lazarus.stats.controls import NO_P_AT_ROUNDING, Z_NOTE, Control
from lazarus.text import json_plain


@dataclass(frozen=True)
class Outcome:
    """One prompt under one condition (or the baseline)."""

    continuation: str  # greedy, decoded: as many tokens as the answer, else max_tokens
    answer_log_prob: float | None = None  # pairs: sum over the answer's tokens (nats)
    answer_token_log_probs: tuple[float, ...] | None = None
    reproduces: bool | None = None  # pairs: greedy decoding gives the answer's tokens
    kl: float | None = None  # bare prompts, ablated only: KL(baseline || ablated), nats


@dataclass(frozen=True)
class Condition:
    layers: tuple[int, ...]
    outcomes: tuple[Outcome, ...]
    effect: float
    control: Control | None
    zero_to_rounding: bool = False  # every prompt's change is within float rounding


@dataclass(frozen=True)
class AblationResult:
    model_id: str
    prompts: tuple[str, ...]
    answers: tuple[str, ...] | None
    labels: tuple[str, ...] | None
    site: str
    component: str | None  # "mlp" / "attention", or None for neurons
    neurons: tuple[int, ...] | None
    selection: str  # where the neurons came from, said to the user
    method: str
    reference: tuple[str, ...]  # the prompts mean / resample values came from
    resampled_from: tuple[int, ...] | None  # resample: each prompt's reference prompt
    sweep: bool
    seed: int
    effect_name: str
    baseline: tuple[Outcome, ...]
    conditions: tuple[Condition, ...]

    def label_summary(self, condition: Condition) -> list[dict[str, Any]]:
        """Per label (in order of first appearance): prompts, means baseline vs ablated."""
        if self.labels is None:
            return []
        rows = []
        for label in dict.fromkeys(self.labels):
            chosen = [i for i, name in enumerate(self.labels) if name == label]
            rows.append({"label": label, "prompts": len(chosen),
                         **_summary([self.baseline[i] for i in chosen],
                                    [condition.outcomes[i] for i in chosen])})
        return rows

    @property
    def pairs(self) -> bool:
        """Whether prompts came with answers (measured: answer log-probs, else next-token KL)."""
        return self.answers is not None

    def plot(self, path: str) -> None:
        """Each prompt's change against the random draws' (see `results.plot_causal`), as
        .png or .svg; needs matplotlib."""
        plot_ablation(self, path)

    def to_json(self) -> dict[str, Any]:
        """Every number: what `lazarus introspect ablate -o FILE.json` writes (plain JSON types;
        a non-finite number is null)."""
        return json_plain({
            "lazarus_version": __version__,
            "model_id": self.model_id,
            "site": self.site,
            "component": self.component,
            "neurons": None if self.neurons is None else list(self.neurons),
            "neuron_selection": self.selection,
            "method": self.method,
            "reference_prompts": list(self.reference),
            "resampled_from": None if self.resampled_from is None else list(self.resampled_from),
            "sweep": self.sweep,
            "seed": self.seed,
            "effect": self.effect_name,
            "prompts": [{"prompt": p, "answer": None if self.answers is None else self.answers[i],
                         "label": None if self.labels is None else self.labels[i],
                         "baseline": asdict(self.baseline[i])}
                        for i, p in enumerate(self.prompts)],
            "conditions": [{
                "layers": list(c.layers),
                "effect": c.effect,
                "zero_to_rounding": c.zero_to_rounding,
                "ablated": [asdict(o) for o in c.outcomes],
                "by_label": self.label_summary(c),
                "control": None if c.control is None else {
                    **{k: v for k, v in asdict(c.control).items()
                       if k not in ("neurons", "prompt_effects")},
                    "effects": list(c.control.effects),
                    "prompt_effects": [list(draw) for draw in c.control.prompt_effects],
                    "neurons": [[list(layer) for layer in draw] for draw in c.control.neurons],
                    "note": NO_P_AT_ROUNDING if c.zero_to_rounding else None,
                    "z_note": None if c.control.z is None else Z_NOTE,
                },
            } for c in self.conditions],
        })

    def to_numpy(self) -> np.ndarray:
        """Each prompt's change under each condition, float64 [conditions, prompts]: with
        answers the drop in the answer's log-probability (baseline minus ablated, nats), else
        KL(baseline || ablated) of the next token; a condition's `effect` is its row's mean."""
        return np.array([[self._change(i, c) for i in range(len(self.prompts))]
                         for c in self.conditions], dtype=np.float64)

    def to_pandas(self):  # -> pandas.DataFrame
        """One row per condition x prompt: the condition (its index and layers, as "0,2"), the
        prompt (with answer and label), both continuations, what was measured (with answers:
        log-probs and whether greedy decoding reproduces the answer; else the KL) and the
        change `to_numpy` holds; needs pandas."""
        records: dict[str, list[Any]] = {}
        for k, c in enumerate(self.conditions):
            for i, prompt in enumerate(self.prompts):
                base, ablated = self.baseline[i], c.outcomes[i]
                row = {"condition": k, "layers": ",".join(map(str, c.layers)),
                       "prompt_index": i, "prompt": prompt,
                       "answer": None if self.answers is None else self.answers[i],
                       "label": None if self.labels is None else self.labels[i],
                       "baseline_continuation": base.continuation,
                       "continuation": ablated.continuation}
                if self.pairs:
                    row.update(baseline_log_prob=base.answer_log_prob,
                               log_prob=ablated.answer_log_prob,
                               baseline_reproduces=base.reproduces, reproduces=ablated.reproduces)
                else:
                    row["kl"] = ablated.kl
                row["change"] = self._change(i, c)
                for key, value in row.items():
                    records.setdefault(key, []).append(value)
        return dataframe(records)

    def _change(self, prompt: int, condition: Condition) -> float:
        ablated = condition.outcomes[prompt]
        if self.pairs:
            return self.baseline[prompt].answer_log_prob - ablated.answer_log_prob
        return ablated.kl


def _summary(base: list[Outcome], ablated: list[Outcome]) -> dict[str, Any]:
    if base and base[0].answer_log_prob is not None:
        before = [o.answer_log_prob for o in base]
        after = [o.answer_log_prob for o in ablated]
        return {"baseline_log_prob": float(np.mean(before)),
                "ablated_log_prob": float(np.mean(after)),
                "baseline_reproduced": sum(bool(o.reproduces) for o in base),
                "ablated_reproduced": sum(bool(o.reproduces) for o in ablated)}
    return {"kl": float(np.mean([o.kl for o in ablated])),
            "continuations_changed": sum(b.continuation != a.continuation
                                         for b, a in zip(base, ablated, strict=True))}
