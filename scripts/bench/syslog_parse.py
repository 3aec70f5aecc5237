#!/usr/bin/env python3
"""Benchmark: syslog parsing (agents/sources/syslog.py) and TCP framing, in one process.

Generates realistic ~200-byte syslog lines (half RFC 3164, half RFC 5424, some with structured
data; varied hosts, apps, pids, messages), then measures:

- ``parse_syslog`` on binary arrays of ``--batch`` lines (what a UDP listener would hand over);
  also with building that array from a Python list of ``bytes`` (one per datagram) included;
- the same with ``--bad-utf8`` percent of the lines holding invalid UTF-8 (the per-line repair);
- ``SyslogFramer.feed`` on an octet-counted and a newline-framed stream in ``--chunk``-byte reads
  (MB/s and msg/s), and framer + parse together (the TCP path).

Targets (issue), on 2 cores: >= 50,000 UDP msg/s (stretch 100k), >= 100,000 TCP msg/s.

    python scripts/bench/syslog_parse.py                      # 1,000,000 lines, batches of 20,000
    python scripts/bench/syslog_parse.py --lines 200000 --batch 50000

Prints a table and one line ``BENCH_JSON {...}``. CPU is the process CPU time over the same
window (above 100 % means Arrow used more than one thread).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `agents` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pyarrow as pa

from agents.sources.syslog import SyslogFramer, format_counts, parse_syslog

WORDS = ["connection", "accepted", "closed", "from", "user", "session", "opened", "for", "root", "port"]
WORDS += ["timeout", "error", "retry", "request", "GET", "POST"]
APPS = ["sshd", "nginx", "kernel", "CRON", "systemd", "postfix/smtpd", "dhclient", "app-server"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def make_lines(n: int, size: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        pri = rng.randrange(192)
        host = f"host-{rng.randrange(500)}.example.net"
        app = rng.choice(APPS)
        pid = rng.randrange(1, 65536)
        if i % 2:
            ts = f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:"
            ts += f"{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}+00:00"
            sd = f'[meta@32473 seq="{i}" zone="z{rng.randrange(9)}"]' if i % 3 else "-"
            head = f"<{pri}>1 {ts} {host} {app} {pid} ID{rng.randrange(100)} {sd} "
        else:
            ts = f"{rng.choice(MONTHS)} {rng.randrange(1, 29):2d} {rng.randrange(24):02d}:"
            ts += f"{rng.randrange(60):02d}:{rng.randrange(60):02d}"
            head = f"<{pri}>{ts} {host} {app}[{pid}]: "
        body = head
        while len(body) < size:
            body += rng.choice(WORDS) + " "
        lines.append(body[:size].encode())
    return lines


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(items, wall seconds, CPU seconds) of one call of ``fn``."""
    c0, t0 = time.process_time(), time.perf_counter()
    items = fn()
    return items, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=200, help="bytes per line")
    ap.add_argument("--chunk", type=int, default=65_536, help="bytes per TCP read fed to the framer")
    ap.add_argument("--bad-utf8", type=float, default=1.0, help="percent of lines with invalid UTF-8 in that phase")
    args = ap.parse_args(argv)

    lines = make_lines(args.lines, args.size)
    batches = [lines[i : i + args.batch] for i in range(0, len(lines), args.batch)]
    arrays = [pa.array(b, pa.binary()) for b in batches]
    now = time.time_ns()
    parse_syslog(arrays[0], None, now)  # warm-up
    results: dict[str, dict[str, float]] = {}

    def record(name: str, items: int, wall: float, cpu: float, nbytes: int | None = None) -> None:
        row = {"msgs_per_s": items / wall, "wall_s": wall, "cpu_pct": 100 * cpu / wall}
        if nbytes is not None:
            row["mb_per_s"] = nbytes / wall / 1e6
        results[name] = row

    counts: dict[str, int] = {}

    def parse_arrays() -> int:
        for arr in arrays:
            table = parse_syslog(arr, None, now)
            for k, v in format_counts(table).items():
                counts[k] = counts.get(k, 0) + v
        return len(lines)

    record("parse", *timed(parse_arrays))

    def build_and_parse() -> int:
        return sum(parse_syslog(pa.array(b, pa.binary()), None, now).num_rows for b in batches)

    record("parse_with_array_build", *timed(build_and_parse))

    bad_every = max(1, round(100 / args.bad_utf8)) if args.bad_utf8 > 0 else 0
    bad_lines = [ln[:-2] + b"\xff\xfe" if bad_every and i % bad_every == 0 else ln for i, ln in enumerate(lines)]
    bad_arrays = [pa.array(bad_lines[i : i + args.batch], pa.binary()) for i in range(0, len(bad_lines), args.batch)]
    timing = timed(lambda: sum(parse_syslog(a, None, now).num_rows for a in bad_arrays))
    record(f"parse_{args.bad_utf8:g}pct_bad_utf8", *timing)

    streams = {
        "octet": b"".join(b"%d %s" % (len(ln), ln) for ln in lines),
        "newline": b"".join(ln + b"\n" for ln in lines),
    }
    for name, stream in streams.items():
        chunks = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]

        def frame(chunks: list[bytes] = chunks) -> int:
            framer = SyslogFramer()
            return sum(len(framer.feed(c)) for c in chunks) + len(framer.flush())

        items, wall, cpu = timed(frame)
        assert items == len(lines), f"{name} framing produced {items} messages for {len(lines)}"
        record(f"frame_{name}", items, wall, cpu, len(stream))

        def frame_and_parse(chunks: list[bytes] = chunks) -> int:
            framer, pending, rows = SyslogFramer(), list[bytes](), 0
            for c in chunks:
                pending += framer.feed(c)
                if len(pending) >= args.batch:
                    rows += int(parse_syslog(pa.array(pending, pa.binary()), None, now).num_rows)
                    pending = []
            pending += framer.flush()
            return rows + int(parse_syslog(pa.array(pending, pa.binary()), None, now).num_rows)

        record(f"tcp_{name}_frame_and_parse", *timed(frame_and_parse), len(stream))

    print(f"{args.lines:,} lines of {args.size} bytes, batches of {args.batch:,}; formats {counts}")
    print(f"{'phase':34} {'msg/s':>12} {'MB/s':>8} {'wall s':>8} {'CPU %':>6}")
    for name, row in results.items():
        mb = f"{row['mb_per_s']:8.1f}" if "mb_per_s" in row else f"{'':8}"
        print(f"{name:34} {row['msgs_per_s']:12,.0f} {mb} {row['wall_s']:8.2f} {row['cpu_pct']:6.0f}")
    summary = {
        "benchmark": "syslog_parse",
        "lines": args.lines,
        "line_bytes": args.size,
        "batch": args.batch,
        "chunk": args.chunk,
        "formats": counts,
        "results": {k: {m: round(v, 3) for m, v in row.items()} for k, row in results.items()},
    }
    print("BENCH_JSON " + json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
