"""The packer's work: processed batches of one tenant/dataset/hour become one zstd Parquet file.

A partition is packed when the batches waiting in it reach the target size, when the oldest has
waited the maximum age, or at once for datasets flagged ``testing``. Each partition is packed
under a work lease (``pack/{tenant}/{dataset}/{hour}``), so several packers share the work.

Commit protocol (crash-safe, no lost and no duplicated rows):
1. choose the sources (sorted keys, up to the target size); the file id is a hash of their keys;
2. write a manifest ``{tenant}/{dataset}/_manifests/{hour}/{id}.json`` listing the sources and
   the Parquet key;
3. write the Parquet file (a temporary local file, then one atomic put — multipart on S3);
4. delete the sources, then the manifest.
A manifest found later (the packer died) is settled before anything else in its partition: if
its Parquet file exists the sources it lists are deleted (their rows are in the file); if not,
the manifest is removed and the sources are packed again (same sources, same file name).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from agents.packer.schema import conform, unified_schema
from agents.runtime.health import Component
from agents.runtime.layout import list_all, parquet_key
from agents.runtime.leases import Lease, LeaseLost, Leases
from agents.runtime.objectstore import NotFound, ObjectInfo, ObjectStore

__all__ = ["PackSettings", "Packer"]

log = logging.getLogger(__name__)

_ROW_GROUP_ROWS = 512 * 1024


@dataclass(frozen=True)
class PackSettings:
    target_bytes: int = 128 << 20
    max_age: float = 60.0
    lease_ttl: float = 120.0


@dataclass
class _Partition:
    hour: str
    sources: list[ObjectInfo]
    manifests: list[str]

    @property
    def size(self) -> int:
        return sum(o.size for o in self.sources)

    def oldest(self) -> float:
        return min((o.last_modified.timestamp() for o in self.sources), default=time.time())


class Packer:
    """Packs the partitions of the datasets it is given; one call of ``run_once`` per poll."""

    def __init__(
        self,
        processed: ObjectStore,
        parquet: ObjectStore,
        leases: Leases,
        *,
        settings: PackSettings,
        component: Callable[[str], Component],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._processed = processed
        self._parquet = parquet
        self._leases = leases
        self._settings = settings
        self._component = component
        self._clock = clock

    async def run_once(self, datasets: list[tuple[str, str, bool]]) -> int:
        """Pack what is due in ``datasets`` (tenant, dataset, testing); return files written."""
        written = 0
        for tenant, dataset, testing in datasets:
            comp = self._component(f"{tenant}/{dataset}")
            partitions = await self._partitions(tenant, dataset)
            comp.backlog = sum(len(p.sources) for p in partitions.values())
            comp.lag_seconds = max((self._clock() - p.oldest() for p in partitions.values() if p.sources), default=0.0)
            for hour, part in sorted(partitions.items()):
                due = (
                    testing
                    or part.manifests
                    or part.size >= self._settings.target_bytes
                    or self._clock() - part.oldest() >= self._settings.max_age
                )
                if not due:
                    continue
                try:
                    written += await self._pack_partition(tenant, dataset, hour, comp)
                except LeaseLost as exc:
                    log.warning("Lost a partition lease; another packer takes over", extra={"reason": str(exc)})
        return written

    async def _partitions(self, tenant: str, dataset: str) -> dict[str, _Partition]:
        parts: dict[str, _Partition] = {}
        for info in await list_all(self._processed, f"{tenant}/{dataset}/"):
            rest = info.key.split("/")[2:]
            if len(rest) == 3 and rest[0] == "_manifests":
                parts.setdefault(rest[1], _Partition(rest[1], [], [])).manifests.append(info.key)
            elif len(rest) == 2 and len(rest[0]) == 10 and rest[0].isdigit() and rest[1].endswith(".arrow"):
                parts.setdefault(rest[0], _Partition(rest[0], [], [])).sources.append(info)
        return parts

    async def _partition(self, tenant: str, dataset: str, hour: str) -> _Partition:
        """One hour's batches and manifests, listed by their own prefixes."""
        sources = [
            o for o in await list_all(self._processed, f"{tenant}/{dataset}/{hour}/") if o.key.endswith(".arrow")
        ]
        manifests = [o.key for o in await list_all(self._processed, f"{tenant}/{dataset}/_manifests/{hour}/")]
        return _Partition(hour, sources, manifests)

    async def _pack_partition(self, tenant: str, dataset: str, hour: str, comp: Component) -> int:
        item = f"pack/{tenant}/{dataset}/{hour}"
        won, _ = await self._leases.claim([item], self._settings.lease_ttl)
        if not won:
            return 0
        lease = won[0]
        written = 0
        try:
            # List again under the lease: another packer may have packed part of it meanwhile.
            part = await self._partition(tenant, dataset, hour)
            for manifest in part.manifests:
                lease = await self._settle(manifest, lease)
            if part.manifests:
                part = await self._partition(tenant, dataset, hour)
            sources = sorted(part.sources, key=lambda o: o.key)
            start = 0
            while start < len(sources):
                end, size = start + 1, sources[start].size
                while end < len(sources) and size + sources[end].size <= self._settings.target_bytes:
                    size += sources[end].size
                    end += 1
                lease = await self._write(tenant, dataset, hour, sources[start:end], lease=lease, comp=comp)
                written += 1
                start = end
        finally:
            with contextlib.suppress(Exception):
                await self._leases.release(lease)
        return written

    async def _settle(self, manifest_key: str, lease: Lease) -> Lease:
        try:
            manifest = json.loads(await self._processed.get(manifest_key))
        except NotFound:
            return lease
        except ValueError:
            log.error("Removing an unreadable packer manifest", extra={"key": manifest_key})
            await self._processed.delete(manifest_key)
            return lease
        lease = await self._leases.renew(lease, self._settings.lease_ttl)
        if await self._parquet.head(manifest["parquet"]) is not None:
            for key in manifest["sources"]:
                await self._processed.delete(key)
            log.info("Finished an interrupted pack", extra={"file": manifest["parquet"]})
        await self._processed.delete(manifest_key)
        return lease

    async def _write(
        self, tenant: str, dataset: str, hour: str, sources: list[ObjectInfo], *, lease: Lease, comp: Component
    ) -> Lease:
        keys = [o.key for o in sources]
        file_id = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        target = parquet_key(tenant, dataset, hour, file_id)
        manifest_key = f"{tenant}/{dataset}/_manifests/{hour}/{file_id}.json"
        await self._processed.put(
            manifest_key, json.dumps({"parquet": target, "sources": keys}).encode(), content_type="application/json"
        )
        bodies = list(await asyncio.gather(*(self._processed.get(k) for k in keys)))  # S3: GETs in parallel
        with tempfile.TemporaryDirectory(prefix="floe-pack-") as tmp:
            path = Path(tmp) / "part.parquet"
            rows = await asyncio.to_thread(_write_parquet, bodies, path)
            del bodies
            lease = await self._leases.renew(lease, self._settings.lease_ttl)
            await self._parquet.put_file(
                target,
                path,
                metadata={"rows": str(rows), "sources": str(len(keys))},
                content_type="application/vnd.apache.parquet",
            )
            out_bytes = path.stat().st_size
        lease = await self._leases.renew(lease, self._settings.lease_ttl)
        for key in keys:
            await self._processed.delete(key)
        await self._processed.delete(manifest_key)
        comp.events_in += rows
        comp.bytes_in += sum(o.size for o in sources)
        comp.bytes_out += out_bytes
        comp.events_out += rows
        comp.last_flush = self._clock()
        log.info("Wrote a Parquet file", extra={"file": target, "rows": rows, "sources": len(keys)})
        return lease


def _write_parquet(bodies: list[bytes], path: Path) -> int:
    """Decode the Arrow IPC bodies, unify their schemas, write one zstd Parquet file; return rows."""
    # One schema for the file first (cheap: footers only), then write table by table.
    schema = unified_schema([pa.ipc.open_file(pa.BufferReader(b)).schema for b in bodies])
    rows = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for body in bodies:
            table = pa.ipc.open_file(pa.BufferReader(body)).read_all()
            if not table.num_rows:
                continue
            pending.append(conform(table, schema))
            pending_rows += table.num_rows
            if pending_rows >= _ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                rows += pending_rows
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
            rows += pending_rows
    return rows
