"""The packer role: every active dataset's processed batches become hourly zstd Parquet files."""

from __future__ import annotations

from agents.packer.pack import Packer, PackSettings
from agents.runtime.health import HealthBoard
from agents.runtime.settings import AgentSettings
from agents.runtime.worker import WorkerRole
from floe.v1 import agent_pb2

__all__ = ["PackerRole"]


class PackerRole(WorkerRole):
    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_PACKER, settings)

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        s = self.settings
        packer = Packer(
            await self.open_store("processed"),
            await self.open_store("parquet"),
            self.open_leases("packer"),
            settings=PackSettings(s.parquet_target_bytes, s.parquet_max_age, s.lease_ttl),
            component=lambda name: health.component(f"pack/{name}", "packer"),
        )

        async def one_pass() -> int:
            targets = [(ds.name.split("/")[1], ds.name.split("/")[3], ds.testing) for ds in self.datasets if ds.active]
            return await packer.run_once(targets)

        self.run_passes("packer", one_pass)
