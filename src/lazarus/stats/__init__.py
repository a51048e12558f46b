"""The numbers, numpy only: effect sizes, permutation tests and corrections, neuron discovery,
the probe's protocol, folds and solver, mergeable sketches, intervals, the ablation's controls.
May import `engine`, `io`, `errors` and `text`; never a layer above, and never torch."""
