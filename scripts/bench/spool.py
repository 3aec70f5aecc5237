#!/usr/bin/env python3
"""Benchmark: durable appends to the disk spool (agents/runtime/spool.py).

``--concurrency`` tasks each append bodies of one size back to back for ``--seconds``; every
append returns only once its batch is synced, so this is the receiver's ack path. For each size
it prints MB/s, appends/s, syncs/s, batches per sync and p50/p99 append latency.

Targets (issue): >= 200 MB/s of 1 MiB bodies; high appends/s of 16 KiB bodies.

    python scripts/bench/spool.py                                 # 1 MiB and 16 KiB, 16 appenders, 3 s each
    python scripts/bench/spool.py --sizes 16384 --concurrency 64 --seconds 5
    python scripts/bench/spool.py --no-syncfs                     # fsync every file instead

The spool directory is created under ``--dir`` (default: the system temp dir) and removed
afterwards. Prints a table and one line ``BENCH_JSON {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `agents` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.runtime.spool import BatchMeta, Spool
from scripts.bench._common import percentile


async def run_size(directory: Path, size: int, concurrency: int, seconds: float, syncfs: bool) -> dict[str, float]:
    spool = await Spool.open(directory, max_bytes=0, dlq_max_bytes=0, use_syncfs=syncfs)
    body = os.urandom(size)
    meta = BatchMeta("acme", "bench", data_hint="json", content_encoding="zstd", records=100)
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def appender() -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            await spool.append(meta, body)
            latencies.append(time.perf_counter() - t0)

    syncs0 = spool.stats().syncs
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    syncs = spool.stats().syncs - syncs0
    await spool.close()
    latencies.sort()
    n = len(latencies)
    return {
        "size": size,
        "appends": n,
        "seconds": elapsed,
        "mb_per_s": n * size / elapsed / 1e6,
        "appends_per_s": n / elapsed,
        "syncs_per_s": syncs / elapsed,
        "batches_per_sync": n / max(1, syncs),
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "cpu_pct": cpu / elapsed * 100,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1048576,16384", help="comma-separated body sizes in bytes")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent appenders")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration per size")
    parser.add_argument("--dir", default=None, help="parent of the temporary spool directory")
    parser.add_argument("--no-syncfs", action="store_true", help="fsync each file (and the directory) instead")
    args = parser.parse_args()

    results: list[dict[str, float]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        parent = Path(tempfile.mkdtemp(prefix="floe-spool-bench-", dir=args.dir))
        try:
            run = run_size(parent / "spool", size, args.concurrency, args.seconds, not args.no_syncfs)
            results.append(asyncio.run(run))
        finally:
            shutil.rmtree(parent, ignore_errors=True)

    header = f"{'body':>9} {'MB/s':>8} {'appends/s':>10} {'syncs/s':>8} {'per sync':>9}"
    header += f" {'p50 ms':>8} {'p99 ms':>8} {'CPU %':>6}"
    print(f"concurrency={args.concurrency} seconds={args.seconds} sync={'fsync' if args.no_syncfs else 'syncfs'}")
    print(header)
    for r in results:
        print(
            f"{int(r['size']):>9} {r['mb_per_s']:>8.1f} {r['appends_per_s']:>10.0f} {r['syncs_per_s']:>8.1f} "
            f"{r['batches_per_sync']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['cpu_pct']:>6.0f}"
        )
    summary: dict[str, Any] = {
        "bench": "spool",
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "sync": "fsync" if args.no_syncfs else "syncfs",
        "results": [{k: round(v, 3) for k, v in r.items()} for r in results],
    }
    print("BENCH_JSON " + json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
