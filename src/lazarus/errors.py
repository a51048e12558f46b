"""The one user-facing error type."""


class LazarusError(Exception):
    """A mistake the user can fix: the message names the problem and the fix, on one line.

    The CLI prints it to stderr without a traceback and exits with status 2.
    """
