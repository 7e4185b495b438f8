"""Typed errors and the one mapping from error to RPC status code, shared by every transport.

Handlers raise these; the ttrpc and gRPC transports turn them into a status with `status_of`.
Messages name the thing that is wrong: `module /app.wasm: not a wasm file (starts with 7f454c46)`.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """gRPC status codes (the same numbers ttrpc carries in its Response.status)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ShimError(Exception):
    """An error with a status code. Subclasses fix the code; the message says what is wrong."""

    code: Code = Code.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ShimError):
    code = Code.INVALID_ARGUMENT


class NotFound(ShimError):
    code = Code.NOT_FOUND


class AlreadyExists(ShimError):
    code = Code.ALREADY_EXISTS


class FailedPrecondition(ShimError):
    code = Code.FAILED_PRECONDITION


class Unimplemented(ShimError):
    code = Code.UNIMPLEMENTED


class ResourceExhausted(ShimError):
    code = Code.RESOURCE_EXHAUSTED


class Internal(ShimError):
    code = Code.INTERNAL


class Unavailable(ShimError):
    code = Code.UNAVAILABLE


class DeadlineExceeded(ShimError):
    code = Code.DEADLINE_EXCEEDED


class RpcError(ShimError):
    """A status received from a remote peer (client side of ttrpc or gRPC)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        try:
            self.code = Code(code)
        except ValueError:
            self.code = Code.UNKNOWN

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def status_of(exc: BaseException) -> tuple[Code, str]:
    """The status code and message that a transport sends back for `exc`."""
    if isinstance(exc, ShimError):
        return exc.code, exc.message
    return Code.UNKNOWN, f"{type(exc).__name__}: {exc}"
