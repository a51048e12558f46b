"""The options of `patch`: the pairs and metric (`pairs.PairOptions`), and where and which way
to patch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from lazarus.analyses.pairs import PairOptions, check_sites
from lazarus.engine.checks import Layers
from lazarus.engine.measures import check_seed
from lazarus.engine.pair_terms import patch_sites


@dataclass(frozen=True)
class PatchOptions(PairOptions):
    """`patch`: for every site, layer and token position (or head), the metric with that one
    activation taken from the other run, normalised so that 1 = the clean run, 0 = the
    corrupted one."""

    command: ClassVar[str] = "patch"
    sites: Sequence[str] = ("resid_post",)  # a grid for each (`patch_sites()`)
    layers: Layers = "all"  # the grid's rows
    direction: str = "denoise"  # denoise: clean into corrupted; noise: corrupted into clean
    seed: int = 0  # of the bootstrap over pairs (intervals, with several pairs)

    def check(self) -> None:
        super().check()
        check_sites(self.sites, patch_sites(),
                    "cannot patch the site {site} (choose from: {known})")
        check_seed(self.seed)
