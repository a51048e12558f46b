"""The numbers, numpy only: effect sizes, Welch's F and its bootstrap, corrections, neuron
discovery, power (what "nothing found" rules out), the probe's protocol, folds and solver,
mergeable sketches, intervals, the ablation's controls.
May import `engine`, `io`, `errors` and `text`; never a layer above, and never torch."""
