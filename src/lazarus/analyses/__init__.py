"""The analyses: neurons, probe, ablate, steer, patch and corpus examples (with the scan, its
shards and Ray). Each takes the engine's `ModelHandle` and its options, and returns a result;
none prints or registers a hook of its own (hooks belong to `engine.trace`). May import
`results`, `stats`, `engine`, `io`, `errors` and `text`; never `render`, `api` or `cli`. torch,
ray and pyarrow are imported inside functions."""
