"""``WorkerRole``: the common shape of roles that poll object stores for work under leases
(piper, packer): open the stores and the leases, run one pass per poll interval (or at once
when the config changes), report failures in health, and stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from agents.runtime.health import Component
from agents.runtime.leases import Leases, open_leases
from agents.runtime.objectstore import ObjectStore, open_object_store
from agents.runtime.settings import AgentSettings
from agents.runtime.subscriber import SubscriberRole
from floe.aio import cancel
from floe.client import AsyncClient
from floe.v1 import agent_pb2, health_pb2

__all__ = ["WorkerRole"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus


class WorkerRole(SubscriberRole):
    """Subclasses call ``open_store``/``open_leases`` in ``start`` and then ``run_passes``."""

    def __init__(self, kind: int, settings: AgentSettings) -> None:
        super().__init__(kind)
        self.settings = settings
        self._stores: list[ObjectStore] = []
        self._leases: Leases | None = None
        #: The control plane, when the agent has one (not in local-only mode).
        self.client: AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def open_store(self, which: str) -> ObjectStore:
        store = await open_object_store(self.settings.store_url(which))
        self._stores.append(store)
        return store

    def open_leases(self, kind: str) -> Leases:
        """Control-plane leases (and ``self.client``), or in-process ones in local-only mode."""
        self._leases, self.client = open_leases(self.settings, self.settings.name_for(kind))
        return self._leases

    def run_passes(self, name: str, one_pass: Callable[[], Awaitable[int]]) -> None:
        """Run ``one_pass`` (returns the work items it finished) every poll interval."""
        assert self.health is not None
        self._task = asyncio.create_task(self._loop(self.health.component(name, name), one_pass))

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        await super().apply(update)
        self._wake.set()

    async def _loop(self, comp: Component, one_pass: Callable[[], Awaitable[int]]) -> None:
        while True:
            try:
                comp.events_out += await one_pass()
                comp.status = HS.HEALTH_STATUS_HEALTHY
                comp.message = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                comp.errors += 1
                comp.status = HS.HEALTH_STATUS_DEGRADED
                comp.message = f"pass failed: {exc}"
                log.exception("A work pass failed; retrying at the next poll", extra={"component": comp.name})
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def stop(self) -> None:
        await cancel(self._task)
        if self._leases is not None:
            await self._leases.close()
        for store in self._stores:
            await store.close()
