#!/usr/bin/env python3
"""Benchmark: flow decoding throughput on one core (agents/sources/netflow.py and sflow.py).

Phases, each decoding the same pre-built packets in a loop for ``--duration`` seconds:

- ``ipfix``: IPFIX messages of 30 records of a typical template (5-tuple, TCP flags, octet and
  packet counts, interfaces, start/end milliseconds: 12 fields, 45 octets a record);
- ``netflow9``: the same flows as NetFlow v9 (sysUpTime start/end instead of milliseconds);
- ``sflow``: sFlow v5 datagrams of 8 flow samples, each with a 128-octet sampled Ethernet/IPv4/TCP
  header decoded to L2-L4 and an extended switch record, as switches commonly send.

    python scripts/bench/flow_decode.py                 # 3 s per phase
    python scripts/bench/flow_decode.py --duration 10 --phases ipfix

Prints a table and one line ``BENCH_JSON {...}``. Exits 1 if a packet does not decode into the
expected number of records or any drop is counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `agents` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.sources.netflow import FlowDecoder
from agents.sources.sflow import SFlowDecoder

RECORDS_PER_PACKET = 30
SAMPLES_PER_DATAGRAM = 8
FIELDS_MS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 8), (2, 8), (10, 4), (14, 4), (152, 8), (153, 8)]
FIELDS_V9 = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 8), (2, 8), (10, 4), (14, 4), (22, 4), (21, 4)]


def _set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def _template(fields: list[tuple[int, int]]) -> bytes:
    return struct.pack(">HH", 256, len(fields)) + b"".join(struct.pack(">HH", *f) for f in fields)


def _records(v9: bool) -> bytes:
    out = b""
    for i in range(RECORDS_PER_PACKET):
        src, dst = socket.inet_aton(f"10.0.{i}.1"), socket.inet_aton("198.51.100.7")
        head = struct.pack(">4s4sHHBBQQII", src, dst, 40000 + i, 443, 6, 0x1B, 1500 * i, i + 1, 3, 7)
        times = (
            struct.pack(">II", 1000 + i, 2000 + i)
            if v9
            else struct.pack(">QQ", 1_700_000_000_000 + i, 1_700_000_001_000)
        )
        out += head + times
    return out


def ipfix_packets() -> tuple[bytes, bytes]:
    def msg(*sets: bytes) -> bytes:
        body = b"".join(sets)
        return struct.pack(">HHIII", 10, 16 + len(body), 1_700_000_000, 1, 1) + body

    return msg(_set(2, _template(FIELDS_MS))), msg(_set(256, _records(False)))


def netflow9_packets() -> tuple[bytes, bytes]:
    def msg(*sets: bytes) -> bytes:
        return struct.pack(">HHIIII", 9, 1, 5000, 1_700_000_000, 1, 1) + b"".join(sets)

    return msg(_set(0, _template(FIELDS_V9))), msg(_set(256, _records(True)))


def sflow_datagram() -> bytes:
    tcp = struct.pack(">HHIIBBHHH", 51000, 443, 1, 2, 5 << 4, 0x18, 1000, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 1500, 1, 0, 64, 6, 0, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
    frame = bytes.fromhex("00163e00000200163e0000018100") + struct.pack(">HH", 10, 0x0800) + ip + tcp
    header = (frame + b"\x00" * 128)[:128]
    raw = struct.pack(">II", 1, 16 + len(header)) + struct.pack(">IIII", 1, 1518, 4, len(header)) + header
    switch = struct.pack(">II", 1001, 16) + struct.pack(">IIII", 10, 0, 10, 0)
    samples = b""
    for i in range(SAMPLES_PER_DATAGRAM):
        body = struct.pack(">IIIIIIII", i, 3, 1024, 1024 * i, 0, 3, 4, 2) + raw + switch
        samples += struct.pack(">II", 1, len(body)) + body
    head = struct.pack(">II4sIIII", 5, 1, b"\x0a\x00\x00\xfe", 0, 1, 123456, SAMPLES_PER_DATAGRAM)
    return head + samples


def run(
    decode: Callable[[bytes, str], list[dict[str, Any]]], packet: bytes, per_packet: int, duration: float
) -> dict[str, float]:
    if len(decode(packet, "192.0.2.1")) != per_packet:
        raise SystemExit(f"benchmark packet decoded into the wrong number of records (want {per_packet})")
    packets = 0
    start = time.perf_counter()
    deadline = start + duration
    cpu0 = time.process_time()
    while True:
        for _ in range(100):
            decode(packet, "192.0.2.1")
        packets += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed, cpu = now - start, time.process_time() - cpu0
    return {
        "packets_per_s": round(packets / elapsed),
        "records_per_s": round(packets * per_packet / elapsed),
        "us_per_record": round(elapsed / (packets * per_packet) * 1e6, 3),
        "cpu_s": round(cpu, 2),
        "wall_s": round(elapsed, 2),
        "packet_octets": len(packet),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--phases", default="ipfix,netflow9,sflow", help="comma-separated: ipfix,netflow9,sflow")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    failed = False
    for phase in args.phases.split(","):
        if phase in ("ipfix", "netflow9"):
            dec = FlowDecoder()
            tmpl, data = ipfix_packets() if phase == "ipfix" else netflow9_packets()
            dec.decode(tmpl, "192.0.2.1")
            results[phase] = run(dec.decode, data, RECORDS_PER_PACKET, args.duration)
        elif phase == "sflow":
            dec_s = SFlowDecoder()
            results[phase] = run(dec_s.decode, sflow_datagram(), SAMPLES_PER_DATAGRAM, args.duration)
            failed |= bool(dec_s.drops.counts)
            continue
        else:
            raise SystemExit(f"unknown phase {phase!r}: use ipfix, netflow9 or sflow")
        failed |= bool(dec.drops.counts)

    print(f"{'phase':<10} {'records/s':>12} {'packets/s':>10} {'us/record':>10} {'octets/pkt':>10}")
    for phase, r in results.items():
        unit = "samples" if phase == "sflow" else "records"
        print(
            f"{phase:<10} {r['records_per_s']:>12,} {r['packets_per_s']:>10,} {r['us_per_record']:>10} "
            f"{r['packet_octets']:>10}  ({unit})"
        )
    info = {"python": platform.python_version(), "machine": platform.machine(), "duration_s": args.duration}
    print("BENCH_JSON " + json.dumps({"benchmark": "flow_decode", **info, "results": results}))
    if failed:
        print("drops were counted while decoding the benchmark packets", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
