"""A descriptor pool for server reflection that also finds methods.

``grpcurl describe floe.v1.TenantService.CreateTenant`` asks the reflection service for the
file containing the method's full name. With protobuf's upb backend (the default),
``DescriptorPool.FindFileContainingSymbol`` finds messages, fields, enums and services but not
methods, so the stock grpcio-reflection servicer answers "Symbol not found"
(grpc/grpc#34743). This wrapper falls back to the method's service for such names.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, descriptor_pool

__all__ = ["ReflectionPool"]


class ReflectionPool:
    """Delegates to a descriptor pool; ``FindFileContainingSymbol`` also resolves methods."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError as exc:
            missing = exc
        service_name, _, method = symbol.rpartition(".")
        if service_name:
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                service = None
            if service is not None and method in service.methods_by_name:
                return service.file
        raise missing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)
