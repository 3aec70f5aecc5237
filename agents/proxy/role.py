"""The proxy role: datasets assigned to this proxy become listeners."""

from __future__ import annotations

from agents.proxy.listeners import ListenerSet
from agents.runtime.health import HealthBoard
from agents.runtime.subscriber import SubscriberRole
from floe.v1 import agent_pb2

__all__ = ["ProxyRole"]


class ProxyRole(SubscriberRole):
    def __init__(self) -> None:
        super().__init__(agent_pb2.AGENT_KIND_PROXY)
        self.listeners: ListenerSet | None = None

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        self.listeners = ListenerSet(health)

    async def validate(self, update: agent_pb2.ConfigUpdate) -> list[str]:
        errors = await super().validate(update)
        if not errors and self.listeners is not None:
            errors = self.listeners.check(list(update.datasets.datasets))
        return errors

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        assert self.listeners is not None
        await self.listeners.apply(list(update.datasets.datasets))
        await super().apply(update)

    async def stop(self) -> None:
        if self.listeners is not None:
            await self.listeners.close()
