"""The piper role: every active dataset's raw objects are parsed and transformed into processed
batches for the packer."""

from __future__ import annotations

import logging

from agents.piper.pipe import Piper
from agents.piper.process import Processors, fields_message
from agents.runtime.health import HealthBoard
from agents.runtime.settings import AgentSettings
from agents.runtime.worker import WorkerRole
from floe.errors import RpcError
from floe.v1 import agent_pb2

__all__ = ["PiperRole"]

log = logging.getLogger(__name__)


class PiperRole(WorkerRole):
    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_PIPER, settings)
        self.processors = Processors(settings.hash_salt)

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        piper = Piper(
            await self.open_store("intake"),
            await self.open_store("processed"),
            await self.open_store("parquet"),
            self.open_leases("piper"),
            process=self.processors.process,
            component=lambda name: health.component(f"pipe/{name}", "piper"),
            lease_ttl=self.settings.lease_ttl,
        )

        async def one_pass() -> int:
            targets = [(ds.name.split("/")[1], ds.name.split("/")[3]) for ds in self.datasets if ds.active]
            done = await piper.run_once(targets)
            await self._report_fields()
            return done

        self.run_passes("piper", one_pass)

    async def _report_fields(self) -> None:
        """Send the fields seen since the last report; on failure they go with the next one."""
        if self.client is None:
            return
        for tenant, dataset, stats in self.processors.take_unreported():
            try:
                await self.client.datasets.report_fields(fields_message(tenant, dataset, stats))
            except RpcError as exc:
                self.processors.give_back(tenant, dataset, stats)
                log.warning("Could not report dataset fields", extra={"dataset": dataset, "error": str(exc)})

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        if update.config_type == "datasets":
            self.processors.configure(list(update.datasets.datasets))
        await super().apply(update)
