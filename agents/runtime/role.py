"""The contract between the runtime and a role (proxy, receiver, ...)."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from agents.runtime.health import HealthBoard
from floe.v1 import agent_pb2

__all__ = ["Role"]


class Role(Protocol):
    """What the runtime needs from a role. Methods are called on the event loop, one config
    change at a time; ``apply`` must not drop data already accepted (start new components
    before stopping old ones where they overlap)."""

    kind: int
    config_types: tuple[str, ...]

    async def start(self, health: HealthBoard) -> None:
        """Start the data path with no config yet (or the cached one, applied next)."""

    async def validate(self, update: agent_pb2.ConfigUpdate) -> list[str]:
        """Every reason the update cannot run here; empty when it can. Must not change state."""

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        """Switch to ``update`` (validated). Raise to reject it; the old config keeps running."""

    async def command(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        """Run a command from the control plane."""

    def routes(self, app: web.Application) -> None:
        """Add role-specific routes to the API port."""

    def addresses(self) -> dict[str, str]:
        """Ports beyond the API port (e.g. the receiver's ``webhook``), for ``agent.json``."""

    def endpoints(self) -> dict[str, str]:
        """What the control plane is told in the hello (``AgentHello.endpoints``): the addresses,
        plus anything only it may know (the query agent's forwarding secret)."""

    async def stop(self) -> None:
        """Flush and stop."""
