"""User-facing errors.

A :class:`TfvaeError` is a mistake the user can fix (a bad option, a missing file).
The CLI prints its message as one line and exits with status 2, no traceback.
"""


class TfvaeError(Exception):
    """A user mistake, reported as one line (which input, what was expected)."""

    exit_code = 2


class DataNotFoundError(TfvaeError):
    """The requested dataset is neither present locally nor downloadable."""
