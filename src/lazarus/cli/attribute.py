"""What `introspect attribute` does: `AttributeOptions` from argv (checked before any model is
looked at), then the shared run of the pair commands (`pairs_run`)."""

from __future__ import annotations

import argparse

from lazarus.analyses.attribute_options import AttributeOptions
from lazarus.cli.common import given
from lazarus.cli.pairs_args import pair_fields
from lazarus.cli.pairs_run import run_pairs
from lazarus.render.attribute import render_attribution


def attribute_options(args: argparse.Namespace) -> AttributeOptions:
    """The options of `attribute`, from its arguments."""
    return AttributeOptions(**given(
        **pair_fields(args), sites=args.site, layers=args.layer, method=args.method,
        steps=args.steps, top=args.top, self_check=args.check, seed=args.seed))


def run_attribute(args: argparse.Namespace) -> int:
    return run_pairs(args, attribute_options(args), render_attribution,
                     "attributing", ".json")
