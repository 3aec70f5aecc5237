"""``floe agent KIND``: build the role for KIND and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from agents.runtime.agent import AgentRunner
from agents.runtime.role import Role
from agents.runtime.settings import AgentSettings
from agents.runtime.subscriber import SubscriberRole
from floe.v1 import agent_pb2

__all__ = ["build_role", "run_agent"]

KIND_ENUM = {
    "proxy": agent_pb2.AGENT_KIND_PROXY,
    "receiver": agent_pb2.AGENT_KIND_RECEIVER,
    "piper": agent_pb2.AGENT_KIND_PIPER,
    "packer": agent_pb2.AGENT_KIND_PACKER,
    "query": agent_pb2.AGENT_KIND_QUERY,
    "connector": agent_pb2.AGENT_KIND_CONNECTOR,
}


def build_role(kind: str, settings: AgentSettings) -> Role:
    """The role of ``floe agent KIND``; each is imported only when it runs."""
    if kind == "proxy":
        from agents.proxy.role import ProxyRole

        return ProxyRole(settings)
    if kind == "receiver":
        from agents.receiver.role import ReceiverRole

        return ReceiverRole(settings)
    if kind == "piper":
        from agents.piper.role import PiperRole

        return PiperRole(settings)
    if kind == "packer":
        from agents.packer.role import PackerRole

        return PackerRole(settings)
    if kind == "query":
        from agents.query.role import QueryRole

        return QueryRole(settings)
    if kind == "connector":
        from agents.connector.role import ConnectorRole

        return ConnectorRole(settings)
    return SubscriberRole(KIND_ENUM[kind])


async def run_agent(kind: str, settings: AgentSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await AgentRunner(kind, settings, build_role(kind, settings)).run(stop)
