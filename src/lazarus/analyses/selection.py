"""Which neurons an analysis reads: the rules every command shares, written once. A top-k is at
least 1; a direction given by its file is read once, when the options are made; a direction
made elsewhere is checked against the request (its site, layer, model, position and width)
before any weight loads, and against each layer's width once it is seen; neuron ids likewise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from lazarus.engine.handle import ModelHandle
from lazarus.engine.positions import Position, parse_position, same_token
from lazarus.engine.sites import RESIDUAL_WIDTH, neuron_out_of_range
from lazarus.engine.widths import mlp_post_bound
from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, load_direction
from lazarus.text import plural


def check_top_k(top_k: int | None) -> None:
    """--top-k, when given, is at least 1."""
    if top_k is not None and top_k < 1:
        raise LazarusError(f"--top-k must be at least 1 (got {top_k})")


def read_direction(direction: Direction | str | None,
                   zeros: str = "it ranks no neuron") -> Direction | None:
    """The direction, read from its .npz file when given by its path (every problem with the
    file is one line, before any model is looked at; `zeros`: what the command cannot do with
    an all-zero one)."""
    return load_direction(direction, zeros) if isinstance(direction, str) else direction


def direction_name(direction: Direction) -> str:
    """How messages name a direction: its file, if it came from one."""
    return direction.source or "the direction"


def top_of(direction: Direction, count: int) -> str:
    """Where a direction's top neurons came from, as every report says it."""
    return f"top {count} of {direction_name(direction)} by {direction.ranking_name()}"


def check_direction(model: ModelHandle, direction: Direction, layers: Sequence[int], site: str,
                    position: Position | None) -> None:
    """A direction against the request, before any weight loads: refuse another site or a
    width no layer of the site has (from config.json), warn of another layer, model or
    position (`position` None: every token is read, so the one it was made at does not
    apply)."""
    _check_made(direction, model.model_id, layers, site, position, model.warn)
    _check_early(direction, model.info.config, model.hidden_size, site)


def _check_made(direction: Direction, model_id: str, layers: Sequence[int], site: str,
                position: Position | None, warn: Callable[[str], None]) -> None:
    """A direction read elsewhere names other neurons: refuse another site, warn of the rest.
    What the file does not name (site, layer, position, model) is not checked."""
    name = direction_name(direction)
    made_site = direction.site
    if made_site is not None and made_site != site:  # other neurons, even where widths agree
        raise LazarusError(f"{name} was made at site {made_site}, not {site} "
                           f"(add --site {made_site})")
    if direction.layer is not None and tuple(layers) != (direction.layer,):
        named = f"(layer {direction.layer})" in name  # not twice when its name says it
        others = [layer for layer in layers if layer != direction.layer]
        where = f"{'layer' if len(others) == 1 else 'layers'} {', '.join(map(str, others))}"
        if len(others) == len(layers):
            tail = f"you are analysing {where}"
        else:
            tail = f"{'' if named else 'and is '}also used at {where}"
        warn(f"{name}: {tail}" if named else f"{name} was made at layer {direction.layer}, {tail}")
    if direction.model_id and not same_model(direction.model_id, model_id):
        warn(f"{name} was made for {direction.model_id}, you are analysing {model_id}")
    if direction.position is None or position is None:
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


def check_direction_width(direction: Direction, width: int, site: str) -> None:
    """The direction has a weight per neuron of the site, as seen at a layer."""
    if direction.hidden_size != width:
        raise LazarusError(f"{direction_name(direction)} has "
                           f"{plural(direction.hidden_size, 'weight')} but the {site} site has "
                           f"{plural(width, 'neuron')} (use a direction made for this model "
                           "and site)")


def _check_early(direction: Direction, config: dict, hidden_size: int, site: str) -> None:
    """Refuse, from config.json and before any weight loads, a direction no layer of the site
    fits: the residual-width sites are exactly the hidden size wide; mlp_post at most
    `widths.mlp_post_bound` (a shorter one is refused once the width is seen)."""
    if site in RESIDUAL_WIDTH:
        check_direction_width(direction, hidden_size, site)
        return
    bound = mlp_post_bound(config) if site == "mlp_post" else None
    if bound is not None and direction.hidden_size > bound[0]:
        width, why = bound
        raise LazarusError(f"{direction_name(direction)} has "
                           f"{plural(direction.hidden_size, 'weight')} but the {site} site has "
                           f"at most {plural(width, 'neuron')} at any layer of this model "
                           f"(config.json: {why}; use a direction made for this model and site)")


def check_neurons(neurons: Sequence[int], width: int, site: str, layer: int) -> None:
    """Each neuron id is one of the site's at `layer`, as seen there."""
    for neuron in neurons:
        if neuron >= width:
            raise neuron_out_of_range(neuron, width, site, layer)
