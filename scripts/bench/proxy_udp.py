#!/usr/bin/env python3
"""Benchmark: the highest UDP rate a real ``floe agent proxy`` takes with zero loss, and rsyslog's.

Starts ``floe agent proxy`` (local-only, one dataset on a loopback port; its receivers are
unreachable, so batches go to the disk spool and the whole input path runs: receive, parse,
NDJSON, batch, zstd, spool). Sender processes, on the same machine, send pre-built datagrams
with ``send`` on a connected socket, paced per millisecond, for ``--seconds`` at each rate of
``--rates``. After each step the proxy's /healthz counters (``source/<dataset>``: events_in and
drops, incl. ``kernel_buffer_full`` read from /proc/net/udp) are compared with what was sent. A
step is lossless when every datagram was counted. Steps stop after two lossy rates in a row.

``--protocol syslog`` (default): 200-byte RFC 5424 messages. The same steps then run against
``rsyslogd`` (Debian: apt-get install rsyslog; imudp -> omfile, unprivileged foreground process
with its own config, pid file and work directory), counting the lines in its output file, and
Floe's highest lossless rate is printed as a ratio of rsyslog's.

``--protocol ipfix``: IPFIX messages of ``--records`` five-tuple flow records each (the template
is sent first and again every 500 messages); reports records/s decoded with zero loss.

    python scripts/bench/proxy_udp.py                                   # syslog, Floe and rsyslog
    python scripts/bench/proxy_udp.py --rates 50000,75000,100000 --seconds 5 --repeat 3
    python scripts/bench/proxy_udp.py --protocol ipfix --rates 2000,4000,6000,8000

Prints a table per run and one line ``BENCH_JSON {...}``. Linux only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `scripts` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import loadavg, sample_cpu
from scripts.bench._proxykit import ProxyProcess, settle

MESSAGE_BYTES = 200


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- payloads ----------------------------------------------------------------------------------


def syslog_payloads(size: int = MESSAGE_BYTES, variants: int = 4096) -> list[bytes]:
    out = []
    for i in range(variants):
        head = (
            f"<134>1 2024-05-01T12:00:{i % 60:02d}.{i % 1000:03d}Z host{i % 50:02d} app{i % 7} {1000 + i} ID{i % 9} - "
        )
        body = f"request {i} from 10.0.{i % 256}.{(i * 7) % 256} took {i % 997} ms status=200 path=/api/v1/items "
        line = (head + body).encode()
        out.append((line + b"x" * size)[:size])
    return out


_FIVE_TUPLE = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 8), (2, 8), (152, 8), (153, 8)]


def _ipfix(seq: int, *sets: bytes) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), 1_700_000_000, seq, 1) + body


def _set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def ipfix_template() -> bytes:
    fields = b"".join(struct.pack(">HH", e, n) for e, n in _FIVE_TUPLE)
    return _ipfix(0, _set(2, struct.pack(">HH", 256, len(_FIVE_TUPLE)) + fields))


def ipfix_payloads(records: int, variants: int = 256) -> list[bytes]:
    out = []
    for v in range(variants):
        body = b""
        for r in range(records):
            i = v * records + r
            body += struct.pack(
                ">4s4sHHBBQQQQ",
                socket.inet_aton(f"10.{i % 250}.{(i >> 8) % 250}.1"),
                socket.inet_aton("192.0.2.10"),
                1024 + i % 60000,
                443,
                6,
                0x18,
                1500 * (i % 10 + 1),
                i % 10 + 1,
                1_700_000_000_000 + i,
                1_700_000_001_000 + i,
            )
        out.append(_ipfix(v, _set(256, body)))
    return out


# -- sender ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    port: int
    rate: float
    count: int
    payloads: list[bytes]
    preamble: bytes = b""
    every: int = 0


def _send(job: Job, out: Any) -> None:
    port, rate, count, payloads, preamble, every = job.port, job.rate, job.count, job.payloads, job.preamble, job.every
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    send = sock.send
    mask = len(payloads) - 1
    extra = 0
    if preamble:
        send(preamble)
        extra += 1
    chunk = max(1, int(rate / 1000))
    start = time.perf_counter()
    sent = failed = 0
    while sent < count:
        n = min(chunk, count - sent)
        for j in range(sent, sent + n):
            if preamble and j and j % every == 0:
                send(preamble)
                extra += 1
            try:
                send(payloads[j & mask])
            except OSError:  # ENOBUFS and friends: the sender's own queue, not the receiver's loss
                failed += 1
        sent += n
        wait = start + sent / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    out.put((sent + extra - failed, time.perf_counter() - start))
    sock.close()


def send_at(
    port: int,
    rate: float,
    seconds: float,
    payloads: list[bytes],
    *,
    senders: int,
    preamble: bytes = b"",
    every: int = 0,
) -> tuple[int, float]:
    """Send for ``seconds`` at ``rate`` datagrams/s over ``senders`` processes: (sent, seconds)."""
    ctx = mp.get_context("fork")
    out: Any = ctx.Queue()
    per = int(rate * seconds) // senders
    procs = [
        ctx.Process(target=_send, args=(Job(port, rate / senders, per, payloads, preamble, every), out))
        for _ in range(senders)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds * 4 + 60) for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results), max(r[1] for r in results)


# -- targets -----------------------------------------------------------------------------------


class FloeTarget:
    name = "floe"

    def __init__(self, workdir: Path, port: int, source_type: str) -> None:
        self.proxy = ProxyProcess(workdir, source_type, port)

    def start(self) -> None:
        self.proxy.start()

    def count(self) -> tuple[int, int, dict[str, int]]:
        src = self.proxy.source()
        assert src is not None
        return src["events_in"], src["events_out"], src["dropped"]

    def cpu(self) -> float:
        return sample_cpu(self.proxy.pid).process

    def stop(self) -> None:
        self.proxy.stop()


RSYSLOG_CONF = """\
global(workDirectory="{work}")
module(load="imudp" threads="1")
input(type="imudp" address="127.0.0.1" port="{port}" rcvbufSize="8m")
template(name="rawline" type="string" string="%rawmsg%\\n")
*.* action(type="omfile" file="{out}" template="rawline" asyncWriting="on" ioBufferSize="1m" flushInterval="1")
"""


class RsyslogTarget:
    name = "rsyslog"

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.out = workdir / "rsyslog.out"
        work = workdir / "rsyslog-work"
        work.mkdir()
        self.conf = workdir / "rsyslog.conf"
        self.conf.write_text(RSYSLOG_CONF.format(work=work, port=port, out=self.out))
        self.pidfile = workdir / "rsyslog.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        log = (self.workdir / "rsyslog.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-n", "-f", str(self.conf), "-i", str(self.pidfile)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while not self.pidfile.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rsyslogd did not start: {(self.workdir / 'rsyslog.log').read_text()}")
            time.sleep(0.05)
        time.sleep(0.3)

    def count(self) -> tuple[int, int, dict[str, int]]:
        try:
            with self.out.open("rb") as fh:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        except OSError:
            lines = 0
        return lines, lines, {}

    def cpu(self) -> float:
        assert self.proc is not None
        return sample_cpu(self.proc.pid).process

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


# -- steps -------------------------------------------------------------------------------------


def run_steps(
    target: Any, port: int, args: argparse.Namespace, payloads: list[bytes], per_datagram: int
) -> list[dict[str, Any]]:
    preamble = ipfix_template() if args.protocol == "ipfix" else b""
    steps: list[dict[str, Any]] = []
    lossy_in_a_row = 0
    for rate in args.rates:
        before_in, before_out, before_drops = target.count()
        cpu0 = target.cpu()
        sent, took = send_at(port, rate, args.seconds, payloads, senders=args.senders, preamble=preamble, every=500)
        got_in, got_out, drops = settle(target.count)
        cpu = target.cpu() - cpu0
        received = got_in - before_in
        new_drops = {k: v - before_drops.get(k, 0) for k, v in drops.items() if v != before_drops.get(k, 0)}
        step = {
            "rate": rate,
            "sent": sent,
            "sent_per_s": round(sent / took),
            "received": received,
            "lost": sent - received,
            "records_out": (got_out - before_out) if target.name == "floe" else received,
            "drops": new_drops,
            "cpu_s": round(cpu, 2),
            "lossless": received == sent and not new_drops.get("kernel_buffer_full"),
        }
        if args.protocol == "ipfix":
            step["records_per_s"] = round(step["records_out"] / took)
        steps.append(step)
        print(
            f"  {target.name:8} rate {rate:>8,.0f}/s  sent {sent:>9,} ({step['sent_per_s']:,}/s)  "
            f"received {received:>9,}  lost {step['lost']:>7,}  out {step['records_out']:>9,}  "
            f"cpu {cpu:5.1f}s  {'LOSSLESS' if step['lossless'] else 'lossy'} {new_drops or ''}",
            flush=True,
        )
        lossy_in_a_row = 0 if step["lossless"] else lossy_in_a_row + 1
        if lossy_in_a_row >= 2:
            break
        time.sleep(0.5)
    return steps


def best(steps: list[dict[str, Any]]) -> float:
    return max((s["rate"] for s in steps if s["lossless"]), default=0.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=("syslog", "ipfix"), default="syslog")
    p.add_argument("--rates", default="", help="comma-separated datagram rates (default by protocol)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of sending per rate")
    p.add_argument("--senders", type=int, default=1, help="sender processes")
    p.add_argument("--repeat", type=int, default=1, help="runs (a fresh proxy each); median reported")
    p.add_argument("--records", type=int, default=30, help="ipfix: flow records per message")
    p.add_argument("--no-rsyslog", action="store_true", help="skip the rsyslog comparison")
    args = p.parse_args()
    default = "2000,4000,6000,8000,10000" if args.protocol == "ipfix" else "25000,50000,75000,100000,125000,150000"
    args.rates = [float(r) for r in (args.rates or default).split(",")]
    if args.protocol == "ipfix":
        payloads, source_type, per = ipfix_payloads(args.records), "SOURCE_TYPE_IPFIX", args.records
    else:
        payloads, source_type, per = syslog_payloads(), "SOURCE_TYPE_SYSLOG_UDP", 1
    with_rsyslog = args.protocol == "syslog" and not args.no_rsyslog
    if with_rsyslog and not shutil.which("rsyslogd") and not Path("/usr/sbin/rsyslogd").exists():
        print("rsyslogd is not installed (apt-get install rsyslog); use --no-rsyslog", file=sys.stderr)
        return 1

    runs: dict[str, list[float]] = {"floe": [], "rsyslog": []}
    details: dict[str, list[Any]] = {"floe": [], "rsyslog": []}
    print(f"protocol {args.protocol}, {args.seconds}s per rate, {args.senders} sender(s), load {loadavg()}")
    for run in range(args.repeat):
        targets = ["floe", "rsyslog"] if with_rsyslog else ["floe"]
        for name in targets:
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
                port = free_udp_port()
                target: Any = (
                    FloeTarget(Path(tmp), port, source_type) if name == "floe" else RsyslogTarget(Path(tmp), port)
                )
                print(f"run {run + 1}/{args.repeat}: {name}", flush=True)
                target.start()
                try:
                    steps = run_steps(target, port, args, payloads, per)
                finally:
                    target.stop()
                runs[name].append(best(steps))
                details[name].append(steps)

    summary: dict[str, Any] = {"protocol": args.protocol, "seconds": args.seconds, "senders": args.senders}
    for name, values in runs.items():
        if values:
            summary[name] = {
                "lossless_rate_median": statistics.median(values),
                "lossless_rate_runs": values,
            }
            print(
                f"{name}: highest lossless rate, median of {len(values)}: {statistics.median(values):,.0f}/s {values}"
            )
    if args.protocol == "ipfix":
        rec = [max((s.get("records_per_s", 0) for s in steps if s["lossless"]), default=0) for steps in details["floe"]]
        summary["floe"]["records_per_s_lossless"] = rec
        print(f"floe: IPFIX records/s decoded with zero loss: {rec} ({args.records} records per message)")
    if runs["rsyslog"] and statistics.median(runs["rsyslog"]):
        ratio = statistics.median(runs["floe"]) / statistics.median(runs["rsyslog"])
        summary["ratio_to_rsyslog"] = round(ratio, 2)
        print(f"Floe / rsyslog lossless rate: {ratio:.2f}")
    summary["steps"] = details
    print("BENCH_JSON " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
