"""Runs one agent: its role's data path, the control stream, the config cache and the API port.

Config flows: control plane (or the local YAML) -> merge (hybrid) -> role.validate -> role.apply
-> cache -> ack. A rejected version leaves the previous one running and is reported FAILED with
every error; the cache always holds the last version that ran, so a restart without the control
plane resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.runtime.cache import AppliedState, ConfigCache
from agents.runtime.control import ControlClient
from agents.runtime.health import HealthBoard
from agents.runtime.role import Role
from agents.runtime.settings import AgentSettings
from agents.runtime.tls import server_ssl_context
from floe.aio import cancel
from floe.v1 import agent_pb2, datasets_pb2, health_pb2

__all__ = ["AgentRunner", "local_datasets", "merge_datasets"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus
CS = agent_pb2.ConfigStatus


def _version() -> str:
    try:
        return version("floe")
    except PackageNotFoundError:
        return "0.0.0+local"


def local_datasets(raw: list[dict[str, Any]]) -> list[datasets_pb2.Dataset]:
    """Parse the YAML ``datasets`` list (API JSON form); raise ValueError naming the entry."""
    out = []
    for i, item in enumerate(raw):
        ds = datasets_pb2.Dataset()
        try:
            json_format.ParseDict(item, ds)
        except json_format.ParseError as exc:
            raise ValueError(f"datasets[{i}]: {exc}") from exc
        if not ds.name:
            raise ValueError(f"datasets[{i}]: name is required (tenants/T/datasets/D)")
        if "active" not in item:
            ds.active = True
        out.append(ds)
    return out


def _bind_key(ds: datasets_pb2.Dataset) -> tuple[int, int]:
    return (ds.source.type, ds.source.port)


def merge_datasets(
    control: list[datasets_pb2.Dataset], local: list[datasets_pb2.Dataset]
) -> list[datasets_pb2.Dataset]:
    """Hybrid mode: local datasets win over control ones with the same name or the same port."""
    names = {ds.name for ds in local}
    ports = {_bind_key(ds) for ds in local if ds.source.port}
    kept = [ds for ds in control if ds.name not in names and _bind_key(ds) not in ports]
    return sorted([*kept, *local], key=lambda d: d.name)


class AgentRunner:
    """One agent process. ``run`` returns when ``stop`` is set, after a clean shutdown."""

    def __init__(self, kind: str, settings: AgentSettings, role: Role) -> None:
        self.kind = kind
        self.settings = settings
        self.role = role
        self.name = settings.name_for(kind)
        self.instance_id = secrets.token_hex(8)
        self.dir = settings.data_dir / self.name
        self.health = HealthBoard()
        self.cache = ConfigCache(self.dir / "config")
        self.states: dict[str, AppliedState] = {}
        self._local = local_datasets(settings.datasets)
        self._control: dict[str, agent_pb2.ConfigUpdate] = {}
        self._lock = asyncio.Lock()
        self.api_address = ""
        self.client: ControlClient | None = None
        self._ready = False

    # -- config ------------------------------------------------------------------------------

    def _effective(self, update: agent_pb2.ConfigUpdate) -> agent_pb2.ConfigUpdate:
        if update.config_type != "datasets" or self.settings.config_mode != "hybrid":
            return update
        merged = agent_pb2.ConfigUpdate()
        merged.CopyFrom(update)
        del merged.datasets.datasets[:]
        merged.datasets.datasets.extend(merge_datasets(list(update.datasets.datasets), self._local))
        return merged

    async def _run(self, update: agent_pb2.ConfigUpdate) -> list[str]:
        """Validate ``update`` (merged with local datasets in hybrid mode) and switch to it.

        Returns every reason it was not taken; the previous config then keeps running. A role
        whose ``apply`` raises has rejected the config: reported, never a crash.
        """
        effective = self._effective(update)
        errors = await self.role.validate(effective)
        if errors:
            return errors
        try:
            await self.role.apply(effective)
        except Exception as exc:
            log.exception("Applying a config failed", extra={"config_type": update.config_type})
            return [f"apply failed: {type(exc).__name__}: {exc}"]
        return []

    async def handle_update(self, update: agent_pb2.ConfigUpdate) -> agent_pb2.ConfigAck:
        """Validate and apply one update from the control plane; the ack to send back."""
        async with self._lock:
            ack = agent_pb2.ConfigAck(config_type=update.config_type, version=update.version, nonce=update.nonce)
            state = self.states.setdefault(update.config_type, AppliedState())
            errors = await self._run(update)
            state.version = update.version
            state.errors = errors
            if errors:
                state.status = ack.status = CS.CONFIG_STATUS_FAILED
                ack.errors.extend(errors)
                log.warning(
                    "Config rejected; the previous one keeps running",
                    extra={"config_type": update.config_type, "version": update.version, "errors": errors},
                )
                self.cache.save(update.config_type, None, state)
            else:
                state.status = ack.status = CS.CONFIG_STATUS_APPLIED
                state.effective_version = update.version
                self._control[update.config_type] = update
                self.cache.save(update.config_type, update, state)
                log.info("Config applied", extra={"config_type": update.config_type, "version": update.version})
                # Ready once some config runs; a rejected first config leaves the agent not ready.
                self._ready = True
            return ack

    async def _start_from_cache(self) -> None:
        for config_type, (update, state) in self.cache.load().items():
            if update is None or config_type not in self.role.config_types:
                self.states[config_type] = state
                continue
            errors = await self._run(update)  # a failure starts the agent without it, not at all
            if errors:
                # Not running it, so not reporting it: the hello then says this type runs nothing
                # and the control plane sends the desired version again (validated afresh).
                log.warning(
                    "Cached config cannot start here; waiting for the control plane",
                    extra={"config_type": config_type, "errors": errors},
                )
                continue
            # What runs now is the cached config, whatever was answered since it was cached.
            state.effective_version = update.version
            if state.version == update.version:
                state.status, state.errors = CS.CONFIG_STATUS_APPLIED, []
            self.states[config_type] = state
            self._control[config_type] = update
            self._ready = True
            log.info("Started from cached config", extra={"config_type": config_type, "version": update.version})

    async def _apply_local_only(self) -> None:
        update = agent_pb2.ConfigUpdate(config_type="datasets", version="local")
        update.datasets.datasets.extend(self._local)
        errors = await self._run(update)
        if errors:
            raise ValueError("local datasets are invalid: " + "; ".join(errors))
        self.states["datasets"] = AppliedState("local", CS.CONFIG_STATUS_APPLIED, [], "local")
        self._ready = True

    def hello(self) -> agent_pb2.AgentHello:
        hello = agent_pb2.AgentHello(
            kind=self.role.kind,  # type: ignore[arg-type]
            agent_name=self.name,
            instance_id=self.instance_id,
            version=_version(),
            labels=self.settings.labels,
            capabilities=["config_ack", "health", "commands", *self.role.config_types],
            api_address=self.api_address,
            hostname=socket.gethostname(),
            endpoints=self.role.endpoints(),
        )
        for config_type, state in sorted(self.states.items()):
            hello.applied.append(state.to_proto(config_type))
        return hello

    def report(self) -> agent_pb2.HealthReport:
        return self.health.report()

    # -- HTTP API ----------------------------------------------------------------------------

    def _app(self) -> web.Application:
        async def livez(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def readyz(request: web.Request) -> web.Response:
            ok = self._ready
            return web.json_response({"status": "ready" if ok else "waiting for config"}, status=200 if ok else 503)

        async def healthz(request: web.Request) -> web.Response:
            report = self.report()
            body = {
                "status": HS.Name(report.status).removeprefix("HEALTH_STATUS_").lower(),
                "agent": self.name,
                "kind": self.kind,
                "instance_id": self.instance_id,
                "version": _version(),
                "config_mode": self.settings.config_mode,
                "control_plane": {
                    "connected": bool(self.client and self.client.connected.is_set()),
                    "last_error": self.client.last_error if self.client else "",
                },
                "configs": {
                    t: {
                        "version": s.version,
                        "effective_version": s.effective_version,
                        "status": CS.Name(s.status).removeprefix("CONFIG_STATUS_").lower(),  # type: ignore[arg-type]
                        "errors": s.errors,
                    }
                    for t, s in sorted(self.states.items())
                },
                "health": json_format.MessageToDict(report, preserving_proto_field_name=True),
            }
            return web.json_response(body)

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/livez", livez)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        self.role.routes(app)
        return app

    # -- lifecycle ---------------------------------------------------------------------------

    def _config_check(self) -> tuple[int, str] | None:
        failed = [
            f"{t}: {'; '.join(s.errors)}" for t, s in sorted(self.states.items()) if s.status == CS.CONFIG_STATUS_FAILED
        ]
        return (HS.HEALTH_STATUS_DEGRADED, "config failed: " + " | ".join(failed)) if failed else None

    async def run(self, stop: asyncio.Event) -> None:
        self.health.add_check(self._config_check)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        await self.role.start(self.health)
        if self.settings.config_mode == "local-only":
            await self._apply_local_only()
        else:
            await self._start_from_cache()
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        host, port = self.settings.api_address(self.kind)
        site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=server_ssl_context(self.settings))
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await self.role.stop()
            raise OSError(f"cannot listen on {host}:{port} for the API port (api_listen): {exc.strerror}") from exc
        server: Any = site._server
        bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
        self.api_address = f"{host}:{bound}"
        info = {
            **self.role.addresses(),
            "api": self.api_address,
            "pid": os.getpid(),
            "name": self.name,
        }
        (self.dir / "agent.json").write_text(json.dumps(info) + "\n")
        control_task = None
        if self.settings.config_mode != "local-only":
            self.client = ControlClient(
                self.settings.control_url,
                self.settings.read_api_key(),
                hello=self.hello,
                on_update=self.handle_update,
                on_command=self.role.command,
                health=self.report,
                ca_file=self.settings.ca_file,
                cert_file=self.settings.tls_cert_file,
                key_file=self.settings.tls_key_file,
                reconnect_max=self.settings.reconnect_max,
            )
            control_task = asyncio.create_task(self.client.run(), name="control-stream")
        log.info(
            "Agent started",
            extra={"agent": self.name, "kind": self.kind, "api": self.api_address, "mode": self.settings.config_mode},
        )
        started = time.monotonic()
        try:
            await stop.wait()
        finally:
            log.info("Agent stopping", extra={"agent": self.name, "uptime_s": round(time.monotonic() - started)})
            await cancel(control_task)
            await self.role.stop()
            await runner.cleanup()
            with contextlib.suppress(OSError):
                (self.dir / "agent.json").unlink()
            log.info("Agent stopped", extra={"agent": self.name})
