#!/usr/bin/env python3
"""Benchmark: the whole path, syslog over TCP into queryable Parquet, sustained, nothing lost.

Runs ``floe up`` in a temporary directory (control plane, proxy, receiver, piper, packer, query
and connector, each its own process, with their embedded defaults) on this machine, creates a
tenant and a SYSLOG_TCP dataset on the proxy, and then, for each ``--rates`` value, a sender
process writes RFC 5424 lines over one TCP connection at that rate for ``--seconds`` (paced
every 20 ms; every line carries a unique sequence number and the current time). Meanwhile
the benchmark asks the query service (SDK) every second how many of them are queryable.

Reported per rate:
- the rate the sender kept up (TCP pushes back: a stack that cannot keep up slows the sender);
- **nothing lost**: at the end ``count(*)`` and ``count(DISTINCT seq)`` over the dataset equal the
  number sent, read with SQL through the query service;
- the delay from send to queryable: each poll that finds C rows gives ``now - (time line C was
  sent)``; the median and maximum of those in the run, and the drain: from the last line sent
  until all are queryable;
- CPU of the whole machine over the run (all of Floe plus the sender on the same cores).

    python scripts/bench/pipeline.py                      # 50,000 lines/s for 60 s
    python scripts/bench/pipeline.py --rates 50000,75000,100000 --seconds 30

Target (issue 7): >= 50,000 events/s sustained on 2 cores with nothing lost over TCP.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from bisect import bisect_left
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from scripts.bench._common import machine_cpu  # noqa: E402
from tests.upkit import Up, endpoint  # noqa: E402

TENANT, DATASET = "bench", "syslog"
TICK = 0.02


def _sender(port: int, rate: int, seconds: float, first: int, out: Any) -> None:
    """Send ``rate * seconds`` lines paced every ``TICK``; put [(lines sent so far, when)]."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    total = int(rate * seconds)
    per_tick = max(1, int(rate * TICK))
    pad = "x" * 60
    log: list[tuple[int, float]] = []
    start = time.monotonic()
    sent = 0
    while sent < total:
        n = min(per_tick, total - sent)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        head = f"<134>1 {now} host{os.getpid() % 50:02d} bench 4242 ID7 - "
        seq = first + sent
        chunk = "".join(f"{head}request seq={seq + i} status=200 path=/api/v1/items {pad}\n" for i in range(n))
        sock.sendall(chunk.encode())
        sent += n
        log.append((sent, time.monotonic()))
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    sock.close()
    out.put(log)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _count(client: Any) -> tuple[int, int]:
    result = client.query.execute(
        "SELECT count(*) AS n, count(DISTINCT regexp_extract(message, 'seq=([0-9]+)', 1)) AS seqs FROM syslog",
        dataset=f"{TENANT}/{DATASET}",
    )
    row = result.table.to_pylist()[0]
    return int(row["n"]), int(row["seqs"])


