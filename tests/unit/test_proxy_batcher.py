"""The proxy's batcher over a real disk spool: batches sealed by records, bytes and age (by its
timer, with no further input), compressed into frames the standard ``zstd``/``gzip`` tools read
back to exactly the submitted NDJSON; a full spool holds batches in memory up to the limit, then
input is refused and counted; durable submissions wait for the spool and are never delivered
once refused."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agents.proxy.batcher import Batcher
from agents.proxy.sink import Sink, SinkRefused
from agents.runtime.health import Component
from agents.runtime.spool import Batch, Spool
from floe.v1 import datasets_pb2, health_pb2

HS = health_pb2.HealthStatus
FW = datasets_pb2.Dataset(name="tenants/acme/datasets/fw")
WEB = datasets_pb2.Dataset(name="tenants/acme/datasets/web")


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(fn(), 60))


def ndjson(start: int, count: int, pad: str = "") -> bytes:
    return b"".join(b'{"n":%d,"msg":"hello %s"}\n' % (i, pad.encode()) for i in range(start, start + count))


def noise(size: int, seed: int) -> bytes:
    """One NDJSON record of about ``size`` bytes that barely compresses."""
    text = base64.b64encode(os.urandom(size * 3 // 4)).decode()[: size - 20]
    return b'{"n":%d,"r":"%s"}\n' % (seed, text.encode())


def unpack(body: bytes, encoding: str) -> bytes:
    """Decode with the command-line tool, as any consumer of the objects would."""
    return subprocess.run([encoding, "-dc"], input=body, capture_output=True, check=True, timeout=30).stdout


async def drain(spool: Spool) -> list[tuple[Batch, bytes]]:
    """Claim, read and complete every ready batch."""
    out = []
    for batch in spool.claim(10_000):
        out.append((batch, await spool.read(batch)))
        await spool.complete(batch)
    return out


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def make(spool: Spool, comp: Component, **kwargs: object) -> Batcher:
    options: dict[str, object] = {"max_bytes": 1 << 20, "max_records": 1000, "max_age": 60.0}
    options.update(kwargs)
    return Batcher(spool, comp, **options)  # type: ignore[arg-type]


def test_batcher_is_a_sink(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            sink: Sink = make(spool, Component("batcher", "proxy.batcher"))
            assert sink.submit(FW, ndjson(0, 1), 1)

    run(scenario)


def test_flush_by_records_and_exact_round_trip(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            comp = Component("batcher", "proxy.batcher")
            batcher = make(spool, comp, max_records=10)
            sent = b""
            for i in range(5):
                buf = ndjson(i * 5, 5)
                sent += buf
                assert batcher.submit(FW, buf, 5)
            await until(lambda: spool.stats().appended == 2)  # 10 + 10 sealed at once, 5 still open
            assert batcher.buffered_records() == 5
            assert await batcher.flush_all() == 0
            got = await drain(spool)
            assert [b.meta.records for b, _ in got] == [10, 10, 5]
            for batch, body in got:
                meta = batch.meta
                assert (meta.tenant, meta.dataset, meta.data_hint, meta.content_encoding) == (
                    "acme",
                    "fw",
                    "ndjson",
                    "zstd",
                )
                assert body[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
                assert meta.original_bytes == len(unpack(body, "zstd"))
                assert 0 < time.time() - meta.created_at < 30
            assert b"".join(unpack(body, "zstd") for _, body in got) == sent
            assert comp.events_in == comp.events_out == 25
            assert comp.bytes_in == len(sent) and comp.bytes_out == sum(len(body) for _, body in got)
            assert comp.message == "3 batches spooled" and comp.status == HS.HEALTH_STATUS_HEALTHY
            await batcher.close()

    run(scenario)


def test_flush_by_bytes_keeps_batches_within_the_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            batcher = make(spool, Component("b", "proxy.batcher"), max_bytes=1000, compression="gzip")
            bufs = [ndjson(i, 1, pad="x" * 270) for i in range(7)]  # ~300 bytes each
            big = ndjson(99, 1, pad="y" * 5000)
            for buf in [*bufs[:4], big, *bufs[4:]]:
                assert batcher.submit(FW, buf, 1)
            await batcher.flush_all()
            got = await drain(spool)
            sizes = [b.meta.original_bytes for b, _ in got]
            # Sealed before a buffer would overflow; the oversized one travels alone.
            assert sizes == [len(bufs[0]) * 3, len(bufs[0]), len(big), len(bufs[0]) * 3], sizes
            for batch, body in got:
                assert batch.meta.content_encoding == "gzip" and body[:2] == b"\x1f\x8b"
            assert b"".join(unpack(body, "gzip") for _, body in got) == b"".join([*bufs[:4], big, *bufs[4:]])
            await batcher.close()

    run(scenario)


def test_flush_by_age_needs_no_further_input(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            batcher = make(spool, Component("b", "proxy.batcher"), max_age=0.3)
            started = time.monotonic()
            assert batcher.submit(FW, ndjson(0, 3), 3)
            assert batcher.submit(WEB, ndjson(0, 2), 2)
            await until(lambda: spool.stats().appended == 2)
            elapsed = time.monotonic() - started
            assert 0.25 <= elapsed < 3, elapsed
            got = await drain(spool)
            assert sorted((b.meta.dataset, b.meta.records) for b, _ in got) == [("fw", 3), ("web", 2)]
            await batcher.close()

    run(scenario)


def test_full_spool_holds_batches_in_memory_then_refuses(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Room for two ~1.5 KB compressed batches in the spool, ~4 more in memory.
        async with await Spool.open(tmp_path, max_bytes=3500) as spool:
            comp = Component("b", "proxy.batcher")
            batcher = make(spool, comp, max_bytes=1900, memory_limit=8000)  # one record per batch
            accepted: list[bytes] = []
            refused = 0
            for i in range(12):
                buf = noise(2000, i)
                if batcher.submit(FW, buf, 1):
                    accepted.append(buf)
                else:
                    refused += 1
                await asyncio.sleep(0.02)  # let the flusher try each batch
            assert spool.stats().appended == 2
            assert refused > 0 and comp.dropped["spool_full"] == refused
            assert 8000 - 2000 < batcher.held_bytes <= 8000
            assert comp.status == HS.HEALTH_STATUS_DEGRADED and "refuses" in comp.message
            # Space frees up as batches are delivered: the held ones follow, oldest first.
            delivered: list[bytes] = []
            deadline = time.monotonic() + 20
            while len(delivered) < len(accepted):
                assert time.monotonic() < deadline
                delivered += [unpack(body, "zstd") for _, body in await drain(spool)]
                await asyncio.sleep(0.05)
            assert delivered == accepted
            await until(lambda: comp.status == HS.HEALTH_STATUS_HEALTHY)
            assert batcher.held_bytes == 0
            assert batcher.submit(FW, noise(100, 1), 1)
            await batcher.close()

    run(scenario)


def test_submit_durable_waits_for_the_spool_briefly(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            batcher = make(spool, Component("b", "proxy.batcher"), max_age=60.0)
            started = time.monotonic()
            # Concurrent requests share one batch (and one disk sync).
            await asyncio.gather(*(batcher.submit_durable(FW, ndjson(i, 1), 1) for i in range(5)))
            assert time.monotonic() - started < 1.0  # the batch max age (60 s) does not apply
            got = await drain(spool)
            assert [b.meta.records for b, _ in got] == [5]
            await batcher.close()

    run(scenario)


def test_refused_durable_records_are_never_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path, max_bytes=2500) as spool:
            comp = Component("b", "proxy.batcher")
            batcher = make(spool, comp, max_bytes=1900)
            await batcher.submit_durable(FW, noise(2000, 1), 1)  # fills the spool
            with pytest.raises(SinkRefused, match="spool"):
                await batcher.submit_durable(FW, noise(2000, 2), 1)
            # While the spool refuses, later requests are refused up front.
            assert batcher.submit(FW, noise(2000, 3), 1)  # best effort: held in memory
            await until(lambda: comp.status == HS.HEALTH_STATUS_DEGRADED)
            with pytest.raises(SinkRefused):
                await batcher.submit_durable(FW, noise(10, 4), 1)
            assert comp.dropped["spool_full"] == 2
            delivered: list[bytes] = []
            deadline = time.monotonic() + 20
            while len(delivered) < 2:
                assert time.monotonic() < deadline
                delivered += [unpack(body, "zstd") for _, body in await drain(spool)]
                await asyncio.sleep(0.05)
            assert [line[:8] for line in delivered] == [b'{"n":1,"', b'{"n":3,"']
            await batcher.close()

    run(scenario)


def test_close_counts_what_the_spool_never_took(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path, max_bytes=100) as spool:
            comp = Component("b", "proxy.batcher")
            batcher = make(spool, comp, max_records=2)
            assert batcher.submit(FW, noise(500, 1) + noise(500, 2), 2)
            assert batcher.submit(WEB, noise(500, 3), 1)
            assert await batcher.flush_all(0.3) == 3
            await batcher.close(wait_seconds=0.2)
            assert comp.dropped["shutdown"] == 3
            assert not batcher.submit(FW, ndjson(0, 1), 1)
            assert comp.dropped["shutdown"] == 4
            with pytest.raises(SinkRefused, match="shutting down"):
                await batcher.submit_durable(FW, ndjson(0, 1), 1)

    run(scenario)


def test_records_of_a_badly_named_dataset_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            comp = Component("b", "proxy.batcher")
            batcher = make(spool, comp)
            assert not batcher.submit(datasets_pb2.Dataset(name="fw"), ndjson(0, 4), 4)
            assert comp.dropped == {"bad_dataset_name": 4}
            await batcher.close()

    run(scenario)


def test_settings_are_checked(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            with pytest.raises(ValueError, match="max_records: must be at least 1") as info:
                make(spool, Component("b", "k"), max_records=0, compression="lz4")
            assert "compression: 'lz4' must be zstd or gzip" in str(info.value)

    run(scenario)
