"""`AttributeOptions`: what `attribute` estimates and checks, apart from the analysis, so that
the options can cross the keep-alive server's socket (`serve.codec`) without its module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lazarus.analyses.pairs import PairOptions, check_sites
from lazarus.engine.checks import Layers
from lazarus.engine.measures import check_seed
from lazarus.engine.pair_terms import POSITION_SITES
from lazarus.errors import LazarusError

ATTRIBUTE_SITES = ("mlp_post", "attn_head", *POSITION_SITES)
METHODS = ("atp", "ig")
MAX_STEPS = 1000


@dataclass(frozen=True)
class AttributeOptions(PairOptions):
    """`attribute`: every unit's estimated patching effect, checked against real patches."""

    command: ClassVar[str] = "attribute"
    sites: Sequence[str] = ("mlp_post",)  # what units: `ATTRIBUTE_SITES`
    layers: Layers = "all"  # at which layers
    method: str = "atp"  # atp (attribution patching) or ig (integrated gradients)
    steps: int = 10  # ig: points on the path from corrupted to clean
    top: int = 20  # how many units of largest |estimate| to list
    # units of largest |estimate| patched for real, and as many random ones (None: `CHECKED`,
    # or half the units when there are fewer than twice as many)
    self_check: int | None = None
    seed: int = 0  # seed of the random units

    def check(self) -> None:
        super().check()
        check_sites(self.sites, ATTRIBUTE_SITES,
                    "site {site} has no units to attribute (choose from: {known})")
        if self.method not in METHODS:
            raise LazarusError(f"unknown method {self.method!r} (choose atp or ig)")
        if not 1 <= self.steps <= MAX_STEPS:
            raise LazarusError(f"--steps must be from 1 to {MAX_STEPS} (got {self.steps})")
        if self.top < 1:
            raise LazarusError(f"--top must be at least 1 (got {self.top})")
        if self.self_check is not None and self.self_check < 0:
            raise LazarusError(f"--check must be 0 or more (got {self.self_check})")
        check_seed(self.seed)
