"""Acked means on disk: a writer killed with SIGKILL at random moments loses no batch whose
append returned, and duplicates none, across several restarts of the same spool."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from agents.runtime.spool import BatchState, Spool

# Appends batches numbered from argv[2] with 8 concurrent tasks; prints "<id> <n>" only after
# append returned. Body sizes vary up to 256 KiB so a kill often lands mid-write.
WRITER = """
import asyncio, sys
from agents.runtime.spool import BatchMeta, Spool

def body(n):
    return (b"%d;" % n) * (1 + (n * 7919) % 40000)

async def main():
    spool = await Spool.open(sys.argv[1])
    counter = iter(range(int(sys.argv[2]), 10**9))
    async def worker():
        while True:
            n = next(counter)
            batch_id = await spool.append(BatchMeta("acme", "fw", records=n), body(n))
            sys.stdout.write(f"{batch_id} {n}\\n")
            sys.stdout.flush()
    await asyncio.gather(*(worker() for _ in range(8)))

asyncio.run(main())
"""


def body(n: int) -> bytes:
    return (b"%d;" % n) * (1 + (n * 7919) % 40000)


def run_writer_until_killed(directory: Path, start: int, kill_after: int) -> dict[str, int]:
    """Start the writer, SIGKILL it once ``kill_after`` acks were printed; return every ack."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    deadline = time.monotonic() + 20
    try:
        while len(acked) < kill_after:
            line = proc.stdout.readline()
            if not line:
                _, err = proc.communicate(timeout=10)
                raise AssertionError(f"writer exited early with {proc.returncode}: {err!r}")
            batch_id, n = line.split()
            acked[batch_id.decode()] = int(n)
            assert time.monotonic() < deadline, f"only {len(acked)} acks within 20 s"
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    for line in rest.splitlines(keepends=True):
        if line.endswith(b"\n"):  # a line cut by the kill was never fully acknowledged
            batch_id, n = line.split()
            acked[batch_id.decode()] = int(n)
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_acked_batches_survive_kill_9_exactly_once(tmp_path: Path) -> None:
    rng = random.Random()
    directory = tmp_path / "spool"
    kept: dict[str, int] = {}  # acked in an earlier round and deliberately not completed
    start = 0
    for _ in range(8):
        acked = run_writer_until_killed(directory, start, kill_after=rng.randint(5, 400))
        assert not set(acked) & set(kept), "an id was handed out twice"
        start = max(acked.values()) + 10_000

        async def check(acked: dict[str, int] = acked) -> None:
            spool = await Spool.open(directory)
            try:
                batches = spool.claim(1_000_000)
                ids = [b.id for b in batches]
                assert len(ids) == len(set(ids))
                by_id = {b.id: b for b in batches}
                expected = {**kept, **acked}
                missing = set(expected) - set(by_id)
                assert not missing, f"{len(missing)} acknowledged batches lost"
                numbers = [b.meta.records for b in batches]
                assert len(numbers) == len(set(numbers)), "a batch was stored twice"
                for batch_id, n in expected.items():
                    batch = by_id[batch_id]
                    assert batch.meta.records == n and batch.state is BatchState.QUEUE
                    assert await spool.read(batch) == body(n)
                # Complete about half, keep the rest for the next rounds; also drop unacked extras.
                for batch in batches:
                    if batch.id not in expected or rng.random() < 0.5:
                        kept.pop(batch.id, None)
                        await spool.complete(batch)
                    else:
                        kept[batch.id] = batch.meta.records
            finally:
                await spool.close()
            # Partial files of the killed writer were removed on open; only the kept batches remain.
            assert sorted(p.name for p in (directory / "batches").iterdir()) == sorted(f"{i}.batch" for i in kept)

        asyncio.run(asyncio.wait_for(check(), 30))
