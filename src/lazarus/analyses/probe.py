"""The probe analysis from prompts: one capture pass over both classes (and the test prompts),
the cross-validated protocol of `probe.py` at each layer with its permutation test, and the
test prompts' projections and predictions (and accuracy, given their labels);
what `Model.probe` returns and `lazarus introspect probe` renders (never prints)."""

from __future__ import annotations

from collections.abc import Sequence

from lazarus.engine.capture import CaptureRequest
from lazarus.engine.collect import Progress, collect
from lazarus.engine.handle import Handle
from lazarus.engine.positions import Position, parse_position
from lazarus.errors import LazarusError
from lazarus.results.probe import ProbeResult
from lazarus.stats import probe
from lazarus.text import agree, plural


def check_inputs(count_a: int, count_b: int, label_a: str, label_b: str, method: str) -> None:
    """What can be refused before any model is read."""
    for option, label in (("--label-a", label_a), ("--label-b", label_b)):
        if not label.strip():
            raise LazarusError(f"{option} is empty (give the class a name)")
    probe.check_classes(count_a, count_b, label_a, label_b)
    if label_a == label_b:
        raise LazarusError(f"both classes are labelled {label_a!r} "
                           "(give --label-a and --label-b different names)")
    if method not in probe.METHODS:
        raise LazarusError(f"unknown probe method {method!r} "
                           f"(use one of: {', '.join(probe.METHODS)})")


def analyse_probe(model: Handle, class_a: Sequence[str], class_b: Sequence[str],
                  layers: Sequence[int], *, label_a: str, label_b: str, site: str = "resid_post",
                  position: Position = "last", method: str = "logistic",
                  test: Sequence[str] = (), test_labels: Sequence[str] | None = None,
                  permutations: int | None = None, alpha: float | None = None,
                  progress: Progress | None = None) -> ProbeResult:
    import numpy as np


    position = parse_position(str(position), allow_all=False)
    check_inputs(len(class_a), len(class_b), label_a, label_b, method)
    permutations = probe.PERMUTATIONS if permutations is None else permutations
    alpha = probe.ALPHA if alpha is None else alpha
    probe.check_settings(method, permutations, alpha)
    if test_labels is not None:
        if len(test_labels) != len(test):
            raise LazarusError(f"got {plural(len(test_labels), 'test label')} for "
                               f"{plural(len(test), 'test prompt')} (give one label per test "
                               "prompt, in the same order)")
        probe.check_test_labels(test_labels, label_a, label_b)
    shared = sorted(set(class_a) & set(class_b))
    if shared:
        model.warn(f"{plural(len(shared), 'prompt')} {agree(len(shared), 'is', 'are')} in both "
                   f"classes, e.g. {shared[0]!r}; "
                   "no probe can tell those apart")
    prompts = [*class_a, *class_b, *test]  # one pass for everything
    collected = collect(model.info, prompts, CaptureRequest(tuple(layers), site, position),
                        model.settings, progress=progress, notify=model.notify,
                        loader=model.weights)
    if any(np.isnan(rows).any() for rows in collected.rows.values()):
        raise LazarusError(f"the {site} values of this MoE model exist only for the experts "
                           "each token was routed to, so a probe cannot use them (probe "
                           "--site router, resid_post or mlp_out)")
    trained = len(class_a) + len(class_b)
    report = probe.probe_layers(
        {layer: rows[:trained] for layer, rows in collected.rows.items()}, len(class_a),
        method=method, label_a=label_a, label_b=label_b, permutations=permutations, alpha=alpha)
    scored = probe.score_test(report.fit, collected.rows[report.top_layer][trained:],
                              None if test_labels is None else list(test_labels))
    return ProbeResult(report=report, test_prompts=tuple(test), test=scored,
                       model_id=model.model_id, site=site, position=position,
                       device=collected.device, dtype=collected.dtype,
                       training_prompts=(*class_a, *class_b))
