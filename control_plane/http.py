"""The control plane's HTTP port: probes (/livez /readyz /startupz /healthz) and /metrics, which
need no credential, gRPC-web (``control_plane/grpcweb.py``), whose calls authenticate like any
gRPC call, and the dashboard: the static files Vite built into ``web/dist`` (``index.html`` at
``/``, fingerprinted ``/assets/*`` cached for a year). The page holds no secret; everything it
shows comes over gRPC-web with the signed-in user's token."""

from __future__ import annotations

import gzip
import mimetypes
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from floe.v1 import health_pb2

__all__ = ["DEFAULT_WEB_DIR", "build_http_app"]

HS = health_pb2.HealthStatus
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"

# The dashboard loads only its own files and talks only to this origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _add_dashboard(app: web.Application, web_dir: Path) -> None:
    index = web_dir / "index.html"
    assets = web_dir / "assets"

    async def page(request: web.Request) -> web.StreamResponse:
        if not index.is_file():
            return web.json_response(
                {
                    "error": {
                        "code": "dashboard_not_built",
                        "message": f"No dashboard at {web_dir}: build it with `npm ci && npm run build` in web/ "
                        "or set web_dir.",
                    }
                },
                status=404,
            )
        return web.FileResponse(index, headers={**_PAGE_HEADERS, "Cache-Control": "no-cache"})

    gzipped: dict[str, bytes] = {}

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = assets / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return web.json_response({"error": {"code": "not_found", "message": f"no asset {name!r}"}}, status=404)
        # Vite puts a content hash in every asset name: a changed file gets a new name.
        headers = {**_PAGE_HEADERS, "Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
        if "gzip" not in request.headers.get("Accept-Encoding", ""):
            return web.FileResponse(path, headers=headers)
        # Compressed once per asset (they never change under one name): a third of the bytes.
        body = gzipped.get(name)
        if body is None:
            body = gzipped[name] = gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.Response(body=body, headers={**headers, "Content-Type": ctype, "Content-Encoding": "gzip"})

    app.router.add_get("/", page)
    app.router.add_get("/index.html", page)
    app.router.add_get("/assets/{name}", asset)


def build_http_app(
    *,
    version: str,
    started: float,
    is_started: Callable[[], bool],
    store_check: Callable[[], Awaitable[health_pb2.DependencyCheck]],
    web_dir: Path = DEFAULT_WEB_DIR,
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
    _add_dashboard(app, web_dir)
    return app
