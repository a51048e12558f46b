"""Files in and out: `@file` lists and atomic writes, `.npz` read without pickle, corpora cut
into windows, the command line's lists, directions, folder walks. May import `errors` and
`text` only; pyarrow is imported inside functions."""