def run_rate(client: Any, port: int, rate: int, *, seconds: float, before: int, drain_timeout: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    cpu0 = machine_cpu()
    sender = ctx.Process(target=_sender, args=(port, rate, seconds, before, out))
    started = time.monotonic()
    sender.start()
    polls: list[tuple[float, int]] = []
    log: list[tuple[int, float]] | None = None
    total = int(rate * seconds)
    deadline = None
    while True:
        time.sleep(1.0)
        try:
            n, _ = _count(client)
            polls.append((time.monotonic(), n - before))
        except Exception as exc:  # no Parquet yet, or a passing error: poll again
            print(f"  (poll: {exc})", file=sys.stderr)
        if log is None and not sender.is_alive():
            log = out.get(timeout=10)
            deadline = time.monotonic() + drain_timeout
        if polls and polls[-1][1] >= total:
            break
        if deadline is not None and time.monotonic() > deadline:
            break
    if log is None:
        log = out.get(timeout=10)
    sender.join(10)
    cpu1 = machine_cpu()
    last_sent = log[-1][1]
    send_seconds = last_sent - started
    counts = [c for c, _ in log]
    delays = []
    for when, found in polls:
        if found <= 0:
            continue
        i = bisect_left(counts, min(found, counts[-1]))
        delays.append(when - log[i][1])
    n, seqs = _count(client)
    busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
    complete = next((when for when, found in polls if found >= total), None)
    return {
        "rate": rate,
        "sent": total,
        "send_rate": round(total / send_seconds),
        "queryable": n - before,
        "distinct": seqs - before,
        "lost": total - (n - before),
        "delay_p50_s": round(statistics.median(delays), 1) if delays else None,
        "delay_max_s": round(max(delays), 1) if delays else None,
        "drain_s": round(complete - last_sent, 1) if complete is not None else None,
        "cpu_busy": round(busy * 100),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="50000", help="comma-separated lines/s, run in turn")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--drain-timeout", type=float, default=180.0)
    ap.add_argument(
        "--parquet-max-age",
        default="",
        help="the packer's parquet_max_age for this run (default: floe up's, 60s); shorter: fresher, smaller files",
    )
    args = ap.parse_args()
    from floe import Client
    from floe.v1 import datasets_pb2

    with tempfile.TemporaryDirectory(prefix="floe-bench-pipeline-") as tmp:
        work = Path(tmp)
        up = Up(work, **({"FLOE_PARQUET_MAX_AGE": args.parquet_max_age} if args.parquet_max_age else {}))
        try:
            grpc_address = endpoint(up.read_until("Press Ctrl-C", timeout=120), "control plane gRPC")
            admin_key = (work / "floe-data" / "admin.key").read_text().strip()
            port = _free_port()
            with Client(grpc_address, api_key=admin_key, timeout=60) as client:
                client.tenants.create(TENANT)
                source = datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_TCP, bind_host="127.0.0.1", port=port)
                client.datasets.create(
                    TENANT, DATASET,
                    datasets_pb2.Dataset(source=source, proxy=datasets_pb2.ProxyAssignment(agent="local"), active=True),
                )  # fmt: skip
                deadline = time.monotonic() + 60
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise RuntimeError("the proxy did not open the dataset's port") from None
                        time.sleep(0.2)
                # One line first, so the dataset has Parquet and the first poll does not fail.
                with socket.create_connection(("127.0.0.1", port)) as s:
                    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    s.sendall(f"<134>1 {stamp} host00 bench 1 ID7 - warm-up seq=-1\n".encode())
                warm = time.monotonic()
                while True:
                    try:
                        if _count(client)[0] >= 1:
                            break
                    except Exception:  # noqa: S110 - not queryable yet
                        pass
                    if time.monotonic() > warm + 180:
                        raise RuntimeError("the warm-up line never became queryable")
                    time.sleep(0.5)
                print(f"first line queryable after {time.monotonic() - warm:.1f} s (cold start)")
                print(f"{'rate':>8} {'sent':>10} {'kept up':>9} {'queryable':>10} {'lost':>6} "
                      f"{'delay p50':>10} {'delay max':>10} {'drain':>7} {'cpu':>5}")  # fmt: skip
                results = []
                before = _count(client)[0]
                for rate in (int(r) for r in args.rates.split(",")):
                    r = run_rate(
                        client, port, rate, seconds=args.seconds, before=before, drain_timeout=args.drain_timeout
                    )
                    results.append(r)
                    before += r["queryable"]
                    print(
                        f"{r['rate']:>8,} {r['sent']:>10,} {r['send_rate']:>9,} {r['queryable']:>10,} {r['lost']:>6,} "
                        f"{r['delay_p50_s']!s:>9}s {r['delay_max_s']!s:>9}s {r['drain_s']!s:>6}s {r['cpu_busy']:>4}%",
                        flush=True,
                    )
                print("BENCH_JSON " + json.dumps(results))
                return 0 if all(r["lost"] == 0 and r["distinct"] == r["sent"] for r in results) else 1
        finally:
            try:
                up.stop(signal.SIGTERM, timeout=60)
            finally:
                up.kill()


if __name__ == "__main__":
    raise SystemExit(main())
