"""What `introspect patch` does: `PatchOptions` from argv (checked before any model is looked
at), then the shared run of the pair commands (`pairs_run`)."""

from __future__ import annotations

import argparse

from lazarus.analyses.patch_options import PatchOptions
from lazarus.cli.common import given
from lazarus.cli.pairs_args import pair_fields
from lazarus.cli.pairs_run import run_pairs
from lazarus.render.patch import render_patch


def patch_options(args: argparse.Namespace) -> PatchOptions:
    """The options of `patch`, from its arguments."""
    return PatchOptions(**given(**pair_fields(args), sites=args.site, layers=args.layer,
                                direction=args.direction, seed=args.seed))


def run_patch(args: argparse.Namespace) -> int:
    return run_pairs(args, patch_options(args), render_patch, "patching",
                     ".json", ".csv")
