"""The proxy role: datasets assigned to this proxy become listeners."""

from __future__ import annotations

from agents.proxy.listeners import ListenerSet
from agents.runtime.health import HealthBoard
from agents.runtime.settings import AgentSettings
from agents.runtime.subscriber import SubscriberRole
from floe.v1 import agent_pb2

__all__ = ["ProxyRole"]


class ProxyRole(SubscriberRole):
    """Commands: ``drain`` closes every listener (no new input; the config stays applied, so a
    maintenance window does not look like drift) until ``reload``, which re-binds them."""

    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_PROXY)
        self.settings = settings
        self.listeners: ListenerSet | None = None
        self.draining = False

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
        if not self.draining:
            await self.listeners.apply(list(update.datasets.datasets))
        await super().apply(update)

    async def command(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        assert self.listeners is not None and self.health is not None
        action = command.WhichOneof("action")
        if action == "drain":
            self.draining = True
            await self.listeners.apply([])
            self.health.component("config", "config").message = "draining: listeners closed until reload"
            return agent_pb2.CommandResult(ok=True, message="Drained: every listener is closed until reload.")
        if action == "reload":
            errors = self.listeners.check(self.datasets)
            if errors:
                return agent_pb2.CommandResult(ok=False, message="Cannot re-bind: " + "; ".join(errors))
            self.draining = False
            await self.listeners.apply(self.datasets)
            self.health.component("config", "config").message = f"{len(self.datasets)} datasets"
            return agent_pb2.CommandResult(
                ok=True,
                message=f"Reloaded: {len(self.datasets)} listener(s) bound.",
                details={"listeners": str(len(self.datasets))},
            )
        return await super().command(command)

    async def stop(self) -> None:
        if self.listeners is not None:
            await self.listeners.close()
