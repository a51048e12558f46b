"""The keep-alive server (`lazarus serve`): a per-user process that keeps loaded models warm, so
that a CLI command on a model already loaded pays neither the imports nor the load.

The CLI still parses, checks inputs, renders and writes files; the server only computes (runs
the analysis on its warm handle) and sends the result back. `protocol` is the wire (a private
Unix socket, length-prefixed JSON frames), `codec` turns lazarus's result dataclasses into JSON
and back without pickle, `pool` holds the warm models (a lock each, least-recently-used
eviction under a memory cap), `server` answers requests and `client` asks them.
"""
