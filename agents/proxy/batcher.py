"""The proxy's batcher: the ``Sink`` its inputs hand NDJSON to. It owns the per-dataset open
batches, seals them by size, record count or age, compresses them and appends them to the disk
spool, from which the forwarder sends them on.

Memory is bounded across datasets by ``memory_limit`` bytes: open batches count their raw bytes,
sealed ones their compressed size once compressed, until the spool has them. When the spool is
full, sealed batches wait in memory (retried with backoff, oldest first) while there is room;
past the limit ``submit`` refuses and the input counts the records as dropped.

Durable submissions (inputs that acknowledge their sender, such as the HTTP webhook) go into a
batch of their own per dataset that lingers only briefly (``DURABLE_LINGER``): a sender waits for
the spool, and concurrent requests still share one batch and one disk sync. If the spool refuses
that batch, every sender waiting on it gets ``SinkRefused`` and the batch is dropped, so a refused
request is never delivered as well (the sender retries it).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
from prometheus_client import Counter

from agents.proxy.sink import SinkRefused
from agents.runtime.health import Component
from agents.runtime.spool import BatchMeta, Spool, SpoolClosedError, SpoolError
from floe.aio import cancel
from floe.backoff import Backoff
from floe.protocol import DEFAULT_DATA_HINTS
from floe.v1 import datasets_pb2, health_pb2

__all__ = ["DURABLE_LINGER", "Batcher", "compress", "split_dataset_name"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus

#: How long a durable batch waits for more requests before it is spooled (seconds).
DURABLE_LINGER = 0.05
#: Sealed batches smaller than this (raw, together) are compressed on the loop: a thread hop
#: costs more than compressing a few hundred KiB with zstd level 1.
INLINE_COMPRESS_BYTES = 256 << 10
#: At most this many raw bytes are compressed and appended as one group (one disk sync).
GROUP_MAX_BYTES = 64 << 20
GROUP_MAX_BATCHES = 64
#: gzip level: 6 is zlib's own default, ~4x faster than 9 for 3-4 % larger bodies.
GZIP_LEVEL = 6

BATCHES = Counter("floe_proxy_batches_spooled_total", "Batches the proxy appended to its spool.")
DROPPED = Counter("floe_proxy_records_refused_total", "Records the proxy's batcher refused or lost.", ["reason"])


def compress(data: bytes, codec: str) -> bytes:
    """``data`` as one standard zstd frame (level 1, content size in the header) or one gzip member.

    pyarrow's zstd codec writes a plain frame that ``zstd -d`` and every zstd library read; gzip
    goes through the stdlib (zlib), whose level 6 is several times faster than pyarrow's default 9.
    Both release the GIL, so large batches compress in a thread without stalling the loop.
    """
    if codec == "zstd":
        out: bytes = pa.compress(data, codec="zstd", asbytes=True)
        return out
    if codec == "gzip":
        return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    raise ValueError(f"compression: {codec!r} must be zstd or gzip")


def split_dataset_name(name: str) -> tuple[str, str] | None:
    """``tenants/{t}/datasets/{d}`` -> ``(t, d)``; None when ``name`` is not shaped like that."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "tenants" or parts[2] != "datasets" or not parts[1] or not parts[3]:
        return None
    return parts[1], parts[3]


def batch_hint(dataset: datasets_pb2.Dataset) -> str:
    """The data hint a batch of ``dataset`` is sent with. Proxies always send NDJSON records; the
    hint tells piper how to type them: syslog records get their syslog column types back (a
    timestamp, not a string), flow records keep their kind, everything else is plain NDJSON."""
    hint = dataset.data_hint or DEFAULT_DATA_HINTS.get(dataset.source.type, "ndjson")
    return hint if hint in ("syslog", "sflow", "ipfix", "netflow") else "ndjson"


@dataclass(eq=False)
class _Batch:
    tenant: str
    dataset: str
    durable: bool
    created_at: float
    """Wall clock of the first record (BatchMeta.created_at)."""
    hint: str = "ndjson"
    """The batch's data hint (``batch_hint``)."""
    buffers: list[bytes] = field(default_factory=list)
    records: int = 0
    raw_bytes: int = 0
    body: bytes | None = None
    """The compressed body, once compressed."""
    timer: asyncio.TimerHandle | None = None
    deadline: float = 0.0
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def held(self) -> int:
        """Bytes this batch holds in memory."""
        return len(self.body) if self.body is not None else self.raw_bytes


