#!/usr/bin/env python3
"""Benchmark: syslog over TCP into a real ``floe agent proxy``, messages per second end to end.

Starts ``floe agent proxy`` (local-only, one SYSLOG_TCP dataset on a loopback port; receivers
unreachable, so batches go to the disk spool: the whole input path runs). ``--connections``
sender processes each write ``--messages / --connections`` 200-byte RFC 5424 messages, newline
framed (or octet-counted with ``--octet-counting``), as fast as TCP lets them, from pre-built
64 KiB chunks. TCP pushes back rather than drops, so the figure is throughput: from the first
byte sent until the proxy's ``source/<dataset>`` component has handed every message to the
batcher (events_out), read from /healthz.

    python scripts/bench/proxy_tcp.py                           # 2,000,000 messages, 4 connections
    python scripts/bench/proxy_tcp.py --messages 1000000 --connections 1 --repeat 3

Prints one line per run and ``BENCH_JSON {...}``. Target (issue): >= 100,000 msg/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `scripts` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import loadavg, sample_cpu, split
from scripts.bench._proxykit import ProxyProcess
from scripts.bench.proxy_udp import syslog_payloads


def _writer(port: int, count: int, octet: bool, go: Any, out: Any) -> None:
    frames = [(str(len(p)).encode() + b" " + p) if octet else p + b"\n" for p in syslog_payloads()]
    chunk = b"".join(frames[: 64 * 1024 // len(frames[0])])
    per_chunk = len(chunk) // len(frames[0])
    sock = socket.create_connection(("127.0.0.1", port))
    go.wait()
    start = time.perf_counter()
    sent = 0
    while sent + per_chunk <= count:
        sock.sendall(chunk)
        sent += per_chunk
    if sent < count:
        sock.sendall(b"".join(frames[: count - sent]))
        sent = count
    sock.close()
    out.put((sent, time.perf_counter() - start))


def run_once(messages: int, connections: int, octet: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-tcp-") as tmp:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proxy = ProxyProcess(Path(tmp), "SOURCE_TYPE_SYSLOG_TCP", port).start()
        try:
            ctx = mp.get_context("fork")
            go, out = ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=_writer, args=(port, n, octet, go, out)) for n in split(messages, connections)]
            for p in procs:
                p.start()
            time.sleep(0.5)  # connected, chunks built
            cpu0 = sample_cpu(proxy.pid).process
            start = time.perf_counter()
            go.set()
            sent = [out.get(timeout=600) for _ in procs]
            for p in procs:
                p.join()
            deadline = time.monotonic() + 300
            while True:
                src = proxy.source()
                assert src is not None
                if src["events_out"] >= messages or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            cpu = sample_cpu(proxy.pid).process - cpu0
        finally:
            proxy.stop()
    return {
        "messages": messages,
        "sent": sum(s[0] for s in sent),
        "records_out": src["events_out"],
        "drops": src["dropped"],
        "seconds": round(elapsed, 3),
        "msg_per_s": round(src["events_out"] / elapsed),
        "send_seconds": round(max(s[1] for s in sent), 3),
        "proxy_cpu_s": round(cpu, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=2_000_000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--octet-counting", action="store_true", help="RFC 6587 octet counting instead of newlines")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    framing = "octet-counting" if args.octet_counting else "newline"
    print(f"{args.messages:,} messages of 200 bytes, {args.connections} connection(s), {framing}, load {loadavg()}")
    runs = []
    for i in range(args.repeat):
        result = run_once(args.messages, args.connections, args.octet_counting)
        runs.append(result)
        print(
            f"  run {i + 1}: {result['msg_per_s']:>9,} msg/s  ({result['records_out']:,} records in "
            f"{result['seconds']}s, senders done after {result['send_seconds']}s, proxy CPU {result['proxy_cpu_s']}s)"
            f"  drops {result['drops'] or 'none'}",
            flush=True,
        )
    rates = [r["msg_per_s"] for r in runs]
    print(f"median {statistics.median(rates):,.0f} msg/s, range {min(rates):,}-{max(rates):,}")
    summary = {"framing": framing, "connections": args.connections, "median_msg_per_s": statistics.median(rates)}
    print("BENCH_JSON " + json.dumps({**summary, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
