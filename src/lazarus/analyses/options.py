"""Each command's options: one frozen dataclass per command, each field with its default and
what it means. The CLI builds them from argv, `lazarus.Model` from its keyword arguments, and
either way they are checked when made (`engine.arguments.Options`: each field by its name, then
`check`, the rules between fields), so both refuse the same mistakes in the same words before
any model is read. A direction given by its file is read here, once.

Not in them: what the analysis reads (its prompts, or a corpus: the analysis's own arguments),
its progress callback, and the model. What needs the model (layers against its depth, a
neuron id or a direction against a site's width) the analyses check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from lazarus.analyses.selection import check_top_k, read_direction
from lazarus.analyses.shards import SHARD_WINDOWS
from lazarus.engine.arguments import Options
from lazarus.engine.checks import Layers
from lazarus.engine.measures import check_seed
from lazarus.engine.positions import Position, parse_position
from lazarus.engine.sites import check_site
from lazarus.errors import LazarusError
from lazarus.io.corpus import check_window
from lazarus.io.directions import Direction
from lazarus.stats import discover, probe
from lazarus.text import plural

ABLATE_METHODS = ("zero", "mean", "resample")
COMPONENTS = {"mlp": "mlp_out", "attention": "attn_out"}  # a component's output: its site
MAX_CONTROLS = 100_000  # each draw is one forward over every prompt


def _given(*given: tuple[str, object]) -> list[str]:
    """The options of `given` (option, value) that were given."""
    return [option for option, value in given if value is not None]


def _at_least_one(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise LazarusError(f"{option} must be at least 1 (got {value})")


@dataclass(frozen=True)
class NeuronsOptions(Options):
    """`neurons`: how chosen neurons fire across prompts."""

    command: ClassVar[str] = "neurons"
    layers: Layers = -1  # where: 3, -1 (the last), [0, 2], "0,2,5-7" or "all"
    site: str = "resid_post"  # what to read in each block (`engine.sites.SITES`)
    position: Position = "last"  # which token: last, first, mean, all, or an index
    neurons: Sequence[int] | None = None  # these neuron ids (else a direction's, or the top_k)
    direction: Direction | str | None = None  # its top_k neurons (a Direction or its .npz)
    top_k: int = 10  # neurons of the direction, of auto_discover, or with the largest spread
    labels: Sequence[str] | None = None  # one per prompt: per-label means, auto_discover
    auto_discover: bool = False  # test every neuron of the layer against the labels
    permutations: int = discover.PERMUTATIONS  # bootstrap resamples of auto_discover's test

    def check(self) -> None:
        self._set("position", parse_position(str(self.position)))
        check_site(self.site)
        if self.neurons is not None and self.direction is not None:
            raise LazarusError("--neurons and --from-direction were both given (choose one)")
        check_top_k(self.top_k)
        if self.auto_discover:
            discover.check_request(self.labels, self.neurons, self.direction is not None,
                                   None, self.position, self.permutations)
        self._set("direction", read_direction(self.direction))


@dataclass(frozen=True)
class ProbeOptions(Options):
    """`probe`: where two classes of prompts separate, and the direction."""

    command: ClassVar[str] = "probe"
    label_a: str = "class_a"  # the name of class A (the direction's positive side)
    label_b: str = "class_b"  # the name of class B
    layers: Layers | None = None  # the layers to probe (None: every layer)
    site: str = "resid_post"  # what to read in each block
    position: Position = "last"  # which token: last, first, mean or an index
    method: str = "logistic"  # how the direction is fitted (`stats.probe.METHODS`)
    test: Sequence[str] = ()  # prompts to classify with the chosen layer's probe
    test_labels: Sequence[str] | None = None  # their classes (label_a or label_b): accuracy
    permutations: int | None = None  # shuffled labellings of the test (None: 200; 0: none)
    alpha: float | None = None  # a layer is best only when p < alpha (None: 0.05)

    def check(self) -> None:
        self._set("position", parse_position(str(self.position), allow_all=False))
        check_site(self.site)
        for option, label in (("--label-a", self.label_a), ("--label-b", self.label_b)):
            if not label.strip():
                raise LazarusError(f"{option} is empty (give the class a name)")
        if self.label_a == self.label_b:
            raise LazarusError(f"both classes are labelled {self.label_a!r} "
                               "(give --label-a and --label-b different names)")
        self._set("permutations", probe.PERMUTATIONS if self.permutations is None
                  else self.permutations)
        self._set("alpha", probe.ALPHA if self.alpha is None else self.alpha)
        probe.check_settings(self.method, self.permutations, self.alpha)
        if self.test_labels is not None:
            if len(self.test_labels) != len(self.test):
                raise LazarusError(f"got {plural(len(self.test_labels), 'test label')} for "
                                   f"{plural(len(self.test), 'test prompt')} (give one label "
                                   "per test prompt, in the same order)")
            probe.check_test_labels(self.test_labels, self.label_a, self.label_b)


@dataclass(frozen=True)
class AblateOptions(Options):
    """`ablate`: knock neurons or components out and measure the loss, against chance."""

    command: ClassVar[str] = "ablate"
    layers: Layers  # where: one layer or several (the same ids at each)
    answers: Sequence[str] | None = None  # one per prompt: its log-prob is measured (else KL)
    labels: Sequence[str] | None = None  # one per prompt, shown in the report
    neurons: Sequence[int] | None = None  # these neuron ids
    direction: Direction | str | None = None  # or its top_k neurons (a Direction or its .npz)
    top_k: int = 10  # how many neurons of the direction
    component: str | None = None  # or a whole sub-block's output: mlp or attention
    site: str | None = None  # where the neurons are (None: the direction's, else resid_post)
    method: str = "zero"  # what the values become: zero, mean or resample
    reference: Sequence[str] | None = None  # prompts giving mean and resample values
    controls: int = 100  # draws of as many random neurons to compare with (0: none)
    seed: int = 0  # seed of the draws
    sweep: bool = False  # one layer at a time instead of all at once
    max_tokens: int = 8  # greedy tokens generated after bare prompts

    def check(self) -> None:
        given = _given(("--neurons", self.neurons), ("--from-direction", self.direction),
                            ("--component", self.component))
        if len(given) != 1:
            raise LazarusError("say what to ablate: one of --neurons, --from-direction or "
                               "--component" + (f" (not {' and '.join(given)})" if given else ""))
        if self.component is not None and self.site is not None:
            raise LazarusError("--site does not go with --component (the component says the "
                               "site: mlp is mlp_out, attention is attn_out)")
        if self.component is not None and self.component not in COMPONENTS:
            raise LazarusError(f"unknown component {self.component!r} (choose mlp or "
                               "attention)")
        if self.site is not None:
            check_site(self.site)
        if self.method not in ABLATE_METHODS:
            raise LazarusError(f"unknown method {self.method!r} (choose one of: "
                               f"{', '.join(ABLATE_METHODS)})")
        if not 0 <= self.controls <= MAX_CONTROLS:
            raise LazarusError(f"--controls must be from 0 to {MAX_CONTROLS} (got "
                               f"{self.controls})")
        check_seed(self.seed)
        check_top_k(self.top_k)
        _at_least_one("--max-tokens", self.max_tokens)
        self._set("direction", read_direction(self.direction,
                                               "it ranks no neuron to ablate"))


def check_steered(coefficients: Sequence[float] | None, option: str) -> None:
    """Refuse coefficients that are all 0: 0 is the unsteered run, always shown, so nothing
    would be steered, and a table of zero changes would read as 'steering does nothing'."""
    if coefficients is not None and not any(coefficients):
        raise LazarusError("every coefficient given is 0, so nothing would be steered: 0 is "
                           "the unsteered run, always shown (give a coefficient other than 0, "
                           f"e.g. {option} 0.1,0.2)")


@dataclass(frozen=True)
class SteerOptions(Options):
    """`steer`: add a direction while the model generates, and measure the change."""

    command: ClassVar[str] = "steer"
    layer: int | None = None  # where to add (None: the direction's layer)
    direction: Direction | str | None = None  # what to add: a Direction or its .npz
    positive: Sequence[str] | None = None  # or mean(positive) - mean(negative) at the layer
    negative: Sequence[str] | None = None  # (with positive)
    neurons: Mapping[int, float] | None = None  # or {neuron id: value}
    coefficients: Sequence[float] | None = None  # what the vector is multiplied by (0 always
    # runs; None: steer_strength's default, 0.2 x the activation norm for a direction, 1 else)
    absolute: bool = False  # scale 1 instead of the mean activation norm
    site: str | None = None  # where to add (None: the direction's, else resid_post)
    tokens: Sequence[str] = ()  # words whose log-probability change is measured
    max_tokens: int = 20  # tokens generated
    temperature: float = 0.0  # 0: greedy, else sampled at this temperature
    seed: int = 0  # seed of the sampling (the same draws for every coefficient)
    clamp: bool = False  # set the neurons to coefficient x value instead of adding
    compare: bool = False  # no coefficients: sweep steer_strength's range for the mode

    def check(self) -> None:
        if self.compare and self.coefficients is not None:
            raise LazarusError("compare sweeps the default range: give it or coefficients, not "
                               "both")
        check_steered(self.coefficients, "--compare")
        pair = self.positive if self.positive is not None else self.negative
        given = _given(("--direction", self.direction), ("--positive", pair),
                            ("--neurons", self.neurons))
        if len(given) != 1:
            raise LazarusError("say what to add: one of --direction, --positive with "
                               "--negative, or --neurons" + (" (not several)" if given else ""))
        if self.clamp and self.neurons is None:
            raise LazarusError("--clamp sets neurons to values: it goes with --neurons id:value")
        if (self.positive is None) != (self.negative is None):
            raise LazarusError("--positive and --negative go together (give both)")
        if self.site is not None:
            check_site(self.site)
        _at_least_one("--max-tokens", self.max_tokens)
        if self.temperature < 0:
            raise LazarusError(f"--temperature must be 0 (greedy) or more (got "
                               f"{self.temperature})")
        check_seed(self.seed)
        self._set("direction", read_direction(self.direction, "there is nothing to add"))


@dataclass(frozen=True)
class ExamplesOptions(Options):
    """`examples`: the top- and bottom-activating tokens of neurons over a corpus."""

    command: ClassVar[str] = "examples"
    layer: Layers = -1  # the (one) layer to read
    site: str = "resid_post"  # what to read
    neurons: Sequence[int] | None = None  # these neuron ids (else the direction's, else all)
    direction: Direction | str | None = None  # or its top_k neurons (a Direction or its .npz)
    top_k: int | None = None  # how many neurons of the direction (None: 10)
    projection: bool = False  # read the direction's projection (one unit), not its neurons
    examples: int = 10  # top and bottom tokens kept per neuron
    window: int = 64  # tokens per window
    stride: int | None = None  # tokens between window starts (None: the window)
    text_field: str = "text"  # the text field of a .jsonl, or column of a .parquet, corpus
    work_dir: str | None = None  # where shards are kept (None: the cache folder's examples/)
    shard_windows: int = SHARD_WINDOWS  # windows per shard, the unit of work and of resume
    ray: bool = False  # run the shards on local Ray actors
    ray_workers: int | None = None  # how many (None: a GPU each, or the CPUs / torch threads)
    ray_address: str | None = None  # or on the Ray cluster at this address
    token_budget: int | None = None  # tokens per batch (None: from the free memory)
    max_batch: int | None = None  # windows per batch at most

    def check(self) -> None:
        check_site(self.site)
        self._set("stride", check_window(self.window, self.stride))
        for option, value in (("--examples", self.examples),
                              ("--shard-windows", self.shard_windows),
                              ("--ray-workers", self.ray_workers)):
            _at_least_one(option, value)
        check_top_k(self.top_k)
        if self.neurons is not None and self.direction is not None:
            raise LazarusError("--neurons and --from-direction were both given (choose one)")
        if self.neurons is not None and not self.neurons:
            raise LazarusError("neurons is empty (give at least one id, e.g. neurons=[3, 50])")
        if self.work_dir is not None and not self.work_dir.strip():
            raise LazarusError("--work-dir is empty (give a folder, or leave the option out for "
                               "the cache folder's examples/)")
        if self.projection and self.direction is None:
            raise LazarusError("--projection reads a direction's projection (give "
                               "--from-direction FILE)")
        if self.projection and self.top_k is not None:
            raise LazarusError("--top-k chooses a direction's neurons, and --projection reads "
                               "the direction itself (choose one)")
        self._set("direction", read_direction(
            self.direction, "its projection is 0 on every token" if self.projection
            else "it ranks no neuron"))
