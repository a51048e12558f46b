"""The probe analysis from prompts: one capture pass over both classes (and the test prompts),
the cross-validated protocol of `stats.probe` at each layer with its permutation test, and the
test prompts' projections and predictions (and accuracy, given their labels);
what `Model.probe` returns and `lazarus introspect probe` renders (never prints).

Prompts are the unit (`io.distinct`): a prompt repeated within a class or among the test
prompts is merged into one (said through `model.notify`), so that folds and shuffles deal out
distinct prompts and copies never sit on both sides; a prompt in both classes is refused. A
test prompt that is also a training prompt is predicted but marked in-sample (in the report,
not in a note), and its prediction never counts as held out.
"""

from __future__ import annotations

from collections.abc import Sequence

from lazarus.analyses.options import ProbeOptions
from lazarus.engine.collect import Progress, collect
from lazarus.engine.handle import ModelHandle
from lazarus.engine.trace import CaptureRequest
from lazarus.errors import LazarusError
from lazarus.io.distinct import in_sample, merge, merge_classes
from lazarus.results.probe import ProbeResult
from lazarus.stats import probe


def analyse_probe(model: ModelHandle, class_a: Sequence[str], class_b: Sequence[str],
                  options: ProbeOptions, progress: Progress | None = None) -> ProbeResult:
    """Probe `options.layers` (None: every layer) between the two classes of prompts."""
    import numpy as np

    layers = (tuple(range(model.layer_count)) if options.layers is None
              else model.layers(options.layers))
    site, position = options.site, options.position
    training, count_a = merge_classes(class_a, class_b, options.label_a, options.label_b)
    tests = merge(options.test, options.test_labels, "test-labels")
    seen = in_sample(tests.prompts, training.prompts)
    for note in (training.note("training prompts"), tests.note("test prompts")):
        if note is not None:
            model.notify(note)
    class_a, class_b = training.prompts[:count_a], training.prompts[count_a:]
    test = tests.prompts
    probe.check_classes(len(class_a), len(class_b), options.label_a, options.label_b)
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
                              tests.labels, in_sample=seen)
    return ProbeResult(report=report, test_prompts=test, test=scored,
                       model_id=model.model_id, site=site, position=position,
                       device=collected.device, dtype=collected.dtype,
                       training_prompts=training.prompts, merged_copies=training.merged,
                       test_merged_copies=tests.merged)
