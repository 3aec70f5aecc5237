"""Upload workers: spooled batches become raw objects in the intake store.

Failures fall in three kinds (``classify``):

- the batch itself is bad (its file is damaged, its name or metadata is invalid): dead-lettered
  at once, retrying cannot help;
- the store refused this object (an S3 4xx other than auth and throttling): retried with backoff
  up to ``retry_attempts`` attempts, then dead-lettered;
- the store is unavailable for everyone (connection refused, timeouts, 5xx, throttling, bad
  credentials, missing bucket): not the batch's fault, so it never dead-letters a batch. Every
  worker pauses for a backoff delay (``floe.backoff.Backoff`` growing to ``retry_interval``), then
  one probe upload runs at a time until one succeeds. The batches wait in the spool, which keeps
  accepting until it is full; ``spool_max_age`` bounds how long they may wait.

A batch is completed (deleted from the spool) only after its object is stored, so a crash
between the two uploads it again on restart, under the same name (``naming``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agents.receiver.framing import compress_zstd
from agents.receiver.naming import CONTENT_TYPES, candidates, object_metadata
from agents.runtime.health import Component
from agents.runtime.objectstore import ObjectStore, ObjectStoreError
from agents.runtime.spool import Batch, CorruptBatchError, Spool
from floe.backoff import Backoff
from floe.v1 import health_pb2

__all__ = ["BATCH", "REFUSED", "STORE", "Uploader", "classify"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus

BATCH, REFUSED, STORE = "batch", "refused", "store"
_STORE_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "NoSuchBucket",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "InternalError",
    }
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during (``raise ... from None`` keeps the context)."""
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def classify(exc: BaseException) -> str:
    """``BATCH``, ``REFUSED`` or ``STORE`` (see the module docstring)."""
    if isinstance(exc, CorruptBatchError | ValueError):
        return BATCH
    from botocore.exceptions import BotoCoreError, ClientError

    chain = _chain(exc)
    for cause in chain:
        if isinstance(cause, ClientError):
            err = cause.response.get("Error", {})
            status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = str(err.get("Code", ""))
            if code in _STORE_CODES or status >= 500 or status in (401, 403, 408, 429) or not status:
                return STORE
            return REFUSED
        if isinstance(cause, BotoCoreError):
            return STORE
    if isinstance(exc, ObjectStoreError):
        # The local store's only refusal: a key that is both an object and a prefix of others.
        if any(isinstance(c, NotADirectoryError | IsADirectoryError | FileExistsError) for c in chain):
            return BATCH
        return STORE if any(isinstance(c, OSError) for c in chain) else REFUSED
    if isinstance(exc, OSError):
        return STORE  # local store: disk full, permissions...
    return REFUSED


class _Busy(Exception):
    """Raised when another worker is uploading a batch with the same id (a sender's retry spooled
    twice): this copy waits and then finds the object stored."""


