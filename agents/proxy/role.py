"""The proxy role: datasets assigned to this proxy become listeners, whose records the batcher
gathers into compressed batches in the disk spool, from which the forwarder sends them to the
receivers. Wiring only; each part lives in its own module."""

from __future__ import annotations

import logging

from aiohttp import web

from agents.proxy.batcher import Batcher, split_dataset_name
from agents.proxy.forwarder import Forwarder
from agents.proxy.listeners import ListenerSet
from agents.runtime.dlq_api import DLQ_ACTIONS, DlqApi
from agents.runtime.health import HealthBoard
from agents.runtime.settings import AgentSettings
from agents.runtime.spool import BatchState, Spool
from agents.runtime.subscriber import SubscriberRole
from floe.tls import client_context
from floe.v1 import agent_pb2

__all__ = ["ProxyRole"]

log = logging.getLogger(__name__)

#: How long ``drain`` and ``stop`` wait for buffered records to reach the spool.
FLUSH_WAIT_S = 10.0
#: How long ``stop`` lets in-flight POSTs finish before cancelling them.
STOP_GRACE_S = 3.0
#: Memory for batches not yet in the spool, across datasets (at least 8 full batches).
MIN_MEMORY_BYTES = 64 << 20


class ProxyRole(SubscriberRole):
    """Commands: ``drain`` closes every listener (no new input; the config stays applied, so a
    maintenance window does not look like drift) and flushes buffered records into the spool,
    until ``reload``, which re-binds them; ``retry_dlq`` moves dead-lettered batches back to the
    queue. The DLQ is also on the API port (``/api/v1/dlq/...``)."""

    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_PROXY)
        self.settings = settings
        self.listeners: ListenerSet | None = None
        self.spool: Spool | None = None
        self.batcher: Batcher | None = None
        self.forwarder: Forwarder | None = None
        self.draining = False
        self.dlq = DlqApi(lambda: self.spool, on_moved=self._wake)

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        s = self.settings
        directory = s.data_dir / s.name_for("proxy") / "spool"
        self.spool = spool = await Spool.open(
            directory, max_bytes=s.spool_max_bytes, dlq_max_bytes=s.dlq_max_bytes, max_age=s.spool_max_age
        )
        states = spool.stats().states
        if any(states[state].count for state in BatchState):
            log.info(
                "Resuming from the spool",
                extra={
                    "queued": states[BatchState.QUEUE].count,
                    "retrying": states[BatchState.RETRY].count,
                    "dead_lettered": states[BatchState.DLQ].count,
                },
            )
        token = s.ingest_key or (s.read_api_key() if s.api_key or s.api_key_file else "")
        if not token:
            log.warning("No key for the receivers: set ingest_key (or api_key); receivers will answer 401")
        self.forwarder = Forwarder(
            spool,
            health,
            list(s.receivers),
            token,
            workers=max(4, 2 * len(s.receivers)),
            timeout=s.forward_timeout,
            retry_attempts=s.retry_attempts,
            retry_interval=s.retry_interval,
            cleanup_interval=s.cleanup_interval,
            ssl_context=client_context(s.receiver_ca_file),
        )
        await self.forwarder.start()
        self.batcher = Batcher(
            spool,
            health.component("batcher", "proxy.batcher"),
            max_bytes=s.batch_max_bytes,
            max_records=s.batch_max_records,
            max_age=s.batch_max_age,
            compression=s.compression,
            memory_limit=max(MIN_MEMORY_BYTES, 8 * s.batch_max_bytes),
            on_spooled=self.forwarder.wake,
        )
        self.listeners = ListenerSet(health, self.batcher)

    async def validate(self, update: agent_pb2.ConfigUpdate) -> list[str]:
        errors = await super().validate(update)
        if not errors and update.WhichOneof("payload") == "datasets":
            errors = [
                f"{ds.name}: a proxy dataset's name must be tenants/TENANT/datasets/DATASET"
                for ds in update.datasets.datasets
                if split_dataset_name(ds.name) is None
            ]
        if not errors and self.listeners is not None:
            errors = self.listeners.check(list(update.datasets.datasets))
        return errors

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        assert self.listeners is not None
        if not self.draining:
            await self.listeners.apply(list(update.datasets.datasets))
        await super().apply(update)

    async def command(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        assert self.listeners is not None and self.health is not None and self.batcher is not None
        action = command.WhichOneof("action")
        if action == "drain":
            self.draining = True
            await self.listeners.apply([])
            self.health.component("config", "config").message = "draining: listeners closed until reload"
            left = await self.batcher.flush_all(FLUSH_WAIT_S)
            waiting = self._waiting()
            details = {"listeners": "0", "unflushed_records": str(left), "waiting_batches": str(waiting)}
            if left:
                return agent_pb2.CommandResult(
                    ok=False,
                    message=f"Drained the listeners, but {left} records are still in memory: the spool is full.",
                    details=details,
                )
            return agent_pb2.CommandResult(
                ok=True,
                message=(
                    "Drained: every listener is closed until reload and buffered records are in the spool "
                    f"({waiting} batches wait for delivery)."
                ),
                details=details,
            )
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
        if action in DLQ_ACTIONS:
            return await self.dlq.command(command)
        return await super().command(command)

    def routes(self, app: web.Application) -> None:
        self.dlq.add_routes(app)

    async def stop(self) -> None:
        """Close the listeners, flush batches into the spool, stop sending (claimed batches go back
        to the queue) and close the spool."""
        if self.listeners is not None:
            await self.listeners.close()
        if self.batcher is not None:
            await self.batcher.close(FLUSH_WAIT_S)
        if self.forwarder is not None:
            await self.forwarder.stop(STOP_GRACE_S)
        if self.spool is not None:
            await self.spool.close()

    def _wake(self) -> None:
        if self.forwarder is not None:
            self.forwarder.wake()

    def _waiting(self) -> int:
        if self.spool is None:
            return 0
        states = self.spool.stats().states
        return states[BatchState.QUEUE].count + states[BatchState.RETRY].count
