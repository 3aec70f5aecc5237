"""The connector role: runs the export jobs it is given — from the control plane (config type
``exports``), from the local ``exports`` setting, or both (hybrid: local jobs win by name) —
one ``JobRunner`` each, and keeps the dead-letter queue of refused items.

Which jobs run here: those whose ``connector`` is this agent's name, and unassigned ones this
agent wins a work lease for (``exports/{job}`` through the control plane's WorkService, renewed
while the job runs), so one connector of a fleet runs each unassigned job. In local-only mode
every job runs here.

API (port 8090): ``GET /api/v1/exports`` (each job's state, counters, lag, last error) and the
shared DLQ routes ``/api/v1/dlq/{stats,files,retry}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from agents.connector.dlq import DeadLetters, decode_items
from agents.connector.runner import JobRunner
from agents.connector.spec import ExportJob, JobSpec, jobs_from_yaml, validate_job
from agents.runtime.dlq_api import DLQ_ACTIONS, DlqApi
from agents.runtime.health import HealthBoard
from agents.runtime.leases import Lease, LeaseLost, Leases, open_leases
from agents.runtime.objectstore import ObjectStore, open_object_store
from agents.runtime.settings import AgentSettings
from agents.runtime.spool import Spool
from agents.runtime.subscriber import SubscriberRole
from floe.aio import cancel
from floe.v1 import agent_pb2

__all__ = ["ConnectorRole"]

log = logging.getLogger(__name__)

LEASE_TTL = 60.0
TICK = 10.0


class ConnectorRole(SubscriberRole):
    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_CONNECTOR)
        self.settings = settings
        self.name = settings.name_for("connector")
        self.dir = settings.data_dir / self.name
        # Raises ValueError naming the entry: the agent refuses to start with bad local jobs.
        self._local = {j.name: j for j in jobs_from_yaml(settings.exports)}
        self._control: dict[str, ExportJob] = {}
        self._runners: dict[str, JobRunner] = {}
        self._leases_held: dict[str, Lease] = {}
        self._store: ObjectStore | None = None
        self._spool: Spool | None = None
        self._dlq: DeadLetters | None = None
        self._leases: Leases | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._dlq_wake = asyncio.Event()
        self._dlq_api = DlqApi(lambda: self._spool, self._dlq_wake.set)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        s = self.settings
        self._store = await open_object_store(s.store_url("parquet"))
        self._spool = await Spool.open(
            self.dir / "dlq", max_bytes=s.spool_max_bytes, dlq_max_bytes=s.dlq_max_bytes, max_age=0.0
        )
        self._dlq = DeadLetters(self._spool)
        health.add_check(self._dlq_check)
        self._leases, _ = open_leases(s, self.name)
        self._tasks = [
            asyncio.create_task(self._tick_loop(), name="connector-leases"),
            asyncio.create_task(self._redeliver_loop(), name="connector-dlq"),
        ]
        await self._reconcile()

    async def stop(self) -> None:
        await cancel(*self._tasks)
        async with self._lock:
            for name in list(self._runners):
                await self._stop_runner(name)
        if self._leases is not None:
            await self._leases.close()  # and the client it uses
        if self._spool is not None:
            await self._spool.close()
        if self._store is not None:
            await self._store.close()

    # -- config ------------------------------------------------------------------------------

    async def validate(self, update: agent_pb2.ConfigUpdate) -> list[str]:
        errors = await super().validate(update)
        if errors or update.config_type != "exports":
            return errors
        for i, job in enumerate(update.exports.jobs):
            errors += [
                f"{job.name or f'jobs[{i}]'}: {v.field}: {v.description}" for v in validate_job(job, "export_job")
            ]
            try:
                JobSpec.from_proto(job)
            except ValueError as exc:
                errors.append(str(exc))
        return errors

    async def apply(self, update: agent_pb2.ConfigUpdate) -> None:
        await super().apply(update)
        if update.config_type == "exports":
            self._control = {j.name: j for j in update.exports.jobs}
            await self._reconcile()

    def _desired(self) -> dict[str, JobSpec]:
        jobs = {} if self.settings.config_mode == "local-only" else dict(self._control)
        jobs.update(self._local)
        out = {}
        for name, job in jobs.items():
            spec = JobSpec.from_proto(job)
            if spec.connector and spec.connector != self.name:
                continue
            out[name] = spec
        return out

    async def _reconcile(self) -> None:
        """Start, restart (changed spec) and stop runners to match the desired jobs."""
        async with self._lock:
            if self._store is None:
                return
            desired = self._desired()
            for name in list(self._runners):
                spec = desired.get(name)
                if spec is None or spec.fingerprint != self._runners[name].spec.fingerprint:
                    await self._stop_runner(name)
            unassigned = [n for n, s in desired.items() if n not in self._runners and not s.connector]
            won = await self._claim(unassigned)
            for name, spec in desired.items():
                if name in self._runners or (not spec.connector and name not in won):
                    continue
                self._start_runner(spec)
            if self.health is not None:
                self.health.component(
                    "config", "config"
                ).message = f"{len(self._runners)} export job(s) running of {len(desired)} visible"

    async def _claim(self, names: list[str]) -> set[str]:
        if not names or self._leases is None:
            return set()
        items = {f"exports/{n}": n for n in names}
        try:
            won, _ = await self._leases.claim(list(items), LEASE_TTL)
        except Exception as exc:  # the control plane is away: try again on the next tick
            log.warning("Could not claim export jobs", extra={"error": str(exc)})
            return set()
        for lease in won:
            self._leases_held[items[lease.item]] = lease
        return {items[lease.item] for lease in won}

    def _start_runner(self, spec: JobSpec) -> None:
        assert self._store is not None and self._dlq is not None and self.health is not None
        comp = self.health.component(f"export/{spec.name.removeprefix('tenants/')}", "export")
        runner = JobRunner(spec, self._store, self.dir / "cursors", self._dlq, comp)
        self._runners[spec.name] = runner
        runner.start()
        log.info("Export job started", extra={"job": spec.name, "destination": spec.kind, "watch": spec.watch})

    async def _stop_runner(self, name: str) -> None:
        runner = self._runners.pop(name)
        await runner.stop()
        if self.health is not None:
            self.health.remove(f"export/{name.removeprefix('tenants/')}")
        lease = self._leases_held.pop(name, None)
        if lease is not None and self._leases is not None:
            with contextlib.suppress(Exception):
                await self._leases.release(lease)
        log.info("Export job stopped", extra={"job": name})

    async def _tick_loop(self) -> None:
        """Renew held leases (stop jobs whose lease was lost) and claim jobs left unclaimed."""
        while True:
            await asyncio.sleep(TICK)
            for name, lease in list(self._leases_held.items()):
                if self._leases is None:
                    break
                try:
                    self._leases_held[name] = await self._leases.renew(lease, LEASE_TTL)
                except LeaseLost:
                    log.warning("Lost the lease of an export job; stopping it", extra={"job": name})
                    async with self._lock:
                        if name in self._runners:
                            self._leases_held.pop(name, None)
                            await self._stop_runner(name)
                except Exception as exc:
                    log.warning("Could not renew an export job's lease", extra={"job": name, "error": str(exc)})
            await self._reconcile()

    # -- the DLQ -----------------------------------------------------------------------------

    async def _redeliver_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dlq_wake.wait(), 5.0)
            self._dlq_wake.clear()
            if self._dlq is None:
                continue
            for batch in self._dlq.ready():
                await self._redeliver(batch)

    async def _redeliver(self, batch: Any) -> None:
        assert self._dlq is not None
        spool = self._dlq.spool
        runner = self._runners.get(batch.meta.batch_id)
        if runner is None:
            await spool.dead_letter(batch, f"export job {batch.meta.batch_id} does not run on this connector")
            return
        try:
            records = decode_items(await spool.read(batch))
            failures = await runner.redeliver([item for _, item in records])
        except Exception as exc:
            await spool.dead_letter(batch, f"redelivery failed: {exc}")
            return
        if failures:
            await spool.dead_letter(batch, f"{len(failures)} item(s) refused again: {failures[0].error}"[:500])
            return
        await spool.complete(batch)
        runner.comp.events_out += len(records)

    # -- API ---------------------------------------------------------------------------------

    async def command(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        if command.WhichOneof("action") in DLQ_ACTIONS:
            return await self._dlq_api.command(command)
        return await super().command(command)

    def routes(self, app: web.Application) -> None:
        self._dlq_api.add_routes(app)

        async def exports(request: web.Request) -> web.Response:
            return web.json_response({"jobs": [r.status() for _, r in sorted(self._runners.items())]})

        app.router.add_get("/api/v1/exports", exports)

    def _dlq_check(self) -> tuple[int, str] | None:
        # Not a check as such: refreshes the DLQ's figures each time a report is built.
        if self._spool is not None and self.health is not None:
            self._spool.fill_health(self.health.component("dlq", "dlq"))
        return None
