"""Errors a user can act on. Widgets show their message verbatim; anything else
is a bug and is shown with its type name."""


class ActWidgetsError(Exception):
    """Base class: the message is written for the person at the notebook."""


class InputError(ActWidgetsError, ValueError):
    """A prompt, layer, statistic, token or vector the model cannot take."""


class ModelLoadError(ActWidgetsError, RuntimeError):
    """A model that could not be found, loaded or reached."""


class RemoteRunError(ActWidgetsError, RuntimeError):
    """NDIF refused, failed or lost a remote run; the message says which and what to do."""


class Cancelled(Exception):
    """A job noticed that a newer request superseded it."""
