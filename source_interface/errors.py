"""The source interface's exceptions: one root, and the HTTP errors it raises itself."""

from werkzeug.exceptions import ServiceUnavailable


class SourceInterfaceError(Exception):
    """Root of the exceptions raised by the source interface."""


class ServerBusy(SourceInterfaceError, ServiceUnavailable):
    """Too many codename derivations at once: the reporter should retry in a moment."""

    description = "busy"
