"""Errors carrying TF Serving's status codes and texts, and their HTTP mapping."""

from __future__ import annotations

import grpc

# TF Serving's REST server maps a Status code to an HTTP status code (http_server.cc,
# ToHTTPStatusCode); clients see exactly these numbers.
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status TF Serving's REST API answers for a status ``code``."""
    return _HTTP_STATUS.get(code, 500)


class ServingError(Exception):
    """A request failed with a TF Serving status: a code and TF Serving's message text.

    The faces turn it into a gRPC status (``context.abort(err.code, err.message)``) or a REST
    ``{"error": message}`` body with ``http_status(err.code)``.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status code for this error."""
        return http_status(self.code)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"

    @classmethod
    def invalid_argument(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.NOT_FOUND, message)

    @classmethod
    def failed_precondition(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.FAILED_PRECONDITION, message)

    @classmethod
    def unavailable(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.UNAVAILABLE, message)

    @classmethod
    def resource_exhausted(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    @classmethod
    def internal(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.INTERNAL, message)

    @classmethod
    def unimplemented(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.UNIMPLEMENTED, message)

    @classmethod
    def data_loss(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.DATA_LOSS, message)

    @classmethod
    def unknown(cls, message: str) -> ServingError:
        return cls(grpc.StatusCode.UNKNOWN, message)
