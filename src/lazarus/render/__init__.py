"""Text (and HTML) reports made from result objects, returned as strings; never prints. May
import `results`, `stats`, `engine`, `io`, `errors` and `text`; never `analyses`, `api` or
`cli`. numpy at most: no torch, no matplotlib."""
