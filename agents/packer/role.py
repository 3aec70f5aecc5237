"""The packer role: every active dataset's processed batches become hourly zstd Parquet files."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agents.packer.pack import Packer, PackSettings
from agents.runtime.health import HealthBoard
from agents.runtime.leases import Leases, open_leases
from agents.runtime.objectstore import ObjectStore, open_object_store
from agents.runtime.settings import AgentSettings
from agents.runtime.subscriber import SubscriberRole
from floe.v1 import agent_pb2, health_pb2

__all__ = ["PackerRole"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus


class PackerRole(SubscriberRole):
    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_PACKER)
        self.settings = settings
        self._stores: list[ObjectStore] = []
        self._leases: Leases | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        s = self.settings
        processed = await open_object_store(s.store_url("processed"))
        parquet = await open_object_store(s.store_url("parquet"))
        self._stores = [processed, parquet]
        local = s.config_mode == "local-only"
        self._leases = open_leases(
            holder=s.name_for("packer"),
            control_url=None if local else s.control_url,
            api_key="" if local else s.read_api_key(),
            ca_file=s.ca_file,
            cert_file=s.tls_cert_file,
            key_file=s.tls_key_file,
        )
        packer = Packer(
            processed,
            parquet,
            self._leases,
            settings=PackSettings(s.parquet_target_bytes, s.parquet_max_age, s.lease_ttl),
            component=lambda name: health.component(f"pack/{name}", "packer"),
        )
        self._task = asyncio.create_task(self._loop(packer, health))

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        await super().apply(update)
        self._wake.set()

    async def _loop(self, packer: Packer, health: HealthBoard) -> None:
        comp = health.component("packer", "packer")
        while True:
            try:
                targets = [
                    (ds.name.split("/")[1], ds.name.split("/")[3], ds.testing) for ds in self.datasets if ds.active
                ]
                written = await packer.run_once(targets)
                comp.events_out += written
                comp.status = HS.HEALTH_STATUS_HEALTHY
                comp.message = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                comp.errors += 1
                comp.status = HS.HEALTH_STATUS_DEGRADED
                comp.message = f"packing failed: {exc}"
                log.exception("Packing failed; retrying next poll")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._leases is not None:
            await self._leases.close()
        for store in self._stores:
            await store.close()
