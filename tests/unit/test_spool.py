"""The disk spool: durable appends with grouped syncs, leasing, retry, DLQ, limits, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agents.runtime.health import Component
from agents.runtime.spool import (
    BatchMeta,
    BatchState,
    CorruptBatchError,
    Spool,
    SpoolClosedError,
    SpoolError,
    SpoolFull,
)

META = BatchMeta(tenant="acme", dataset="fw", data_hint="syslog", content_encoding="gzip", records=3)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(fn(), 60))


def batch_files(directory: Path) -> list[str]:
    return sorted(p.name for p in (directory / "batches").iterdir())


def test_append_claim_read_complete(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            first = await spool.append(META, b"one")
            second = await spool.append(BatchMeta("acme", "web"), b"two!")
            assert first < second
            claimed = spool.claim(10)
            assert [b.id for b in claimed] == [first, second]
            assert claimed[0].meta.records == 3 and claimed[0].meta.content_encoding == "gzip"
            assert claimed[0].meta.created_at > 0 and claimed[0].state is BatchState.QUEUE
            assert spool.claim(10) == []  # leased: nobody else gets them
            assert await spool.read(claimed[0]) == b"one"
            path, offset = spool.path(claimed[1])
            assert path.read_bytes()[offset:] == b"two!"
            await spool.complete(claimed[0])
            spool.release(claimed[1])
            assert [b.id for b in spool.claim(10)] == [second]
            stats = spool.stats()
            assert stats.states[BatchState.QUEUE].count == 1 and stats.states[BatchState.QUEUE].bytes == 4
            assert stats.appended == 2 and stats.appended_bytes == 7
        assert batch_files(tmp_path) == [f"{second}.batch"]

    run(scenario)


def test_concurrent_appends_share_syncs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            before = spool.stats().syncs
            ids = await asyncio.gather(*(spool.append(META, b"x" * 1000 + bytes([i])) for i in range(100)))
            assert len(set(ids)) == 100
            syncs = spool.stats().syncs - before
            assert 1 <= syncs <= 10, syncs
            assert len(spool.claim(1000)) == 100

    run(scenario)


def test_fsync_per_file_fallback_still_durable(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path, use_syncfs=False) as spool:
            await asyncio.gather(*(spool.append(META, b"y") for _ in range(5)))
            # one fsync per file plus one of the directory per group
            assert spool.stats().syncs >= 6
        async with await Spool.open(tmp_path) as spool:
            assert len(spool.claim(10)) == 5

    run(scenario)


def test_retry_waits_for_delay_and_counts_attempts(tmp_path: Path) -> None:
    clock = Clock()

    async def scenario() -> None:
        async with await Spool.open(tmp_path, clock=clock) as spool:
            await spool.append(META, b"body")
            [batch] = spool.claim(1)
            retried = await spool.retry(batch, "receiver said 503", delay=30)
            assert retried.state is BatchState.RETRY and retried.attempts == 1
            assert spool.claim(1) == []
            assert spool.next_ready_at() == clock.now + 30
            clock.now += 31
            [again] = spool.claim(1)
            assert again.attempts == 1 and again.last_error == "receiver said 503"
            await spool.retry(again, "timeout", delay=5)
            assert spool.stats().states[BatchState.RETRY].count == 1
        # The retry state survives a restart.
        async with await Spool.open(tmp_path, clock=clock) as spool:
            assert spool.claim(1) == []
            clock.now += 6
            [batch] = spool.claim(1)
            assert batch.attempts == 2 and batch.last_error == "timeout" and batch.state is BatchState.RETRY

    run(scenario)


def test_dead_letter_list_and_retry(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            a = await spool.append(BatchMeta("acme", "fw"), b"a")
            b = await spool.append(BatchMeta("globex", "fw"), b"bb")
            for batch in spool.claim(2):
                await spool.dead_letter(batch, "receiver said 400: unknown dataset")
            assert spool.claim(2) == []
            assert [x.id for x in spool.dlq_list()] == [a, b]
            [only] = spool.dlq_list(tenant="globex")
            assert only.id == b and only.dlq_reason.startswith("receiver said 400") and only.state is BatchState.DLQ
            stats = spool.stats()
            assert stats.states[BatchState.DLQ].count == 2 and stats.states[BatchState.DLQ].bytes == 3
            assert stats.by_dataset[("globex", "fw")][BatchState.DLQ].bytes == 2
            component = Component("spool", "spool")
            spool.fill_health(component)
            assert component.dlq_size == 2 and component.backlog == 0 and component.events_in == 2
        async with await Spool.open(tmp_path) as spool:
            assert [x.id for x in spool.dlq_list()] == [a, b]
            assert await spool.dlq_retry([b, "99"]) == 1
            [batch] = spool.claim(5)
            assert batch.id == b and batch.attempts == 0 and batch.state is BatchState.QUEUE
            assert await spool.dlq_retry() == 1
            assert [x.id for x in spool.claim(5)] == [a]
        async with await Spool.open(tmp_path) as spool:
            assert spool.dlq_list() == [] and len(spool.claim(5)) == 2

    run(scenario)


def test_dlq_evicts_oldest_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path, dlq_max_bytes=250) as spool:
            ids = [await spool.append(META, bytes(100)) for _ in range(4)]
            for batch in spool.claim(4):
                await spool.dead_letter(batch, "bad")
            assert [b.id for b in spool.dlq_list()] == ids[2:]
            stats = spool.stats()
            assert stats.evicted == 2 and stats.evicted_bytes == 200
            assert stats.states[BatchState.DLQ].bytes == 200
            assert [b.id for b in spool.dlq_list(dataset="fw", limit=1)] == ids[2:3]
            assert spool.dlq_list(dataset="web") == []
            component = Component("spool", "spool")
            spool.fill_health(component)
            assert component.dropped == {"dlq_evicted": 2} and component.dlq_size == 2
        assert batch_files(tmp_path) == sorted([f"{i}.batch" for i in ids[2:]] + [f"{i}.state" for i in ids[2:]])

    run(scenario)


def test_max_age_moves_old_batches_to_dlq(tmp_path: Path) -> None:
    clock = Clock()

    async def scenario() -> None:
        async with await Spool.open(tmp_path, max_age=3600, clock=clock) as spool:
            old = await spool.append(META, b"old")
            clock.now += 3000
            new = await spool.append(META, b"new")
            clock.now += 1000
            assert await spool.sweep() == 1
            [dead] = spool.dlq_list()
            assert dead.id == old and "max_age" in dead.dlq_reason
            assert [b.id for b in spool.claim(5)] == [new]
            assert spool.stats().expired == 1
        # Opening sweeps too.
        clock.now += 3600
        async with await Spool.open(tmp_path, max_age=3600, clock=clock) as spool:
            assert {b.id for b in spool.dlq_list()} == {old, new}

    run(scenario)


def test_spool_full(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path, max_bytes=1000) as spool:
            await spool.append(META, bytes(600))
            with pytest.raises(SpoolFull, match="retry later"):
                await spool.append(META, bytes(500))
            # concurrent appends reserve their bytes before any is written
            results = await asyncio.gather(*(spool.append(META, bytes(300)) for _ in range(2)), return_exceptions=True)
            assert sum(isinstance(r, SpoolFull) for r in results) == 1
            # dead-lettered bytes do not count against max_bytes
            for batch in spool.claim(5):
                await spool.dead_letter(batch, "bad")
            await spool.append(META, bytes(1000))
        assert len(batch_files(tmp_path)) == 5  # two dead-lettered batches with sidecars, one queued

    run(scenario)


def test_reopen_keeps_ids_recovers_claims_and_cleans_partials(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            ids = [await spool.append(META, f"body {i}".encode()) for i in range(3)]
            spool.claim(2)  # claimed, never completed: ready again after a restart
        batches = tmp_path / "batches"
        # What a crash can leave: a batch cut short, a half-written sidecar, a sidecar without batch.
        full = (batches / f"{ids[2]}.batch").read_bytes()
        (batches / "99999999999999999999.batch").write_bytes(full[:-2])
        (batches / f"{ids[0]}.state-tmp").write_bytes(b"{")
        (batches / "00000000000000000001.state").write_bytes(b"{}")
        async with await Spool.open(tmp_path) as spool:
            claimed = spool.claim(10)
            assert [b.id for b in claimed] == ids
            assert [await spool.read(b) for b in claimed] == [b"body 0", b"body 1", b"body 2"]
            new = await spool.append(META, b"later")
            assert new > ids[-1]
            for batch in claimed:
                await spool.complete(batch)
        assert batch_files(tmp_path) == [f"{new}.batch"]
        async with await Spool.open(tmp_path) as spool:
            [batch] = spool.claim(10)
            assert batch.id == new
            await spool.complete(batch)
        # Ids stay unique even when every batch was completed before the restart.
        async with await Spool.open(tmp_path) as spool:
            assert await spool.append(META, b"after empty") > new

    run(scenario)


def test_unreadable_sidecar_leaves_batch_queued(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            batch_id = await spool.append(META, b"x")
        (tmp_path / "batches" / f"{batch_id}.state").write_bytes(b"not json")
        async with await Spool.open(tmp_path) as spool:
            [batch] = spool.claim(1)
            assert batch.id == batch_id and batch.state is BatchState.QUEUE

    run(scenario)


def test_corrupt_body_is_detected(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            await spool.append(META, b"hello world")
            [batch] = spool.claim(1)
            path, offset = spool.path(batch)
            with path.open("r+b") as f:
                f.seek(offset)
                f.write(b"J")
            with pytest.raises(CorruptBatchError, match="damaged"):
                await spool.read(batch)

    run(scenario)


def test_close_waits_for_pending_appends(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = await Spool.open(tmp_path)
        appends = [asyncio.create_task(spool.append(META, b"z")) for _ in range(20)]
        await asyncio.sleep(0)  # let them queue
        await spool.close()
        ids = [await t for t in appends]
        async with await Spool.open(tmp_path) as again:
            assert sorted(b.id for b in again.claim(100)) == sorted(ids)

    run(scenario)


def test_misuse_is_reported(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="max_bytes"):
            await Spool.open(tmp_path, max_bytes=-1)
        spool = await Spool.open(tmp_path)
        await spool.append(META, b"x")
        [batch] = spool.claim(1)
        spool.release(batch)
        with pytest.raises(SpoolError, match="not claimed"):
            await spool.complete(batch)
        await spool.close()
        await spool.close()
        with pytest.raises(SpoolClosedError):
            await spool.append(META, b"x")

    run(scenario)


def test_write_failure_fails_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.runtime.spool as spool_module

    real_write_all = spool_module._write_all
    calls = 0

    def disk_full_on_second(fd: int, header: bytes, body: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        real_write_all(fd, header, body)

    async def scenario() -> None:
        async with await Spool.open(tmp_path) as spool:
            monkeypatch.setattr(spool_module, "_write_all", disk_full_on_second)
            results = await asyncio.gather(spool.append(META, b"a"), spool.append(META, b"b"), return_exceptions=True)
            assert all(isinstance(r, SpoolError) and "No space left" in str(r) for r in results), results
            assert batch_files(tmp_path) == []  # the group's first file is not left behind
            assert spool.stats().states[BatchState.QUEUE].count == 0
            monkeypatch.setattr(spool_module, "_write_all", real_write_all)
            await spool.append(META, b"c")
            assert spool.stats().states[BatchState.QUEUE].count == 1

    run(scenario)
