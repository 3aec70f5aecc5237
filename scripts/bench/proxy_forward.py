#!/usr/bin/env python3
"""Benchmark: the proxy's forwarding path, Sink to receiver (agents/proxy/batcher.py, forwarder.py).

One process runs what a proxy runs after its inputs: the ``Batcher`` (per-dataset batches,
compression), the disk ``Spool`` (durable appends) and the ``Forwarder`` (POSTs), on uvloop. A
feeder submits NDJSON buffers of ``--records-per-submit`` syslog-like records (~200 bytes each,
as an input hands over a decoded read) as fast as the sink accepts them. A null receiver in a
child process answers 200 to every POST without looking at the body, so the figures are the
proxy's; ``--receiver URL`` points at a real one instead.

For each codec it prints records/s and raw MB/s delivered end to end (every record counted only
once the receiver answered 2xx), compressed MB/s on the wire, the compression ratio, batches/s,
and the CPU used by the proxy process and the receiver.

    python scripts/bench/proxy_forward.py                          # zstd and gzip, 5 s each
    python scripts/bench/proxy_forward.py --codecs zstd --seconds 10 --batch-max-bytes 1048576

Prints a table and one line ``BENCH_JSON {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `agents` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvloop

from agents.proxy.batcher import Batcher
from agents.proxy.forwarder import Forwarder
from agents.runtime.health import HealthBoard
from agents.runtime.spool import Spool
from floe.v1 import datasets_pb2
from scripts.bench._common import CLK_TCK

NULL_RECEIVER = """
import sys
from aiohttp import web

async def ingest(request):
    await request.read()
    return web.json_response({"batch_id": request.headers.get("X-Floe-Batch-Id", "")})

app = web.Application(client_max_size=256 << 20)
app.router.add_post("/{tenant}/{dataset}", ingest)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            auto_decompress=False)
"""

DATASETS = [datasets_pb2.Dataset(name=f"tenants/bench/datasets/ds{i}") for i in range(4)]


def make_buffers(records: int, count: int = 64) -> list[bytes]:
    """``count`` NDJSON buffers of ``records`` syslog-like records (~200 bytes each)."""
    rng = random.Random(7)
    apps = ["sshd", "kernel", "nginx", "cron", "systemd", "postfix"]
    out = []
    for _ in range(count):
        lines = []
        for _ in range(records):
            ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            msg = f"Accepted publickey for user{rng.randrange(500)} from {ip} port {rng.randrange(65536)} ssh2"
            clock = f"12:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}"
            rec = {
                "timestamp": f"2024-05-01T{clock}Z",
                "facility": rng.randrange(24),
                "severity": rng.randrange(8),
                "hostname": f"host-{rng.randrange(200)}",
                "app_name": rng.choice(apps),
                "proc_id": str(rng.randrange(1, 65536)),
                "message": msg,
                "source_ip": ip,
            }
            lines.append(json.dumps(rec, separators=(",", ":")))
        out.append(("\n".join(lines) + "\n").encode())
    return out


def cpu_seconds(pid: int | str) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def run_codec(args: argparse.Namespace, codec: str, receiver: str, receiver_pid: int | None) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="floe-bench-forward-", dir=args.dir))
    try:
        spool = await Spool.open(directory, max_bytes=args.spool_max_bytes, dlq_max_bytes=0)
        health = HealthBoard()
        forwarder = Forwarder(spool, health, [receiver], "floe_s_bench_" + "x" * 43, workers=args.workers)
        await forwarder.start()
        comp = health.component("batcher", "proxy.batcher")
        batcher = Batcher(
            spool,
            comp,
            max_bytes=args.batch_max_bytes,
            max_records=args.batch_max_records,
            max_age=1.0,
            compression=codec,
            on_spooled=forwarder.wake,
        )
        buffers = make_buffers(args.records_per_submit)
        fwd = next(c for c in health.components() if c.name == "forwarder")
        refused = 0
        stop_at = time.monotonic() + args.seconds
        cpu0, rcpu0, t0 = cpu_seconds("self"), cpu_seconds(receiver_pid) if receiver_pid else 0.0, time.monotonic()
        i = 0
        while time.monotonic() < stop_at:
            buf = buffers[i % len(buffers)]
            if batcher.submit(DATASETS[i % len(DATASETS)], buf, args.records_per_submit):
                i += 1
            else:
                refused += 1
                await asyncio.sleep(0.001)
            if i % 8 == 0:
                await asyncio.sleep(0)  # let the flusher and forwarder run, like a real input's loop
        await batcher.flush_all()
        submitted = comp.events_in
        while fwd.events_out < submitted:  # noqa: ASYNC110 - polling a counter the forwarder bumps
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds("self") - cpu0
        rcpu = (cpu_seconds(receiver_pid) - rcpu0) if receiver_pid else 0.0
        await batcher.close()
        await forwarder.stop()
        stats = spool.stats()
        await spool.close()
        return {
            "codec": codec,
            "records_per_s": submitted / elapsed,
            "raw_mb_per_s": comp.bytes_in / elapsed / 1e6,
            "wire_mb_per_s": fwd.bytes_out / elapsed / 1e6,
            "ratio": comp.bytes_in / max(1, fwd.bytes_out),
            "batches_per_s": stats.appended / elapsed,
            "proxy_cpu": cpu / elapsed,
            "receiver_cpu": rcpu / elapsed,
            "refused_submits": refused,
            "syncs": stats.syncs,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codecs", default="zstd,gzip")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--records-per-submit", type=int, default=1000)
    parser.add_argument("--batch-max-bytes", type=int, default=4 << 20)
    parser.add_argument("--batch-max-records", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--spool-max-bytes", type=int, default=1 << 30)
    parser.add_argument("--receiver", default="", help="a receiver base URL (default: a null receiver)")
    parser.add_argument("--dir", default=None, help="where the spool lives (default: the temp dir)")
    args = parser.parse_args()

    proc = None
    receiver = args.receiver
    if not receiver:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-c", NULL_RECEIVER, str(port)])
        receiver = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the null receiver did not start") from None
                time.sleep(0.05)
    try:
        results = [
            uvloop.run(run_codec(args, codec, receiver, proc.pid if proc else None)) for codec in args.codecs.split(",")
        ]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)

    print(f"cores: {os.cpu_count()}  records/submit: {args.records_per_submit}  batch max: {args.batch_max_bytes} B")
    header = f"{'codec':6} {'records/s':>11} {'raw MB/s':>9} {'wire MB/s':>10} {'ratio':>6} {'batches/s':>10}"
    print(header + f" {'proxy CPU':>10} {'recv CPU':>9}")
    for r in results:
        print(
            f"{r['codec']:6} {r['records_per_s']:11,.0f} {r['raw_mb_per_s']:9.1f} {r['wire_mb_per_s']:10.1f} "
            f"{r['ratio']:6.1f} {r['batches_per_s']:10.1f} {r['proxy_cpu']:10.2f} {r['receiver_cpu']:9.2f}"
        )
    print("BENCH_JSON " + json.dumps({"proxy_forward": results}))


if __name__ == "__main__":
    main()