class Uploader:
    """Moves batches from ``spool`` to ``store``. ``run`` until cancelled; ``notify`` after appends."""

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        component: Component,
        *,
        receiver: str,
        concurrency: int,
        retry_attempts: int,
        retry_interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.store = store
        self.component = component
        self.receiver = receiver
        self.concurrency = concurrency
        self.retry_attempts = retry_attempts
        self.retry_interval = retry_interval
        self._initial = min(0.5, retry_interval)
        self._clock = clock
        self._backoff = Backoff(self._initial, retry_interval)
        self._wake = asyncio.Event()
        self._active: set[asyncio.Task[None]] = set()
        self._reserved: dict[str, str] = {}  # key -> batch id being uploaded there
        self._paused_until = 0.0
        self.failing = False
        self.last_error = ""
        self.duplicates = 0
        self.dead_lettered = 0

    def notify(self) -> None:
        """New or re-queued batches are in the spool."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                now = self._clock()
                if self._paused_until > now:
                    timeout: float | None = self._paused_until - now
                else:
                    # While the store is failing, one probe at a time until an upload succeeds.
                    limit = 1 if self.failing else self.concurrency
                    if len(self._active) < limit:
                        for batch in self.spool.claim(limit - len(self._active)):
                            task = asyncio.create_task(self._one(batch), name=f"upload-{batch.id}")
                            self._active.add(task)
                            task.add_done_callback(self._done)
                    ready_at = self.spool.next_ready_at()
                    timeout = None if ready_at is None or len(self._active) >= limit else max(0.0, ready_at - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            for task in self._active:
                task.cancel()
            if self._active:
                await asyncio.gather(*self._active, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._wake.set()

    async def _one(self, batch: Batch) -> None:
        started = self._clock()
        try:
            key, stored = await self._upload(batch)
        except asyncio.CancelledError:
            raise  # shutting down: the batch stays in the spool and is uploaded after the restart
        except Exception as exc:
            await self._failed(batch, exc)
            return
        await self.spool.complete(batch)
        self._backoff.reset()
        comp = self.component
        comp.events_out += 1
        comp.bytes_out += stored
        comp.last_flush = self._clock()
        if self.failing:
            self.failing = False
            comp.status, comp.message = HS.HEALTH_STATUS_HEALTHY, ""
            log.info("Uploads work again", extra={"store": repr(self.store), "key": key})
        log.debug("Batch uploaded", extra={"batch": batch.id, "key": key, "s": round(self._clock() - started, 3)})

    async def _upload(self, batch: Batch) -> tuple[str, int]:
        """Store ``batch``; return its key and the bytes stored (0 if an earlier attempt had)."""
        meta = batch.meta
        encoding = meta.content_encoding or "zstd"
        body: bytes | None = None
        for key in candidates(meta, encoding):
            holder = self._reserved.get(key)
            if holder is not None:
                if holder == meta.batch_id:
                    raise _Busy(f"Batch {meta.batch_id!r} is being uploaded by another worker.")
                continue  # another batch is taking this name right now
            self._reserved[key] = meta.batch_id
            try:
                info = await self.store.head(key)
                if info is not None:
                    if info.metadata.get("batch-id") == meta.batch_id:
                        # Stored before a crash or by another receiver that got the same batch.
                        self.duplicates += 1
                        return key, 0
                    log.info("Object name taken by another batch; trying the next", extra={"key": key})
                    continue
                if body is None:
                    try:
                        body = await self.spool.read(batch)
                    except OSError as exc:  # the batch file is gone or unreadable: not the store's fault
                        raise CorruptBatchError(f"Cannot read batch {batch.id} from the spool: {exc}") from exc
                    if not meta.content_encoding:
                        body = await asyncio.to_thread(compress_zstd, body)
                original = meta.original_bytes or (batch.size if not meta.content_encoding else 0)
                await self.store.put(
                    key,
                    body,
                    metadata=object_metadata(meta, encoding, self.receiver, original),
                    content_type=CONTENT_TYPES[encoding],
                )
                return key, len(body)
            finally:
                del self._reserved[key]
        raise ObjectStoreError(f"Every candidate object name of batch {meta.batch_id!r} holds another batch.")

    async def _failed(self, batch: Batch, exc: Exception) -> None:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, _Busy):
            await self.spool.retry(batch, message, self._initial)
            return
        kind = classify(exc)
        fields = {"batch": batch.id, "tenant": batch.meta.tenant, "dataset": batch.meta.dataset, "error": message}
        if kind == STORE:
            self.component.errors += 1
            self.last_error = message
            now = self._clock()
            if now >= self._paused_until:
                self._paused_until = now + self._backoff.delay()
            self.component.status = HS.HEALTH_STATUS_DEGRADED
            self.component.message = f"uploads are failing: {message}"
            if not self.failing:
                self.failing = True
                log.warning("Uploads are failing; batches wait in the spool", extra=fields)
            await self.spool.retry(batch, message, self._paused_until - now)
            return
        attempts = batch.attempts + 1
        if kind == BATCH or attempts >= self.retry_attempts:
            reason = message if kind == BATCH else f"refused {attempts} times by the object store: {message}"
            await self.spool.dead_letter(batch, reason)
            self.dead_lettered += 1
            log.error("Batch moved to the DLQ", extra={**fields, "attempts": attempts})
            return
        self.component.errors += 1
        delay = Backoff(self._initial, self.retry_interval)
        for _ in range(batch.attempts):
            delay.delay()
        await self.spool.retry(batch, message, delay.delay())
        log.warning("Object store refused a batch; retrying", extra={**fields, "attempts": attempts})
