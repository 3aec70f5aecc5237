"""Domain errors of the control plane. Each maps to one canonical gRPC code and carries an
``ErrorInfo`` reason in UPPER_SNAKE_CASE; the service layer turns them into a gRPC status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

# One type for a bad field everywhere: servers raise it, the SDK decodes it, agents validate with it.
from floe.errors import FieldViolation

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "FloeError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
]

ERROR_DOMAIN = "floe.dev"


class FloeError(Exception):
    """Base of the errors a caller sees as a gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations)
        self.retry_after = retry_after


class InvalidArgument(FloeError):
    """Raised when a request field is malformed; ``violations`` names every bad field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def from_violations(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(message, violations=violations, metadata={"fields": ",".join(v.field for v in violations)})


class NotFound(FloeError):
    """Raised when the named resource does not exist (or is not visible to the caller)."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "RESOURCE_NOT_FOUND"


class AlreadyExists(FloeError):
    """Raised when creating a resource whose name is taken."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "RESOURCE_ALREADY_EXISTS"


class Aborted(FloeError):
    """Raised when the etag sent is not the current one: read again and retry."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ETAG_MISMATCH"


class FailedPrecondition(FloeError):
    """Raised when the system is not in a state that allows the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(FloeError):
    """Raised when the caller is authenticated but its role or tenant does not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(FloeError):
    """Raised when the credential is missing, malformed, unknown, expired or revoked."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class DeadlineExceeded(FloeError):
    """Raised when something the call waited for (an agent's answer) did not come in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class ResourceExhausted(FloeError):
    """Raised when a rate or size limit is hit; ``retry_after`` says when to try again."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"
