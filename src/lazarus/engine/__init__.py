"""Running a model: config.json's fields, which model a name means, placement, loading and
checkpoint checks, activation sites (MoE included), token positions, the one hook owner
(`trace.Trace`), interventions, the memory budget and batch plan, capture, the activation cache,
argument checks, and the `Handle` every analysis takes. May import `io`, `errors` and `text`;
never a layer above. torch and transformers are imported inside functions."""
