"""`python -m lazarus …`: the same as the `lazarus` command."""

from lazarus.cli import entry

entry()
