"""Which neurons an analysis reads: the rules every command shares for a direction made
elsewhere (its site, layer, model and position against the request)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from lazarus.engine.positions import parse_position, same_token
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction


def check_direction_made(direction: Direction, name: str, model_id: str, layers: Sequence[int],
                         site: str, position: str | int, warn: Callable[[str], None]) -> None:
    """A direction read elsewhere names other neurons: refuse another site, warn of the rest.
    What the file does not name (site, layer, position, model) is not checked."""
    made_site = direction.site
    if made_site is not None and made_site != site:  # other neurons, even where widths agree
        raise LazarusError(f"{name} was made at site {made_site}, not {site} "
                           f"(add --site {made_site})")
    if direction.layer is not None and tuple(layers) != (direction.layer,):
        warn(f"{name} was made at layer {direction.layer}, "
                   f"you are analysing layer {', '.join(map(str, layers))}")
    if direction.model_id and not same_model(direction.model_id, model_id):
        warn(f"{name} was made for {direction.model_id}, you are analysing "
                   f"{model_id}")
    if direction.position is None:
        return
    made_position = parse_position(direction.position)
    if same_token(made_position) != same_token(position):
        warn(f"{name} was made at position {made_position}, you are reading position "
                   f"{position} (add --position {made_position} to match)")


def same_model(recorded: str, given: str) -> bool:
    """Equal IDs, or two spellings of the same local folder."""
    if recorded == given:
        return True
    return os.path.isdir(given) and os.path.realpath(recorded) == os.path.realpath(given)
