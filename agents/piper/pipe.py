"""The piper's work: raw objects in the intake store become processed batches (Arrow IPC, one
per hour of event time and per destination dataset) in the processed store.

Each raw object is one work item (``pipe/{key}``) claimed through a lease, so N pipers never
process an object twice; a dead piper's lease expires and another takes over.

Exactly once, with the packer consuming processed batches concurrently:
1. under the lease, delete any staged output a previous attempt left for this object, then
   process and write the outputs to ``{tenant}/{dataset}/_staging/{stem}/`` (the packer ignores it);
2. renew the lease, claim ``finish/{key}``, then complete the item (done for good: it is never
   processed again);
3. publish: copy each staged output to its final processed key, delete the staged copy;
4. delete the raw object and release ``finish/{key}``.
A crash before 2 leaves only staged output, replaced by the next attempt. A crash after 2
leaves a done item whose raw object still exists: the next piper to see it claims a
``finish/{key}`` lease and repeats steps 3-4, which are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from agents.runtime.health import Component
from agents.runtime.layout import RawKey, hour_of, list_all, parse_raw_key, processed_key
from agents.runtime.leases import Lease, LeaseLost, Leases
from agents.runtime.objectstore import NotFound, ObjectStore

__all__ = ["Outputs", "Piper", "decompress", "encode_arrow", "split_by_hour"]

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """What processing one raw object produced."""

    #: Records for this dataset.
    table: pa.Table
    #: Records routed elsewhere, by dataset id (same tenant).
    routed: dict[str, pa.Table]
    #: Records that failed parsing or a transformation, with the reason (NDJSON).
    errors: bytes
    error_count: int = 0


#: Turns a raw object's decompressed body into outputs: (tenant, dataset, body, data hint,
#: received at in Unix ns — the batch's time, so reprocessing gives the same records).
Processor = Callable[[str, str, bytes, str, int], Awaitable[Outputs]]


def decompress(body: bytes, extension: str) -> bytes:
    """The records of a raw object (``gz``, ``zst`` or plain ``ndjson``)."""
    if extension == "ndjson":
        return body
    codec = "gzip" if extension == "gz" else "zstd"
    with pa.CompressedInputStream(pa.BufferReader(body), codec) as stream:
        return bytes(stream.read())


def encode_arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def split_by_hour(table: pa.Table, fallback_seconds: float) -> dict[str, pa.Table]:
    """Rows by the UTC hour of their ``timestamp`` column; rows without one (or a table without
    a timestamp column) fall in the hour of ``fallback_seconds`` (when the batch was received)."""
    fallback = hour_of(fallback_seconds)
    if table.num_rows == 0:
        return {}
    if "timestamp" not in table.column_names or not pa.types.is_timestamp(table.schema.field("timestamp").type):
        return {fallback: table}
    ts = table.column("timestamp")
    # Integer hours since the epoch: cheaper than formatting every timestamp, and most batches
    # fall in one hour, which then needs no filtering at all.
    per_hour = {"s": 3600, "ms": 3_600_000, "us": 3_600_000_000, "ns": 3_600_000_000_000}[ts.type.unit]
    hours = pc.floor(pc.divide(pc.cast(ts, pa.int64()).cast(pa.float64()), float(per_hour)))
    distinct = [h for h in pc.unique(hours).to_pylist()]
    if len(distinct) == 1:
        return {fallback if distinct[0] is None else hour_of(distinct[0] * 3600): table}
    out: dict[str, pa.Table] = {}
    for h in distinct:
        if h is None:
            rows = table.filter(pc.is_null(hours))
            name = fallback
        else:
            rows = table.filter(pc.equal(hours, h))
            name = hour_of(h * 3600)
        if name in out:
            out[name] = pa.concat_tables([out[name], rows])
        else:
            out[name] = rows
    return out


class Piper:
    """Processes the raw objects of the datasets it is given; one call of ``run_once`` per poll."""

    def __init__(
        self,
        intake: ObjectStore,
        processed: ObjectStore,
        errors_store: ObjectStore,
        leases: Leases,
        *,
        process: Processor,
        component: Callable[[str], Component],
        lease_ttl: float = 120.0,
        batch: int = 16,
    ) -> None:
        self._intake = intake
        self._processed = processed
        self._errors = errors_store
        self._leases = leases
        self._process = process
        self._component = component
        self._ttl = lease_ttl
        self._batch = batch

    async def run_once(self, datasets: list[tuple[str, str]]) -> int:
        """Process what is waiting for ``datasets`` (tenant, dataset); return objects processed."""
        done = 0
        for tenant, dataset in datasets:
            comp = self._component(f"{tenant}/{dataset}")
            raw = [
                (info, key)
                for info in await list_all(self._intake, f"{tenant}/{dataset}/")
                if (key := parse_raw_key(info.key)) is not None and key.tenant == tenant and key.dataset == dataset
            ]
            comp.backlog = len(raw)
            comp.lag_seconds = max((time.time() - i.last_modified.timestamp() for i, _ in raw), default=0.0)
            for start in range(0, len(raw), self._batch):
                chunk = raw[start : start + self._batch]
                items = {f"pipe/{info.key}": key for info, key in chunk}
                won, finished = await self._leases.claim(list(items), self._ttl)
                for item in finished:
                    await self._finish(items[item], comp)
                results = await asyncio.gather(
                    *(self._pipe(lease, items[lease.item], comp) for lease in won), return_exceptions=True
                )
                for lease, result in zip(won, results, strict=True):
                    if isinstance(result, LeaseLost):
                        log.warning("Lost a lease while processing", extra={"item": lease.item})
                    elif isinstance(result, BaseException):
                        comp.errors += 1
                        log.error("Processing failed", extra={"item": lease.item, "error": repr(result)})
                        with contextlib.suppress(Exception):
                            await self._leases.release(lease)
                    else:
                        done += 1
        return done

    def _staging(self, key: RawKey) -> str:
        return f"{key.tenant}/{key.dataset}/_staging/{key.stem}/"

    async def _pipe(self, lease: Lease, key: RawKey, comp: Component) -> None:
        raw_name = lease.item.removeprefix("pipe/")
        staging = self._staging(key)
        for old in await list_all(self._processed, staging):
            await self._processed.delete(old.key)
        try:
            body = await self._intake.get(raw_name)
        except NotFound:
            await self._leases.complete(lease)
            return
        records = await asyncio.to_thread(decompress, body, key.extension)
        out = await self._process(key.tenant, key.dataset, records, key.data_hint, key.unix_nanos)
        received = key.unix_nanos / 1e9
        parts = [(key.dataset, out.table), *sorted(out.routed.items())]
        written_rows = 0
        for target, table in parts:
            for hour, rows in split_by_hour(table, received).items():
                data = await asyncio.to_thread(encode_arrow, rows)
                await self._processed.put(f"{staging}{target}/{hour}.arrow", data)
                written_rows += rows.num_rows
        if out.errors:
            await self._errors.put(
                f"{key.tenant}/{key.dataset}/errors/{key.stem}.ndjson", out.errors, content_type="application/x-ndjson"
            )
        lease = await self._leases.renew(lease, self._ttl)
        # Hold the finishing lease from before the item is done until it is published, so a
        # piper that sees the done item meanwhile does not publish the same outputs concurrently.
        finishing, _ = await self._leases.claim([f"finish/{raw_name}"], self._ttl)
        if not finishing:
            raise LeaseLost(f"finish/{raw_name} is held by another piper")
        try:
            await self._leases.complete(lease)
            await self._publish(key)
        finally:
            with contextlib.suppress(Exception):
                await self._leases.release(finishing[0])
        comp.events_in += out.table.num_rows + sum(t.num_rows for t in out.routed.values()) + out.error_count
        comp.bytes_in += len(records)
        comp.events_out += written_rows
        if out.error_count:
            comp.drop("transform_error", out.error_count)
        comp.last_flush = time.time()

    async def _finish(self, key: RawKey, comp: Component) -> None:
        """Publish and clean up after a piper that completed an item and then died."""
        raw_name = f"{key.tenant}/{key.dataset}/{key.stem}.{key.extension}"
        won, _ = await self._leases.claim([f"finish/{raw_name}"], self._ttl)
        if not won:
            return
        try:
            if await self._publish(key):
                log.info("Finished an interrupted object", extra={"object": raw_name})
        finally:
            with contextlib.suppress(Exception):
                await self._leases.release(won[0])

    async def _publish(self, key: RawKey) -> int:
        """Move the staged outputs to their final keys and delete the raw object; return how many."""
        staging = self._staging(key)
        staged_objects = await list_all(self._processed, staging)
        for staged in staged_objects:
            target, hour_file = staged.key.removeprefix(staging).split("/", 1)
            stem = key.stem if target == key.dataset else f"{key.stem}--from-{key.dataset}"
            final = processed_key(key.tenant, target, hour_file.removesuffix(".arrow"), stem)
            await self._processed.copy(staged.key, final)
            await self._processed.delete(staged.key)
        await self._intake.delete(f"{key.tenant}/{key.dataset}/{key.stem}.{key.extension}")
        return len(staged_objects)
