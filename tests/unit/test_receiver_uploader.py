"""Upload workers on a real spool and a real local store: idempotent names across re-uploads,
the next name on a collision, classification of failures, and pausing while the store is down."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from agents.receiver.naming import candidates, seconds_from_ns
from agents.receiver.uploader import BATCH, REFUSED, STORE, Uploader, classify
from agents.runtime.health import Component
from agents.runtime.objectstore import LocalStore, ObjectStoreError
from agents.runtime.spool import BatchMeta, CorruptBatchError, Spool
from floe.v1 import health_pb2

HS = health_pb2.HealthStatus
CREATED = 1_731_000_000_000_000_000


def meta(batch_id: str) -> BatchMeta:
    return BatchMeta(
        "acme",
        "fw",
        data_hint="ndjson",
        content_encoding="gzip",
        created_at=seconds_from_ns(CREATED),
        batch_id=batch_id,
    )


def wrapped(cause: BaseException) -> ObjectStoreError:
    try:
        try:
            raise cause
        except Exception:
            raise ObjectStoreError("wrapped") from None
    except ObjectStoreError as exc:
        return exc


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


def test_classify() -> None:
    assert classify(CorruptBatchError("x")) == BATCH
    assert classify(ValueError("bad key")) == BATCH
    assert classify(wrapped(NotADirectoryError())) == BATCH  # local store: key is under a file
    assert classify(wrapped(client_error("EntityTooLarge", 400))) == REFUSED
    for code, status in [("AccessDenied", 403), ("NoSuchBucket", 404), ("SlowDown", 503), ("InternalError", 500)]:
        assert classify(wrapped(client_error(code, status))) == STORE, code
    assert classify(wrapped(EndpointConnectionError(endpoint_url="http://x"))) == STORE
    assert classify(OSError(28, "No space left on device")) == STORE


async def until(done: Callable[[], bool]) -> None:
    """Poll ``done`` for up to 10 s."""
    for _ in range(1000):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 10 s")


class FlakyStore(LocalStore):
    """A real local store whose puts fail like a full disk while ``down`` is set."""

    down = False

    async def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if self.down:
            raise OSError(28, "No space left on device")
        return await super().put(key, data, **kwargs)


def test_reupload_is_skipped_and_collisions_take_the_next_name(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalStore(tmp_path / "objects")
        async with await Spool.open(tmp_path / "spool") as spool:
            comp = Component("upload", "objectstore")
            up = Uploader(spool, store, comp, receiver="r1", concurrency=4, retry_attempts=3, retry_interval=1.0)
            task = asyncio.create_task(up.run())
            first, second = candidates(meta("mine"), "gzip", 2)
            # An earlier attempt stored this batch (a crash before complete): not stored again.
            await store.put(first, b"old", metadata={"batch-id": "mine"})
            await spool.append(meta("mine"), gzip.compress(b"a\n"))
            up.notify()
            await until(lambda: up.duplicates == 1)
            assert await store.get(first) == b"old"
            # Another batch whose name is taken by a different batch id: the next nanosecond.
            await store.put(first, b"someone else", metadata={"batch-id": "else"})
            await spool.append(meta("mine"), gzip.compress(b"b\n"))
            up.notify()
            await until(lambda: comp.events_out == 2)  # the duplicate counted as delivered too
            info = await store.head(second)
            assert info is not None and info.metadata["batch-id"] == "mine" and info.metadata["receiver"] == "r1"
            assert gzip.decompress(await store.get(second)) == b"b\n"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_bad_batches_dead_letter_and_store_outages_wait(tmp_path: Path) -> None:
    async def scenario() -> None:
        root = tmp_path / "objects"
        store = FlakyStore(root)
        async with await Spool.open(tmp_path / "spool") as spool:
            comp = Component("upload", "objectstore")
            up = Uploader(spool, store, comp, receiver="r1", concurrency=4, retry_attempts=2, retry_interval=0.2)
            task = asyncio.create_task(up.run())
            # A key under a plain file cannot exist in the local store: the batch's fault, DLQ at once.
            (root / "acme").write_text("")
            await spool.append(meta("x1"), gzip.compress(b"x\n"))
            up.notify()
            await until(lambda: up.dead_lettered == 1)
            (root / "acme").unlink()
            # The store failing for everyone: batches wait (no DLQ however long), the component degrades.
            store.down = True
            for n in range(3):
                await spool.append(meta(f"y{n}"), gzip.compress(b"y\n"))
            up.notify()
            await until(lambda: comp.errors >= 4)
            assert comp.status == HS.HEALTH_STATUS_DEGRADED and "No space left" in comp.message
            assert up.failing and up.dead_lettered == 1
            store.down = False
            await until(lambda: comp.events_out == 3)
            assert comp.status == HS.HEALTH_STATUS_HEALTHY and not up.failing
            assert len(spool.dlq_list()) == 1
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
