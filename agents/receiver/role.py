"""The receiver role (data path being built): follows the tenants config for now."""

from __future__ import annotations

from agents.runtime.settings import AgentSettings
from agents.runtime.subscriber import SubscriberRole
from floe.v1 import agent_pb2

__all__ = ["ReceiverRole"]


class ReceiverRole(SubscriberRole):
    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_RECEIVER)
        self.settings = settings
