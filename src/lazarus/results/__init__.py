"""Result types (frozen dataclasses) and their exports: JSON, numpy, tidy tables for pandas and
CSV, plots. What was computed, kept apart from how; never prints. May import `stats`, `engine`,
`io`, `errors` and `text`; never the layers above. pandas and matplotlib are imported inside the
functions that need them."""
