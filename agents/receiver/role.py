"""The receiver role: the webhook, its spool, the upload workers and housekeeping, wired together.

``start`` opens the spool (recovering what a crash left: every batch acknowledged but not yet
uploaded is uploaded again), the object store and the webhook; the webhook answers 503 until
the first ``tenants`` config applies (from the cache or the control stream). Health components:
``ingest`` (accepted batches and bytes, refusals by reason), ``spool`` (backlog, DLQ, lag) and
``upload`` (objects and bytes stored, store errors, lag; DEGRADED while uploads fail).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from argon2 import PasswordHasher

from agents.receiver.auth import IngestAuth
from agents.receiver.ingest import Ingest
from agents.receiver.tenants import TenantTable
from agents.receiver.uploader import Uploader
from agents.runtime.dlq_api import DLQ_ACTIONS, DlqApi
from agents.runtime.health import Component, HealthBoard
from agents.runtime.objectstore import ObjectStore, open_object_store
from agents.runtime.settings import AgentSettings
from agents.runtime.spool import Spool
from agents.runtime.subscriber import SubscriberRole
from agents.runtime.tls import server_ssl_context
from floe.aio import cancel
from floe.apikeys import parse_key
from floe.settings import parse_host_port
from floe.v1 import agent_pb2, health_pb2, tenants_pb2

__all__ = ["ReceiverRole"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus
#: How long after a refused batch (spool full) the spool component stays DEGRADED.
_FULL_WINDOW = 30.0


class ReceiverRole(SubscriberRole):
    """Commands: ``retry_dlq`` moves dead-lettered batches (all, or the listed spool ids) back to
    the upload queue."""

    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_RECEIVER)
        self.settings = settings
        self._local_hash: str | None = None
        self.name = settings.name_for("receiver")
        self.auth = IngestAuth()
        self.spool: Spool | None = None
        self.store: ObjectStore | None = None
        self.ingest: Ingest | None = None
        self.uploader: Uploader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._spool_comp: Component | None = None
        self.dlq = DlqApi(lambda: self.spool, self._notify)

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        s = self.settings
        host, port = parse_host_port(s.webhook_listen)
        self.spool = await Spool.open(
            s.data_dir / self.name / "spool",
            max_bytes=s.spool_max_bytes,
            dlq_max_bytes=s.dlq_max_bytes,
            max_age=s.spool_max_age,
        )
        try:
            self.store = await open_object_store(s.store_url("intake"))
            self.uploader = Uploader(
                self.spool,
                self.store,
                health.component("upload", "objectstore"),
                receiver=self.name,
                concurrency=s.upload_concurrency,
                retry_attempts=s.retry_attempts,
                retry_interval=s.retry_interval,
            )
            self.ingest = Ingest(
                self.spool,
                self.auth,
                health.component("ingest", "http"),
                receiver=self.name,
                max_body_bytes=s.max_body_bytes,
                ack=s.ack,
                on_append=self.uploader.notify,
            )
            await self.ingest.start(host, port, server_ssl_context(s))
        except BaseException:
            await self.stop()
            raise
        self._spool_comp = health.component("spool", "spool")
        health.add_check(self._fill_health)
        self._tasks = [
            asyncio.create_task(self.uploader.run(), name="receiver-upload"),
            asyncio.create_task(self._housekeeping(), name="receiver-housekeeping"),
        ]
        recovered = self.spool.stats()
        log.info(
            "Receiver started",
            extra={
                "webhook": self.ingest.address,
                "store": repr(self.store),
                "ack": s.ack,
                "spooled_batches": sum(v.count for v in recovered.states.values()),
            },
        )

    def addresses(self) -> dict[str, str]:
        """Extra listening addresses for ``agent.json``."""
        return {"webhook": self.ingest.address} if self.ingest is not None else {}

    async def validate(self, update: agent_pb2.ConfigUpdate) -> list[str]:
        if update.config_type == "datasets" and self.settings.config_mode == "local-only":
            if parse_key(self.settings.ingest_key) is None:
                return [
                    "ingest_key: a local-only receiver needs ingest_key, the one key it accepts, shaped like "
                    "a Floe key (floe_s_NAME_ and 43 random URL-safe characters)"
                ]
            return TenantTable.problems(await self._local_tenants(update.datasets))
        errors = await super().validate(update)
        if not errors and update.config_type == "tenants":
            errors = TenantTable.problems(update.tenants)
        return errors

    async def _local_tenants(self, datasets: agent_pb2.DatasetsConfig) -> agent_pb2.TenantsConfig:
        """A local-only receiver's tenant table: the tenants of its local datasets, all active,
        and ``ingest_key`` as the only credential (hashed once, like the control plane's keys)."""
        out = agent_pb2.TenantsConfig()
        routes: dict[str, agent_pb2.TenantRoute] = {}
        for ds in datasets.datasets:
            parts = ds.name.split("/")
            if len(parts) != 4:
                continue
            route = routes.get(parts[1])
            if route is None:
                route = routes[parts[1]] = out.tenants.add(
                    tenant=f"tenants/{parts[1]}", state=tenants_pb2.Tenant.STATE_ACTIVE
                )
            route.datasets.add(dataset=ds.name, active=ds.active, data_hint=ds.data_hint)
        parsed = parse_key(self.settings.ingest_key)
        if parsed is not None:
            if self._local_hash is None:
                self._local_hash = await asyncio.to_thread(PasswordHasher().hash, self.settings.ingest_key)
            out.credentials.add(prefix=parsed.prefix, argon2_hash=self._local_hash, key="local")
        return out

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        if update.config_type == "datasets" and self.settings.config_mode == "local-only":
            local = agent_pb2.ConfigUpdate(config_type="tenants", version=update.version)
            local.tenants.CopyFrom(await self._local_tenants(update.datasets))
            update = local
        await super().apply(update)
        if update.config_type == "tenants":
            # Both switch together (no await between): a removed key stops working now.
            self.auth.update(update.tenants.credentials)
            if self.ingest is not None:
                self.ingest.table = TenantTable.from_config(update.tenants)

    async def command(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        if command.WhichOneof("action") in DLQ_ACTIONS:
            return await self.dlq.command(command)
        return await super().command(command)

    def routes(self, app: web.Application) -> None:
        self.dlq.add_routes(app)

    def _notify(self) -> None:
        if self.uploader is not None:
            self.uploader.notify()

    def _fill_health(self) -> None:
        spool, comp, up = self.spool, self._spool_comp, self.uploader
        if spool is None or comp is None or up is None or self.ingest is None:
            return None
        spool.fill_health(comp)
        full = time.monotonic() - self.ingest.full_at < _FULL_WINDOW if self.ingest.full_at else False
        comp.status = HS.HEALTH_STATUS_DEGRADED if full else HS.HEALTH_STATUS_HEALTHY
        comp.message = "full: refusing batches until uploads catch up" if full else ""
        up.component.backlog = comp.backlog
        up.component.lag_seconds = comp.lag_seconds
        up.component.dlq_size = comp.dlq_size
        return None

    async def _housekeeping(self) -> None:
        assert self.spool is not None
        while True:
            await asyncio.sleep(self.settings.cleanup_interval)
            expired = await self.spool.sweep()
            if expired:
                log.warning("Batches older than spool_max_age moved to the DLQ", extra={"batches": expired})
            st = self.spool.stats()
            log.info(
                "Spool",
                extra={s.value: {"count": v.count, "bytes": v.bytes} for s, v in st.states.items()}
                | {"evicted": st.evicted},
            )

    async def stop(self) -> None:
        # Stop taking data first, then the workers, then what they write to.
        if self.ingest is not None:
            await self.ingest.stop()
        await cancel(*self._tasks)
        self._tasks = []
        if self.spool is not None:
            await self.spool.close()
        if self.store is not None:
            await self.store.close()
        self.auth.close()
