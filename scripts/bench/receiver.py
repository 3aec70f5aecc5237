#!/usr/bin/env python3
"""Benchmark: HTTP ingest into a real receiver (``floe agent receiver``), durable ack on.

Starts a control plane (``floe control-plane`` in a temporary dir), creates a tenant, a dataset
and an editor key with the SDK, starts a receiver on a local object store, then drives the
webhook with ``--concurrency`` aiohttp connections posting bodies of each size back to back for
``--seconds``. The bodies are zstd frames of incompressible data, so the size is what goes on the
wire. Uploads to the local store run at the same time, as in production.

For each size it prints MB/s of compressed body acknowledged, requests/s, p50/p99 ack latency,
the receiver's CPU (cores) and the backlog left in its spool at the end (upload keeping up).

Target (issue 5): >= 200 MB/s of 1 MiB zstd bodies on 2 cores; also 16 KiB req/s.

    python scripts/bench/receiver.py                          # 1 MiB and 16 KiB, 16 connections, 5 s each
    python scripts/bench/receiver.py --sizes 1048576 --concurrency 32 --seconds 10
    python scripts/bench/receiver.py --ack memory             # acknowledge on receipt instead

Prints a table and one line ``BENCH_JSON {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `agents` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp
import pyarrow as pa

from floe import Client
from floe.v1 import common_pb2, datasets_pb2, keys_pb2
from scripts.bench._common import Server, percentile, sample_cpu

TENANT, DATASET = "bench", "logs"


def start_receiver(base: Path, grpc: str, key: str, ack: str) -> tuple[subprocess.Popen[bytes], str, str]:
    """The receiver process, its webhook address and its API address."""
    key_file = base / "receiver.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    argv = [
        sys.executable, "-m", "floe.cli", "agent", "receiver",
        "--agent-name", "bench-receiver",
        "--data-dir", str(base / "agents"),
        "--api-listen", "127.0.0.1:0",
        "--webhook-listen", "127.0.0.1:0",
        "--object-store", str(base / "objects"),
        "--control-url", grpc,
        "--api-key-file", str(key_file),
        "--ack", ack,
        "--spool-max-bytes", str(8 << 30),
        "--log-format", "json",
        "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
    with (base / "receiver.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
    info_file = base / "agents" / "bench-receiver" / "agent.json"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited:\n{(base / 'receiver.log').read_text()[-3000:]}")
        try:
            info = json.loads(info_file.read_text())
            if info.get("pid") == proc.pid:
                return proc, str(info["webhook"]), str(info["api"])
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("receiver did not start within 30 s")
        time.sleep(0.05)


async def backlog(session: aiohttp.ClientSession, api: str) -> int:
    async with session.get(f"http://{api}/api/v1/dlq/stats") as resp:
        stats = await resp.json()
    return int(stats["queue"]["files"]) + int(stats["retry"]["files"])


async def run_size(
    webhook: str, api: str, key: str, size: int, *, concurrency: int, seconds: float, pid: int
) -> dict[str, Any]:
    body = bytes(pa.Codec("zstd").compress(os.urandom(size - 64), asbytes=True))
    headers = {"Authorization": f"Bearer {key}", "Content-Encoding": "zstd", "Content-Type": "application/x-ndjson"}
    url = f"http://{webhook}/{TENANT}/{DATASET}"
    latencies: list[float] = []
    errors: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm up (first requests verify the key with argon2 once).
        async with session.post(url, data=body, headers=headers) as resp:
            assert resp.status in (200, 202), await resp.text()
        stop_at = 0.0

        async def worker() -> None:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status in (200, 202):
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors[resp.status] = errors.get(resp.status, 0) + 1

        cpu0 = sample_cpu(pid).process
        t0 = time.monotonic()
        stop_at = t0 + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - t0
        cpu = (sample_cpu(pid).process - cpu0) / elapsed
        left = await backlog(session, api)
    latencies.sort()
    n = len(latencies)
    return {
        "size": len(body),
        "requests": n,
        "errors": errors,
        "mb_s": n * len(body) / elapsed / 1e6,
        "req_s": n / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3 if n else 0.0,
        "p99_ms": percentile(latencies, 0.99) * 1e3 if n else 0.0,
        "cpu_cores": cpu,
        "backlog_after": left,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1048576,16384", help="comma-separated body sizes in bytes")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent HTTP connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration per size")
    parser.add_argument("--ack", choices=("disk", "memory"), default="disk")
    parser.add_argument("--dir", default=None, help="where the temporary data lives (default: system temp)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="floe-bench-receiver-", dir=args.dir))
    server = Server(base / "cp", [])
    receiver: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        with Client(server.grpc, api_key=server.admin_key) as admin:
            admin.tenants.create(TENANT)
            source = datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_NATS, options={"subject": "bench"})
            admin.datasets.create(TENANT, DATASET, datasets_pb2.Dataset(source=source, active=True))
            _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
            _, writer_key = admin.keys.create(common_pb2.ROLE_EDITOR, tenant=TENANT)
        receiver, webhook, api = start_receiver(base, server.grpc, agent_key, args.ack)

        async def ready() -> None:
            async with aiohttp.ClientSession() as s:
                for _ in range(200):
                    async with s.post(
                        f"http://{webhook}/{TENANT}/{DATASET}",
                        data=b"{}\n",
                        headers={"Authorization": f"Bearer {writer_key}"},
                    ) as resp:
                        if resp.status in (200, 202):
                            return
                    await asyncio.sleep(0.1)
                raise RuntimeError("receiver never accepted a batch")

        asyncio.run(ready())
        results = []
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(
                asyncio.run(
                    run_size(
                        webhook,
                        api,
                        writer_key,
                        size,
                        concurrency=args.concurrency,
                        seconds=args.seconds,
                        pid=receiver.pid,
                    )
                )
            )
    finally:
        if receiver is not None and receiver.poll() is None:
            receiver.send_signal(signal.SIGTERM)
            try:
                receiver.wait(timeout=30)
            except subprocess.TimeoutExpired:
                receiver.kill()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(
        f"receiver ingest, ack={args.ack}, {args.concurrency} connections, "
        f"{args.seconds:g} s per size, {os.cpu_count()} CPUs"
    )
    print(f"{'body':>9} {'MB/s':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cores':>6} {'backlog':>8} errors")
    for r in results:
        print(
            f"{r['size']:>9} {r['mb_s']:>8.1f} {r['req_s']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
            f" {r['cpu_cores']:>6.2f} {r['backlog_after']:>8} {r['errors'] or ''}"
        )
    print("BENCH_JSON " + json.dumps({"ack": args.ack, "concurrency": args.concurrency, "results": results}))


if __name__ == "__main__":
    main()
