"""The probe analysis from prompts: one capture pass over both classes (and the test prompts),
the cross-validated protocol of `stats.probe` at each layer with its permutation test, and the
test prompts' projections and predictions (and accuracy, given their labels);
what `Model.probe` returns and `lazarus introspect probe` renders (never prints)."""

from __future__ import annotations

from collections.abc import Sequence

from lazarus.analyses.options import ProbeOptions
from lazarus.engine.collect import Progress, collect
from lazarus.engine.handle import ModelHandle
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError
from lazarus.results.probe import ProbeResult
from lazarus.stats import probe
from lazarus.text import agree, plural


def analyse_probe(model: ModelHandle, class_a: Sequence[str], class_b: Sequence[str],
                  options: ProbeOptions, progress: Progress | None = None) -> ProbeResult:
    """Probe `options.layers` (None: every layer) between the two classes of prompts."""
    import numpy as np

    layers = (tuple(range(model.layer_count)) if options.layers is None
              else model.layers(options.layers))
    site, position, test = options.site, options.position, options.test
    probe.check_classes(len(class_a), len(class_b), options.label_a, options.label_b)
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
        method=options.method, label_a=options.label_a, label_b=options.label_b,
        permutations=options.permutations, alpha=options.alpha)
    scored = probe.score_test(report.fit, collected.rows[report.top_layer][trained:],
                              options.test_labels)
    return ProbeResult(report=report, test_prompts=tuple(test), test=scored,
                       model_id=model.model_id, site=site, position=position,
                       device=collected.device, dtype=collected.dtype,
                       training_prompts=(*class_a, *class_b))
