#!/usr/bin/env python3
"""Benchmark: NDJSON in, zstd Parquet out — the piper (parse, no transformations) and the packer
(unify, write Parquet) on local stores, in this process.

Generates ``--objects`` raw objects of ``--object-mb`` MB of syslog-like NDJSON records (about
230 bytes each, zstd-compressed as proxies send them), then times

- piper: decompress + parse NDJSON to Arrow + split by hour + write Arrow IPC (zstd),
- packer: read Arrow IPC + unify schemas + write one zstd Parquet file per 128 MB,

and prints MB/s of uncompressed NDJSON input for each stage and end to end, rows/s, CPU use
and the compression ratio (NDJSON bytes / Parquet bytes). One process uses about one core; run
``--workers 2`` to run two independent pipelines in parallel on the machine's two cores.

Target (issue 6): >= 100 MB/s of NDJSON input on 2 cores.

    python scripts/bench/packer.py                      # 8 objects x 16 MB, one worker
    python scripts/bench/packer.py --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `agents` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pyarrow as pa

from agents.packer.pack import Packer, PackSettings
from agents.piper.pipe import Piper
from agents.piper.process import Processors
from agents.runtime.health import HealthBoard
from agents.runtime.layout import list_all, raw_key
from agents.runtime.leases import LocalLeases
from agents.runtime.objectstore import LocalStore
from floe.v1 import datasets_pb2

BASE_NS = 1_795_424_400 * 10**9  # 2026-11-23T09:00:00Z
HOSTS = [f"web{i:02d}" for i in range(40)]
APPS = ["sshd", "nginx", "kernel", "cron", "postfix", "systemd"]


def make_ndjson(target_bytes: int, seed: int) -> tuple[bytes, int]:
    rng = random.Random(seed)
    lines = []
    size = 0
    n = 0
    while size < target_bytes:
        rec = {
            "timestamp": f"2026-11-23T09:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
            "hostname": rng.choice(HOSTS),
            "app_name": rng.choice(APPS),
            "severity": rng.randrange(8),
            "facility": rng.randrange(24),
            "source_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "message": f"session {rng.randrange(10**6)} for user u{rng.randrange(5000)} from 10.1.{n % 256}.1 port "
            f"{rng.randrange(1024, 65535)} ssh2 status={rng.choice(['ok', 'failed', 'closed'])}",
        }
        line = json.dumps(rec) + "\n"
        lines.append(line)
        size += len(line)
        n += 1
    return "".join(lines).encode(), n


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def pipeline(root: Path, objects: int, object_mb: float, seed: int) -> dict[str, Any]:
    intake, processed, parquet = (LocalStore(root / n) for n in ("intake", "processed", "parquet"))
    board = HealthBoard()
    procs = Processors("bench")
    procs.configure([datasets_pb2.Dataset(name="tenants/acme/datasets/logs", active=True)])
    piper = Piper(
        intake,
        processed,
        parquet,
        LocalLeases("piper"),
        process=procs.process,
        component=lambda n: board.component(n, "piper"),
        batch=4,
    )
    packer = Packer(
        processed,
        parquet,
        LocalLeases("packer"),
        settings=PackSettings(),
        component=lambda n: board.component(n, "packer"),
    )
    body, rows_per = make_ndjson(int(object_mb * 1e6), seed)
    compressed = pa.compress(body, "zstd", asbytes=True)
    for i in range(objects):
        await intake.put(raw_key("acme", "logs", BASE_NS + seed * 1000 + i, "ndjson", "zst"), compressed)
    ndjson_bytes = len(body) * objects
    rows = rows_per * objects

    c0, t0 = cpu_seconds(), time.perf_counter()
    await piper.run_once([("acme", "logs")])
    c1, t1 = cpu_seconds(), time.perf_counter()
    await packer.run_once([("acme", "logs", True)])
    c2, t2 = cpu_seconds(), time.perf_counter()
    parquet_bytes = sum(o.size for o in await list_all(parquet, "acme/logs/data/"))
    return {
        "ndjson_mb": ndjson_bytes / 1e6,
        "rows": rows,
        "piper_s": t1 - t0,
        "piper_cpu": c1 - c0,
        "packer_s": t2 - t1,
        "packer_cpu": c2 - c1,
        "parquet_mb": parquet_bytes / 1e6,
        "raw_zst_mb": len(compressed) * objects / 1e6,
    }


def worker(args: tuple[str, int, float, int]) -> dict[str, Any]:
    root, objects, object_mb, seed = args
    return asyncio.run(pipeline(Path(root), objects, object_mb, seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--object-mb", type=float, default=16.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="floe-bench-packer-", dir=args.dir))
    try:
        jobs = [(str(root / f"w{i}"), args.objects, args.object_mb, i) for i in range(args.workers)]
        started = time.perf_counter()
        if args.workers == 1:
            results = [worker(jobs[0])]
        else:
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                results = pool.map(worker, jobs)
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mb = sum(r["ndjson_mb"] for r in results)
    rows = sum(r["rows"] for r in results)
    piper_s = max(r["piper_s"] for r in results)
    packer_s = max(r["packer_s"] for r in results)
    both = max(r["piper_s"] + r["packer_s"] for r in results)
    pq_mb = sum(r["parquet_mb"] for r in results)
    print(f"workers {args.workers}, NDJSON {mb:.0f} MB, {rows:,} rows (setup+run wall {wall:.1f} s)")
    print(f"{'stage':<22}{'MB/s in':>10}{'rows/s':>14}{'CPU s':>8}")
    print(
        f"{'piper (parse+write)':<22}{mb / piper_s:>10.0f}{rows / piper_s:>14,.0f}"
        f"{sum(r['piper_cpu'] for r in results):>8.1f}"
    )
    print(
        f"{'packer (Parquet)':<22}{mb / packer_s:>10.0f}{rows / packer_s:>14,.0f}"
        f"{sum(r['packer_cpu'] for r in results):>8.1f}"
    )
    print(f"{'end to end':<22}{mb / both:>10.0f}{rows / both:>14,.0f}")
    raw = sum(r["raw_zst_mb"] for r in results)
    print(f"compression: NDJSON/Parquet {mb / pq_mb:.1f}x (Parquet {pq_mb:.1f} MB; zstd NDJSON {raw:.1f} MB)")
    summary = {"workers": args.workers, "mb_s_end_to_end": mb / both, "ratio": mb / pq_mb, "rows": rows}
    print("BENCH_JSON " + json.dumps(summary))
    os.sync()


if __name__ == "__main__":
    main()
