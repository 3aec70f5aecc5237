"""Errors of the query agent. Each carries a canonical gRPC code, an UPPER_SNAKE_CASE reason and
a sentence for the person who sent the query; ``status_trailer`` turns one into the
``grpc-status-details-bin`` trailer (an ``ErrorInfo``) the control plane and SDK decode."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

__all__ = [
    "ERROR_DOMAIN",
    "QueryError",
    "denied",
    "invalid",
    "not_found",
    "status_trailer",
]

ERROR_DOMAIN = "floe.dev"


class QueryError(Exception):
    """Raised when a query (or a schema/listing call) cannot be answered; ``code`` says why."""

    def __init__(
        self, code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})


def denied(message: str, reason: str = "QUERY_NOT_ALLOWED") -> QueryError:
    """A statement the isolation rules refuse."""
    return QueryError(grpc.StatusCode.PERMISSION_DENIED, message, reason)


def invalid(message: str, field: str, reason: str = "INVALID_ARGUMENT") -> QueryError:
    return QueryError(grpc.StatusCode.INVALID_ARGUMENT, message, reason, {"field": field})


def not_found(message: str) -> QueryError:
    return QueryError(grpc.StatusCode.NOT_FOUND, message, "RESOURCE_NOT_FOUND")


def status_trailer(err: QueryError) -> tuple[tuple[str, bytes], ...]:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata))
    code = getattr(code_pb2, err.code.name)
    status = status_pb2.Status(code=code, message=err.message, details=[info])
    return (("grpc-status-details-bin", status.SerializeToString()),)
