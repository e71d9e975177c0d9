"""Errors as TF Serving reports them: one gRPC status code, mapped to HTTP the way TF Serving maps it."""

from __future__ import annotations

import grpc

# TF Serving's own table (tensorflow_serving/model_servers/http_server.cc, ToHTTPStatusCode).
# Note FAILED_PRECONDITION -> 400 and UNAVAILABLE -> 503, which surprise people.
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
    """The HTTP status TF Serving's REST API answers for a gRPC/TF status code."""
    return _HTTP_STATUS.get(code, 500)


def code_number(code: grpc.StatusCode) -> int:
    """The numeric code, identical in grpc and tensorflow.error.Code."""
    return code.value[0]


def code_name(code: grpc.StatusCode) -> str:
    """The enum name as TF Serving prints it ("OK", "NOT_FOUND", ...)."""
    return code.name


def code_from_name(name: str) -> grpc.StatusCode:
    """Parse "UNAVAILABLE" (any case) into a grpc.StatusCode; ValueError if unknown."""
    try:
        return grpc.StatusCode[name.upper()]
    except KeyError:
        raise ValueError(f"unknown status code {name!r}; one of {[c.name for c in grpc.StatusCode]}") from None


class ServingError(Exception):
    """A failed request or config change, carrying the status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)
