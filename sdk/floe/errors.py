"""The one error type SDK callers handle: ``RpcError`` with the gRPC code, the server's message
and its ``ErrorInfo`` reason, field violations and retry delay."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = ["FieldViolation", "RpcError", "from_grpc_error"]


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: a dotted path such as ``dataset.source.port`` and what is wrong."""

    field: str
    description: str


@dataclass
class RpcError(Exception):
    """Raised when a call fails. ``reason`` is the server's UPPER_SNAKE_CASE ErrorInfo reason."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)
    retry_after: float | None = None

    def __str__(self) -> str:
        reason = f" [{self.reason}]" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


def _details_bin(metadata: object) -> bytes | None:
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            return value if isinstance(value, bytes) else bytes(value, "latin-1")
    return None


def from_grpc_error(exc: grpc.RpcError) -> RpcError:
    """Build an RpcError from a grpc (sync or aio) error, decoding rich status details."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = exc.details() if hasattr(exc, "details") else str(exc)
    err = RpcError(code=code, message=message or code.name)
    raw = _details_bin(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None)
    if not raw:
        return err
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            err.reason = info.reason
            err.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            err.violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            err.retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    return err
