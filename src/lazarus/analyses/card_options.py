"""The options of `card` (`CardOptions`): which units, and how much of each view to compute.
Checked when made, like every command's (`engine.arguments.Options`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lazarus.analyses.options import MAX_CONTROLS, check_steered
from lazarus.analyses.selection import read_direction
from lazarus.engine.arguments import Options
from lazarus.engine.checks import Layers
from lazarus.engine.measures import check_seed
from lazarus.engine.sites import RESIDUAL_WIDTH, check_site
from lazarus.errors import LazarusError
from lazarus.io.corpus import check_window
from lazarus.io.directions import Direction


@dataclass(frozen=True)
class CardOptions(Options):
    """`card`: a page per unit: what it writes, where it fires, what it does."""

    command: ClassVar[str] = "card"
    layer: Layers = -1  # the (one) layer of the units
    site: str | None = None  # where (None: mlp_post for neurons, the direction's or resid_post)
    neurons: Sequence[int] | None = None  # these units (neurons, MoE columns e*I+u, heads)
    direction: Direction | str | None = None  # or a saved direction (a Direction or its .npz)
    top_k: int = 10  # promoted and suppressed tokens of the weight view
    examples: int = 5  # top and bottom contexts of the corpus view
    window: int = 64  # tokens per corpus window
    stride: int | None = None  # tokens between window starts (None: the window)
    text_field: str = "text"  # the text field of a .jsonl, or column of a .parquet, corpus
    work_dir: str | None = None  # where the scan's shards are kept (None: the cache folder's)
    causal: bool = False  # also ablate and steer (needs a corpus)
    causal_windows: int = 8  # the first corpus windows the ablation is measured on
    controls: int = 20  # random units of the same site ablated alike (0: none)
    seed: int = 0  # seed of the controls' draws
    coefficients: Sequence[float] | None = None  # steering coefficients (0 always runs; None:
    # steer_strength.card_coefficients, -1,1,2 x a neuron's largest value, ±0.1..±0.3 x the norm
    # along a direction)
    prompt: str | None = None  # steering's prompt (None: the first window's first tokens)
    max_tokens: int = 12  # tokens generated per steering coefficient

    def check(self) -> None:
        if (self.neurons is None) == (self.direction is None):
            raise LazarusError("say which units: --neurons or --from-direction" + (
                " (not both)" if self.neurons is not None else ""))
        if self.neurons is not None and not self.neurons:
            raise LazarusError("neurons is empty (give at least one id, e.g. neurons=[3, 50])")
        if self.site is not None:
            check_site(self.site)
        for option, value in (("--top-k", self.top_k), ("--examples", self.examples),
                              ("--causal-windows", self.causal_windows),
                              ("--max-tokens", self.max_tokens)):
            if value < 1:
                raise LazarusError(f"{option} must be at least 1 (got {value})")
        if not 0 <= self.controls <= MAX_CONTROLS:
            raise LazarusError(f"--controls must be from 0 to {MAX_CONTROLS} (got "
                               f"{self.controls})")
        check_seed(self.seed)
        self._set("stride", check_window(self.window, self.stride))
        if self.work_dir is not None and not self.work_dir.strip():
            raise LazarusError("--work-dir is empty (give a folder, or leave the option out for "
                               "the cache folder's examples/)")
        if self.prompt is not None and not self.prompt.strip():
            raise LazarusError("--prompt is empty (give some text, or leave it out for the "
                               "corpus' first window)")
        if not self.causal:  # options of the causal view alone would do nothing
            given = [name for name, value in (("--prompt", self.prompt),
                                              ("--coefficients", self.coefficients))
                     if value is not None]
            if given:
                raise LazarusError(f"{' and '.join(given)} steer{'s' if len(given) == 1 else ''}"
                                   " the unit in the causal view (add --causal and --corpus, or "
                                   "leave it out)")
        check_steered(self.coefficients, "--coefficients")
        direction = read_direction(self.direction, "its projection is 0 on every token")
        self._set("direction", direction)
        if direction is not None:
            site = self.site or direction.site or "resid_post"
            if site not in RESIDUAL_WIDTH:
                raise LazarusError(f"a direction's card reads the residual stream, not {site} "
                                   f"(give a direction made at {', '.join(RESIDUAL_WIDTH)})")
