"""The control plane's HTTP port: probes (/livez /readyz /startupz /healthz) and /metrics, which
need no credential, and gRPC-web (``control_plane/grpcweb.py``), whose calls authenticate like
any gRPC call. Later also the dashboard."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from floe.v1 import health_pb2

__all__ = ["build_http_app"]

HS = health_pb2.HealthStatus


def build_http_app(
    *,
    version: str,
    started: float,
    is_started: Callable[[], bool],
    store_check: Callable[[], Awaitable[health_pb2.DependencyCheck]],
) -> web.Application:
    cache: dict[str, tuple[float, health_pb2.DependencyCheck]] = {}

    async def checked() -> health_pb2.DependencyCheck:
        # Probe bursts hit the store at most once a second.
        hit = cache.get("store")
        if hit and time.monotonic() - hit[0] < 1.0:
            return hit[1]
        result = await store_check()
        cache["store"] = (time.monotonic(), result)
        return result

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        check = await checked()
        ok = is_started() and check.status == HS.HEALTH_STATUS_HEALTHY
        body = {"status": "ready" if ok else "not ready"}
        if check.message:
            body["reason"] = check.message
        return web.json_response(body, status=200 if ok else 503)

    async def startupz(request: web.Request) -> web.Response:
        if not is_started():
            return web.json_response({"status": "starting"}, status=503)
        return await readyz(request)

    async def healthz(request: web.Request) -> web.Response:
        check = await checked()
        healthy = check.status == HS.HEALTH_STATUS_HEALTHY
        return web.json_response(
            {
                "status": "healthy" if healthy else "unhealthy",
                "service": "floe-control-plane",
                "version": version,
                "uptime_seconds": int(time.monotonic() - started),
                "store": {
                    "healthy": healthy,
                    "latency_ms": round(check.latency.ToNanoseconds() / 1e6, 3),
                    **({"error": check.message} if check.message else {}),
                },
            },
            status=200,
        )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/startupz", startupz)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
