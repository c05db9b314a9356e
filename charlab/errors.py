"""User-facing errors.

Anything a user can cause (a wrong path, a corrupt file, a checkpoint of another
architecture) raises a `CharlabError` with a message that says what to do. The CLI
prints it without a traceback and exits 2; the app shows it in the page.
"""


class CharlabError(Exception):
    """A problem with the user's input, explained in words."""


class DataError(CharlabError):
    """A data source that cannot be read or holds no usable image."""


class CheckpointError(CharlabError):
    """A checkpoint that is missing, corrupt, or does not fit the model asked for."""


class RunError(CharlabError):
    """A run directory that is missing or in the wrong state for the request."""


class UnknownNameError(CharlabError, KeyError):
    """A registry lookup of a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
