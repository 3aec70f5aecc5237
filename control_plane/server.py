"""Wiring of the control plane: store, auth, servicers, gRPC and HTTP servers, and shutdown.

``ControlPlane.start`` binds everything and returns; ``run_forever`` adds signal handling so
SIGTERM/SIGINT stop accepting calls, drain in-flight ones (bounded) and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2 as grpc_health_pb2
from grpc_health.v1 import health_pb2_grpc as grpc_health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control_plane.auth.authenticator import Authenticator
from control_plane.auth.ratelimit import FailureLimiter
from control_plane.auth.tokens import TokenSigner, load_or_create_signing_key
from control_plane.bootstrap import ensure_admin_key
from control_plane.config import ControlPlaneSettings
from control_plane.fleet.registry import AgentRegistry
from control_plane.fleet.service import AgentServicer, FleetServicer, WorkServicer
from control_plane.grpcweb import GrpcWebBridge
from control_plane.housekeeping import Housekeeper
from control_plane.http import DEFAULT_WEB_DIR, build_http_app
from control_plane.reflection import ReflectionPool
from control_plane.rpc import Registrar
from control_plane.services.datasets import DatasetServicer
from control_plane.services.exports import ExportServicer
from control_plane.services.health import HealthServicer, check_store
from control_plane.services.keys import KeyServicer
from control_plane.services.query import QueryServicer
from control_plane.services.tenants import TenantServicer
from control_plane.services.users import AuthServicer, UserServicer
from control_plane.store import Store, open_store
from control_plane.tls import grpc_server_credentials, http_ssl_context
from floe.settings import parse_host_port
from floe.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    datasets_pb2,
    datasets_pb2_grpc,
    exports_pb2,
    exports_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    query_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    work_pb2,
    work_pb2_grpc,
)

__all__ = ["SERVICE_NAMES", "ControlPlane", "run_forever"]

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    tenants_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
    datasets_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name,
    exports_pb2.DESCRIPTOR.services_by_name["ExportService"].full_name,
    "floe.v1.QueryService",
    keys_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
    users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    users_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["HealthService"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    fleet_pb2.DESCRIPTOR.services_by_name["FleetService"].full_name,
    work_pb2.DESCRIPTOR.services_by_name["WorkService"].full_name,
)


def floe_version() -> str:
    try:
        return version("floe")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+local"


class ControlPlane:
    """One control-plane instance. Call ``start`` then ``stop``; both are idempotent-safe."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        self.version = floe_version()
        self.started = time.monotonic()
        self.store: Store = open_store(settings.store_url, settings.data_dir)
        self.grpc_address = ""
        self.http_address = ""
        self._server: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._grpcweb = GrpcWebBridge()
        self._query: QueryServicer | None = None
        self._housekeeper = Housekeeper(
            self.store, lease_retention=settings.lease_retention, interval=settings.housekeeping_interval
        )
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._ready = False

    @property
    def endpoints_file(self) -> Any:
        return self.settings.data_dir / "control-plane.json"

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(s.data_dir, 0o700)
        await self.store.open()
        signer = TokenSigner(load_or_create_signing_key(s.signing_key_path), s.access_token_ttl)
        limiter = FailureLimiter(s.auth_failure_burst, s.auth_failure_rate)
        self.authenticator = Authenticator(self.store, signer, limiter, recheck_seconds=s.key_recheck_interval)
        await ensure_admin_key(self.store, s.admin_key_path)
        self.fleet = AgentRegistry(
            self.store, heartbeat_interval=s.agent_heartbeat_interval, health_interval=s.agent_health_interval
        )
        await self.fleet.start()
        self.authenticator.on_revoke.append(self.fleet.close_key)
        self._housekeeper.start()

        opts = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # gRPC binds with SO_REUSEPORT by default, so a second control plane on a port in use
            # would silently share it (and its calls) instead of failing: turn that off.
            ("grpc.so_reuseport", 0),
            # gRPC core refuses calls beyond this many pending before Python sees them (default
            # 1,000): keep it above the agent connect burst so a reconnect storm is throttled by
            # our limiter, with RetryInfo, instead of failing with CANCELLED.
            ("grpc.server.max_pending_requests", max(10_000, 2 * s.agent_connect_burst)),
            ("grpc.server.max_pending_requests_hard_limit", max(20_000, 4 * s.agent_connect_burst)),
        ]
        server = grpc.aio.server(options=opts)
        # Every floe.v1 handler is wrapped with authentication, error mapping and metrics here.
        api = Registrar(server, self.authenticator)
        tenants_pb2_grpc.add_TenantServiceServicer_to_server(TenantServicer(self.store, self.authenticator), api)
        datasets_pb2_grpc.add_DatasetServiceServicer_to_server(DatasetServicer(self.store), api)
        exports_pb2_grpc.add_ExportServiceServicer_to_server(ExportServicer(self.store), api)
        keys_pb2_grpc.add_KeyServiceServicer_to_server(KeyServicer(self.store, self.authenticator), api)
        users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(self.store), api)
        users_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(self.store, signer, self.authenticator, s.refresh_token_ttl), api
        )
        health_pb2_grpc.add_HealthServiceServicer_to_server(
            HealthServicer(self.store, self.fleet, self.version, self.started), api
        )
        connects = FailureLimiter(s.agent_connect_burst, s.agent_connect_rate)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(self.fleet, connects), api)
        fleet_pb2_grpc.add_FleetServiceServicer_to_server(FleetServicer(self.fleet), api)
        work_pb2_grpc.add_WorkServiceServicer_to_server(WorkServicer(self.store), api)
        self._query = QueryServicer(self.store, self.fleet, s.query_ca_file, s.query_grant_ttl)
        query_pb2_grpc.add_QueryServiceServicer_to_server(self._query, api)
        grpc_health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                grpc_health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
            pool=ReflectionPool(),  # so `grpcurl describe pkg.Service.Method` works (see reflection.py)
        )
        host, port = parse_host_port(s.grpc_listen)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        credentials = grpc_server_credentials(s)
        try:
            if credentials is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, credentials)
        except RuntimeError:  # grpcio >= 1.5x raises instead of returning 0 when it cannot bind
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {s.grpc_listen} for gRPC (grpc_listen): address in use or not local")
        self.grpc_address = f"{host}:{bound}"
        # gRPC-web's bridge calls the servicers over a loopback-only plaintext port of its own; not
        # with mutual TLS, which such a port would bypass.
        bridge_port = server.add_insecure_port("127.0.0.1:0") if s.tls_client_ca_file is None else 0
        await server.start()
        self._server = server
        if bridge_port:
            await self._grpcweb.start(f"127.0.0.1:{bridge_port}")

        app = build_http_app(
            version=self.version,
            started=self.started,
            is_started=lambda: self._ready,
            store_check=lambda: check_store(self.store),
            web_dir=s.web_dir or DEFAULT_WEB_DIR,
        )
        self._grpcweb.add_routes(app)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        host, port = parse_host_port(s.http_listen)
        site = web.TCPSite(self._http, host, port, reuse_address=True, ssl_context=http_ssl_context(s))
        try:
            await site.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {s.http_listen} for HTTP (http_listen): {exc.strerror}") from exc
        server_obj: Any = site._server
        sockets = server_obj.sockets if server_obj is not None else []
        http_port = sockets[0].getsockname()[1] if sockets else port
        self.http_address = f"{host}:{http_port}"

        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, grpc_health_pb2.HealthCheckResponse.SERVING)
        self._ready = True
        self.endpoints_file.write_text(
            json.dumps({"grpc": self.grpc_address, "http": self.http_address, "pid": os.getpid()}) + "\n"
        )
        log.info(
            "Control plane started",
            extra={
                "grpc": self.grpc_address,
                "http": self.http_address,
                "version": self.version,
                "tls": credentials is not None,
            },
        )

    async def stop(self) -> None:
        """Stop accepting calls, let in-flight ones finish within drain_timeout, close the store."""
        if not self._ready and self._server is None:
            return
        self._ready = False
        log.info("Control plane stopping", extra={"drain_timeout_s": self.settings.drain_timeout})
        with contextlib.suppress(OSError):
            self.endpoints_file.unlink(missing_ok=True)
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            # Control streams never finish on their own: end them so the drain covers unary calls.
            await self.fleet.stop()
            await self._server.stop(self.settings.drain_timeout)
            self._server = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        await self._grpcweb.close()
        if self._query is not None:
            await self._query.close()  # its channels to query agents
        await self._housekeeper.stop()
        await self.store.close()
        log.info("Control plane stopped")


async def run_forever(settings: ControlPlaneSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    cp = ControlPlane(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await cp.start()
        await stop.wait()
    finally:
        await cp.stop()