class Batcher:
    """Implements ``agents.proxy.sink.Sink``. Create and use on one event loop; ``close`` when done.

    ``on_spooled`` is called (on the loop) after each group of batches reaches the spool, so the
    forwarder can pick them up at once.
    """

    def __init__(
        self,
        spool: Spool,
        component: Component,
        *,
        max_bytes: int,
        max_records: int,
        max_age: float,
        compression: str = "zstd",
        memory_limit: int = 64 << 20,
        on_spooled: Callable[[], None] | None = None,
    ) -> None:
        problems = [
            f"{n}: must be at least 1" for n, v in (("max_bytes", max_bytes), ("max_records", max_records)) if v < 1
        ]
        if max_age <= 0:
            problems.append("max_age: must be greater than 0")
        if compression not in ("zstd", "gzip"):
            problems.append(f"compression: {compression!r} must be zstd or gzip")
        if memory_limit < max_bytes:
            problems.append(f"memory_limit: {memory_limit} must be at least max_bytes ({max_bytes})")
        if problems:
            raise ValueError("; ".join(problems))
        self._spool = spool
        self._comp = component
        self._max_bytes = max_bytes
        self._max_records = max_records
        self._max_age = max_age
        self._compression = compression
        self._memory_limit = memory_limit
        self._on_spooled = on_spooled
        self._open: dict[tuple[str, str, bool], _Batch] = {}
        self._sealed: deque[_Batch] = deque()
        self._group: list[_Batch] = []  # being compressed and appended now
        self._held = 0
        self._flusher: asyncio.Task[None] | None = None
        # Set while the spool refuses batches (full or failing); cleared by the next success.
        self._refusing = ""
        self._backoff = Backoff(0.05, 1.0)
        self._batches = 0
        self._closed = False
        self._bad_names: set[str] = set()
        self._refresh()

    # -- the Sink contract -------------------------------------------------------------------

    def submit(self, dataset: datasets_pb2.Dataset, records: bytes, count: int) -> bool:
        """Add NDJSON ``records`` to the dataset's open batch; False when refused (see ``Sink``)."""
        key = self._route(dataset, count)
        if key is None:
            return False
        if self._held + len(records) > self._memory_limit:
            self._drop("spool_full" if self._refusing else "buffer_full", count)
            return False
        self._add(key[0], key[1], False, records, count, hint=batch_hint(dataset))
        return True

    async def submit_durable(self, dataset: datasets_pb2.Dataset, records: bytes, count: int) -> None:
        """Add records and return once they are in the spool; ``SinkRefused`` when they cannot be."""
        key = self._route(dataset, count)
        if key is None:
            raise SinkRefused(
                "The proxy is shutting down." if self._closed else f"{dataset.name!r} is not a dataset name."
            )
        if self._refusing:
            self._drop("spool_full", count)
            raise SinkRefused(f"The proxy's spool cannot take more now ({self._refusing}); retry later.")
        if self._held + len(records) > self._memory_limit:
            self._drop("buffer_full", count)
            raise SinkRefused("The proxy's memory buffer is full; retry later.")
        batch = self._add(key[0], key[1], True, records, count, hint=batch_hint(dataset))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        await waiter

    # -- flushing ----------------------------------------------------------------------------

    async def flush_all(self, wait_seconds: float | None = None) -> int:
        """Seal every open batch and wait until all are in the spool (or ``wait_seconds`` passed).

        Returns how many records are still only in memory (0 when everything was spooled).
        """
        for key in list(self._open):
            self._seal(key)
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait({flusher}, timeout=wait_seconds)
        return self.buffered_records()

    async def close(self, wait_seconds: float = 10.0) -> None:
        """Refuse new input, flush what is buffered (for up to ``wait_seconds``) and stop.

        Records the spool could not take by then are lost: counted as dropped (``shutdown``) and
        logged.
        """
        if self._closed:
            return
        self._closed = True
        left = await self.flush_all(wait_seconds)
        await cancel(self._flusher)
        if left:
            log.warning(
                "Records lost at shutdown: the spool did not take them in time",
                extra={"records": left, "reason": self._refusing},
            )
            self._drop("shutdown", left)
        for batch in [*self._group, *self._sealed, *self._open.values()]:
            if batch.timer is not None:
                batch.timer.cancel()
            self._fail(batch, SinkRefused("The proxy is shutting down."))
        self._group = []
        self._sealed.clear()
        self._open.clear()
        self._held = 0
        self._refresh()

    def buffered_records(self) -> int:
        """Records accepted but not yet in the spool."""
        return sum(b.records for b in (*self._group, *self._sealed, *self._open.values()))

    @property
    def held_bytes(self) -> int:
        """Bytes held in memory now (raw for open batches, compressed once compressed)."""
        return self._held

    # -- internals ---------------------------------------------------------------------------

    def _route(self, dataset: datasets_pb2.Dataset, count: int) -> tuple[str, str] | None:
        if self._closed:
            self._drop("shutdown", count)
            return None
        key = split_dataset_name(dataset.name)
        if key is None:
            if dataset.name not in self._bad_names:
                self._bad_names.add(dataset.name)
                log.error("Records for a dataset without a tenants/T/datasets/D name", extra={"dataset": dataset.name})
            self._drop("bad_dataset_name", count)
        return key

    def _add(self, tenant: str, dataset: str, durable: bool, records: bytes, count: int, *, hint: str) -> _Batch:
        key = (tenant, dataset, durable)
        batch = self._open.get(key)
        size = len(records)
        if batch is not None and (
            batch.raw_bytes + size > self._max_bytes or batch.records + count > self._max_records
        ):
            self._seal(key)  # keep batches within the limits (a single larger buffer goes alone)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch(tenant, dataset, durable, time.time(), hint)
            loop = asyncio.get_running_loop()
            delay = min(self._max_age, DURABLE_LINGER) if durable else self._max_age
            batch.deadline = loop.time() + delay
            batch.timer = loop.call_at(batch.deadline, self._expire, key, batch)
        batch.buffers.append(records)
        batch.records += count
        batch.raw_bytes += size
        self._held += size
        self._comp.events_in += count
        self._comp.bytes_in += size
        if batch.raw_bytes >= self._max_bytes or batch.records >= self._max_records:
            self._seal(key)
        return batch

    def _expire(self, key: tuple[str, str, bool], batch: _Batch) -> None:
        if self._open.get(key) is batch:
            self._seal(key)

    def _seal(self, key: tuple[str, str, bool]) -> None:
        batch = self._open.pop(key)
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        self._sealed.append(batch)
        self._refresh()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="proxy-batcher")

    async def _flush_loop(self) -> None:
        try:
            while self._sealed:
                group = self._group = self._take_group()
                await self._compress(group)
                results = await asyncio.gather(
                    *(self._spool.append(self._meta(b), b.body or b"") for b in group), return_exceptions=True
                )
                self._group = []
                failed: list[_Batch] = []
                problem = ""
                for batch, result in zip(group, results, strict=True):
                    if isinstance(result, str):
                        self._spooled(batch)
                    elif isinstance(result, SpoolClosedError):
                        raise result
                    elif isinstance(result, Exception):
                        if not isinstance(result, SpoolError):
                            log.error("Appending a batch to the spool failed", exc_info=result)
                        problem = str(result) or type(result).__name__
                        if batch.durable:  # its senders are told and will retry: never deliver it too
                            self._discard(batch, SinkRefused(f"The proxy's spool cannot take more now: {problem}"))
                        else:
                            failed.append(batch)
                    elif isinstance(result, BaseException):
                        raise result
                if any(isinstance(r, str) for r in results) and self._on_spooled is not None:
                    self._on_spooled()
                if problem:
                    self._sealed.extendleft(reversed(failed))  # oldest first again
                    self._refuse(problem)
                    await asyncio.sleep(self._backoff.delay())
                elif self._refusing:
                    self._accept()
                self._refresh()
        except SpoolClosedError:
            log.error("The spool closed before the batcher; buffered records are lost")
        finally:
            self._flusher = None

    def _take_group(self) -> list[_Batch]:
        group = [self._sealed.popleft()]
        size = group[0].raw_bytes
        while self._sealed and len(group) < GROUP_MAX_BATCHES and size + self._sealed[0].raw_bytes <= GROUP_MAX_BYTES:
            batch = self._sealed.popleft()
            group.append(batch)
            size += batch.raw_bytes
        return group

    async def _compress(self, group: list[_Batch]) -> None:
        todo = [b for b in group if b.body is None]
        if not todo:
            return
        codec = self._compression

        def work() -> list[bytes]:
            return [compress(b"".join(b.buffers), codec) for b in todo]

        if sum(b.raw_bytes for b in todo) > INLINE_COMPRESS_BYTES:
            bodies = await asyncio.to_thread(work)
        else:
            bodies = work()
        for batch, body in zip(todo, bodies, strict=True):
            self._held += len(body) - batch.raw_bytes
            batch.body = body
            batch.buffers = []

    def _meta(self, batch: _Batch) -> BatchMeta:
        return BatchMeta(
            tenant=batch.tenant,
            dataset=batch.dataset,
            data_hint=batch.hint,
            content_encoding=self._compression,
            records=batch.records,
            original_bytes=batch.raw_bytes,
            created_at=batch.created_at,
        )

    def _spooled(self, batch: _Batch) -> None:
        self._held -= batch.held
        self._batches += 1
        BATCHES.inc()
        self._comp.events_out += batch.records
        self._comp.bytes_out += batch.held
        self._comp.last_flush = time.time()
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _discard(self, batch: _Batch, exc: SinkRefused) -> None:
        self._held -= batch.held
        self._drop("spool_full", batch.records)
        self._fail(batch, exc)

    @staticmethod
    def _fail(batch: _Batch, exc: SinkRefused) -> None:
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_exception(exc)

    def _refuse(self, problem: str) -> None:
        if not self._refusing:
            log.warning("The spool refuses batches; holding them in memory", extra={"error": problem})
        self._refusing = problem
        self._comp.errors += 1

    def _accept(self) -> None:
        log.info("The spool takes batches again", extra={"held_bytes": self._held})
        self._refusing = ""
        self._backoff.reset()

    def _drop(self, reason: str, count: int) -> None:
        if count:
            self._comp.drop(reason, count)
            DROPPED.labels(reason).inc(count)

    def _refresh(self) -> None:
        comp = self._comp
        comp.backlog = len(self._open) + len(self._group) + len(self._sealed)
        if self._refusing:
            comp.status = HS.HEALTH_STATUS_DEGRADED
            comp.message = (
                f"the spool refuses batches ({self._refusing}); holding {self._held} of {self._memory_limit} "
                "bytes in memory, input is dropped beyond that"
            )
        else:
            comp.status = HS.HEALTH_STATUS_HEALTHY
            comp.message = f"{self._batches} batches spooled"
