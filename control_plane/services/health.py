"""floe.v1.HealthService: the control plane's own checks plus the registered services."""

from __future__ import annotations

import time
from typing import Any, Protocol

from google.protobuf.duration_pb2 import Duration

from control_plane.core.pagination import page_request
from control_plane.services.common import principal
from control_plane.store import Store
from floe.v1 import health_pb2, health_pb2_grpc

__all__ = ["HealthServicer", "ServiceRegistry", "StaticRegistry", "check_store"]

HS = health_pb2.HealthStatus


class ServiceRegistry(Protocol):
    """Where agents' last reported status lives (filled by the agent control stream)."""

    def services(self) -> list[health_pb2.ServiceHealth]: ...


class StaticRegistry:
    """A registry with no agents: used until the agent stream registers some."""

    def services(self) -> list[health_pb2.ServiceHealth]:
        return []


async def check_store(store: Store) -> health_pb2.DependencyCheck:
    start = time.perf_counter()
    check = health_pb2.DependencyCheck(name="store")
    try:
        await store.ping()
        check.status = HS.HEALTH_STATUS_HEALTHY
    except Exception as exc:  # any failure means unhealthy; the message says which
        check.status = HS.HEALTH_STATUS_UNHEALTHY
        check.message = f"store is not answering: {exc}"
    latency = Duration()
    latency.FromNanoseconds(int((time.perf_counter() - start) * 1e9))
    check.latency.CopyFrom(latency)
    return check


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def __init__(self, store: Store, registry: ServiceRegistry, version: str, started: float) -> None:
        self._store = store
        self._registry = registry
        self._version = version
        self._started = started

    async def GetHealth(self, request: health_pb2.GetHealthRequest, context: Any) -> Any:
        principal()
        checks = [await check_store(self._store)]
        worst = max(c.status for c in checks)
        by_status: dict[str, int] = {}
        for svc in self._registry.services():
            key = HS.Name(svc.status).removeprefix("HEALTH_STATUS_").lower()
            by_status[key] = by_status.get(key, 0) + 1
        uptime = Duration()
        uptime.FromNanoseconds(int((time.monotonic() - self._started) * 1e9))
        return health_pb2.GetHealthResponse(
            status=worst, version=self._version, uptime=uptime, checks=checks, services_by_status=by_status
        )

    async def ListServiceHealth(self, request: health_pb2.ListServiceHealthRequest, context: Any) -> Any:
        principal()
        page = page_request(request.page_size, request.page_token, "services")
        services = sorted(self._registry.services(), key=lambda s: s.name)
        chunk, token = page.of(services)
        return health_pb2.ListServiceHealthResponse(services=chunk, next_page_token=token)
