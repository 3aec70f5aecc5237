"""One export job running: list the dataset's Parquet, take the files its cursor has not
exported, run the job's SQL over each in the sandbox, send the rows in batches, and advance the
cursor file by file.

Batch mode makes one pass over what is there and records completion (a restart does not run it
again); watch mode passes every ``interval``. A pass that fails (destination down after every
retry, bad credentials) leaves the cursor at the last file fully delivered and is retried after
the interval; its error is in the job's health. While one file's batches are being sent the next
file is already being read and rendered in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from agents.connector.cursor import Cursor
from agents.connector.dlq import DeadLetters
from agents.connector.sandbox import Lines, Sandbox, table_from_parquet
from agents.connector.sinks import DeliveryError, ItemFailure, RejectedBatch, Sink, open_sink
from agents.connector.sinks.common import join_items, split_items
from agents.connector.spec import JobSpec, SecretError
from agents.runtime.health import Component
from agents.runtime.layout import list_all, parquet_prefix
from agents.runtime.objectstore import ObjectInfo, ObjectStore
from floe.aio import cancel
from floe.v1 import health_pb2

__all__ = ["JobRunner", "cursor_path"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus

#: Requests of one job in flight at once: the destination indexes one batch while the next is sent.
IN_FLIGHT = 2


def cursor_path(state_dir: Path, job_name: str) -> Path:
    """One file per job; the name is hashed so any job name makes a safe file name."""
    tenant, _, job = job_name.split("/")[1:4]
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:8]
    return state_dir / f"{tenant}--{job}--{digest}.json"


class JobRunner:
    """Runs ``spec`` until ``stop``; figures go to ``component``."""

    def __init__(
        self, spec: JobSpec, store: ObjectStore, state_dir: Path, dlq: DeadLetters, component: Component
    ) -> None:
        self.spec = spec
        self.store = store
        self.dlq = dlq
        self.comp = component
        self.cursor_file = cursor_path(state_dir, spec.name)
        self.state = "starting"
        self.last_error = ""
        self.last_pass = 0.0
        self._sink: Sink | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"export {self.spec.name}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        await cancel(self._task)
        if self._sink is not None:
            await self._sink.close()
            self._sink = None

    def status(self) -> dict[str, Any]:
        c = self.comp
        return {
            "name": self.spec.name,
            "mode": "watch" if self.spec.watch else "batch",
            "destination": self.spec.kind,
            "state": self.state,
            "last_error": self.last_error,
            "events_out": c.events_out,
            "bytes_out": c.bytes_out,
            "errors": c.errors,
            "dead_lettered": c.dropped.get("dlq", 0),
            "backlog_files": c.backlog,
            "lag_seconds": round(c.lag_seconds, 3),
            "last_pass": self.last_pass,
        }

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        spec = self.spec
        cursor = await asyncio.to_thread(Cursor.load, self.cursor_file)
        if spec.paused:
            self._set("paused", HS.HEALTH_STATUS_HEALTHY, "paused")
            return
        if not spec.watch and cursor.completed:
            self._set("completed", HS.HEALTH_STATUS_HEALTHY, f"completed ({cursor.rows_exported} rows)")
            return
        sandbox = Sandbox(spec.dataset_id, spec.query, time_field=_time_field(spec))
        try:
            while True:
                ok = await self._one_pass(cursor, sandbox)
                if ok and not spec.watch:
                    await asyncio.to_thread(cursor.finish)
                    self._set("completed", HS.HEALTH_STATUS_HEALTHY, f"completed ({cursor.rows_exported} rows)")
                    log.info("Export job completed", extra={"job": spec.name, "rows": cursor.rows_exported})
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), spec.interval)
        finally:
            sandbox.close()
            if self._sink is not None:
                await self._sink.close()
                self._sink = None

    def _set(self, state: str, status: int, message: str) -> None:
        self.state = state
        self.comp.status = status
        self.comp.message = message

    async def _one_pass(self, cursor: Cursor, sandbox: Sandbox) -> bool:
        spec = self.spec
        self.state = "running"
        try:
            if self._sink is None:
                self._sink = open_sink(spec)
            await self._export_new(cursor, sandbox, self._sink)
        except asyncio.CancelledError:
            raise
        except (DeliveryError, SecretError) as exc:
            self._failed(str(exc))
            return False
        except Exception as exc:
            log.exception("An export pass failed", extra={"job": spec.name})
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        self.last_pass = time.time()
        self.last_error = ""
        self._set("watching" if spec.watch else "running", HS.HEALTH_STATUS_HEALTHY, "")
        return True

    def _failed(self, message: str) -> None:
        self.comp.errors += 1
        self.last_error = message
        self._set("failing", HS.HEALTH_STATUS_DEGRADED, message)
        log.warning("Export pass failed; retrying after the interval", extra={"job": self.spec.name, "error": message})

    async def _export_new(self, cursor: Cursor, sandbox: Sandbox, sink: Sink) -> None:
        spec = self.spec
        listed = await list_all(self.store, parquet_prefix(spec.tenant, spec.dataset_id))
        pending = cursor.pending(listed)
        self._backlog(pending)
        row_sql = sink.row_sql()
        upcoming: asyncio.Future[Lines] | None = None
        for i, info in enumerate(pending):
            lines = await (upcoming if upcoming is not None else self._render(sandbox, info, row_sql))
            # Read and render the next file while this one is being sent.
            upcoming = (
                asyncio.ensure_future(self._render(sandbox, pending[i + 1], row_sql)) if i + 1 < len(pending) else None
            )
            try:
                await self._send_file(sink, info.key, lines)
            except BaseException:
                if upcoming is not None:
                    upcoming.cancel()
                    with contextlib.suppress(BaseException):
                        await upcoming
                raise
            await asyncio.to_thread(cursor.mark, info, lines.rows)
            self.comp.last_flush = time.time()
            self._backlog(pending[i + 1 :])

    async def _send_file(self, sink: Sink, key: str, lines: Lines) -> None:
        """Every batch of one file, ``IN_FLIGHT`` requests at a time so the destination's work
        overlaps ours; returns once all are delivered (or raises, cancelling the rest)."""
        running: set[asyncio.Task[None]] = set()
        try:
            for first, rows, body in lines.batches(self.spec.batch_size):
                if len(running) >= IN_FLIGHT:
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                running.add(asyncio.create_task(self._deliver(sink, key, first, rows, body)))
            while running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        finally:
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(BaseException):
                    await task

    def _render(self, sandbox: Sandbox, info: ObjectInfo, row_sql: str) -> Awaitable[Lines]:
        async def run() -> Lines:
            data = await self.store.get(info.key)

            def work() -> Lines:
                table, added = table_from_parquet(info.key, data)
                return sandbox.render(info.key, table, added, row_sql)

            return await asyncio.to_thread(work)

        return run()

    async def _deliver(self, sink: Sink, source: str, first: int, rows: int, body: bytes) -> None:
        try:
            failures = await sink.send(body, rows)
        except RejectedBatch as exc:
            items = split_items(body, sink.lines_per_item)
            failures = [ItemFailure(i, exc.status, str(exc), item) for i, item in enumerate(items)]
        if failures:
            await self.dlq.add(self.spec, source, first, failures)
            self.comp.drop("dlq", len(failures))
            log.warning(
                "The destination refused items; they are in the DLQ",
                extra={"job": self.spec.name, "source": source, "items": len(failures), "error": failures[0].error},
            )
        self.comp.events_out += rows - len(failures)
        self.comp.bytes_out += len(body)

    def _backlog(self, pending: list[ObjectInfo]) -> None:
        self.comp.backlog = len(pending)
        oldest = min((o.last_modified.timestamp() for o in pending), default=0.0)
        self.comp.lag_seconds = max(0.0, time.time() - oldest) if oldest else 0.0

    async def redeliver(self, items: list[bytes]) -> list[ItemFailure]:
        """Send DLQ items again through this job's destination; the ones refused again."""
        if self._sink is None:
            self._sink = open_sink(self.spec)
        try:
            return await self._sink.send(join_items(items), len(items))
        except RejectedBatch as exc:
            return [ItemFailure(i, exc.status, str(exc), item) for i, item in enumerate(items)]


def _time_field(spec: JobSpec) -> str:
    if spec.kind == "splunk_hec":
        return spec.destination.splunk_hec.time_field or "timestamp"
    return "timestamp"
