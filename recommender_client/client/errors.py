"""The client's exception hierarchy: one base, one class per thing a caller reacts to differently.

::

    TFServingError              anything the client raises (catch this for "scoring failed")
    ├── ServingUnavailable      server not reachable / UNAVAILABLE / HTTP 503, after the retries
    ├── ServingTimeout          the call's deadline passed (DEADLINE_EXCEEDED, read timeout, 504)
    ├── BadResponse             the server answered, but not with what we asked for
    └── InvalidRequest          the request was refused as wrong (INVALID_ARGUMENT, 4xx, ...)
        └── ModelNotFound       no such model / version / label (NOT_FOUND, HTTP 404)

Only ``ServingUnavailable`` is ever retried: the others would fail the same way again, or (a
timeout) have already used the caller's whole deadline.
"""

from __future__ import annotations


class TFServingError(Exception):
    """Base class; carries the server's own message and its status code when there was one.

    Args:
        message: What went wrong, including the server's message verbatim.
        code: The gRPC status name (``"INVALID_ARGUMENT"``) or HTTP status (``404``), if any.
        server_message: The server's message alone (the ``error`` field of a REST body, the
            gRPC status details), so callers can log it without our prefix.
    """

    def __init__(self, message: str, *, code: str | int | None = None, server_message: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.server_message = server_message


class ServingUnavailable(TFServingError):
    """The server could not be reached or said it is unavailable, on every allowed attempt."""


class ServingTimeout(TFServingError):
    """The call's deadline expired before an answer arrived."""


class BadResponse(TFServingError):
    """The answer was malformed, of the wrong shape or type, or missing a requested output."""


class InvalidRequest(TFServingError):
    """The request is wrong: refused by the server, or caught by the client's own validation."""


class ModelNotFound(InvalidRequest):
    """The named model, version or version label is not being served."""
