"""``SubscriberRole``: a role that follows its subscribed config and reports it in health.

Roles whose data path is built on top of it (receiver, piper, packer, query, connector) get
config validation, the current datasets/tenants and command handling from here and add their
components as they land; until then the agent still takes part in the fleet: it connects,
applies and acknowledges config, reports health and answers commands.
"""

from __future__ import annotations

from aiohttp import web

from agents.runtime.dlq_api import DLQ_ACTIONS, no_dlq
from agents.runtime.health import HealthBoard
from agents.transforms.spec import validate_transformations
from floe.protocol import CONFIG_TYPES
from floe.v1 import agent_pb2, datasets_pb2

__all__ = ["SubscriberRole"]

K = agent_pb2.AgentKind


class SubscriberRole:
    """Holds the latest applied config of each subscribed type."""

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.config_types: tuple[str, ...] = CONFIG_TYPES[kind]
        self.datasets: list[datasets_pb2.Dataset] = []
        self.tenants: list[agent_pb2.TenantRoute] = []
        self.health: HealthBoard | None = None

    async def start(self, health: HealthBoard) -> None:
        self.health = health
        health.component("config", "config")

    async def validate(self, update: agent_pb2.ConfigUpdate) -> list[str]:
        errors: list[str] = []
        if update.config_type not in self.config_types:
            return [f"config type {update.config_type!r} is not one this agent subscribes to"]
        if update.WhichOneof("payload") == "datasets" and self.kind == K.AGENT_KIND_PIPER:
            for ds in update.datasets.datasets:
                errors += [
                    f"{ds.name}: {v.field}: {v.description}"
                    for v in validate_transformations(ds.transformations, "transformations")
                ]
        return errors

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        if update.config_type == "datasets":
            self.datasets = list(update.datasets.datasets)
        elif update.config_type == "tenants":
            self.tenants = list(update.tenants.tenants)
        if self.health is not None:
            comp = self.health.component("config", "config")
            comp.message = f"{len(self.datasets)} datasets, {len(self.tenants)} tenants"

    async def command(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        action = command.WhichOneof("action")
        if action == "reload":
            return agent_pb2.CommandResult(ok=True, message="Nothing to reload: config comes from the control plane.")
        if action in DLQ_ACTIONS:
            return no_dlq()
        return agent_pb2.CommandResult(ok=False, message=f"{action} is not supported by this agent.")

    def routes(self, app: web.Application) -> None:
        return None

    def addresses(self) -> dict[str, str]:
        return {}

    def endpoints(self) -> dict[str, str]:
        return self.addresses()

    async def stop(self) -> None:
        return None
