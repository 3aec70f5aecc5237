#!/usr/bin/env python3
"""Benchmark: authenticated unary RPCs on the control plane (GetTenant, ListTenants, CreateTenant).

Starts its own ``floe control-plane`` in a temporary data dir (a separate process, loopback
only), creates fixture tenants, then runs one phase per RPC (GetTenant, ListTenants with
page_size 50, CreateTenant with a fresh id per call), each driven by separate load-generator
processes with a fixed total number of concurrent in-flight calls (default 16: 2 processes x 8
grpc.aio calls on uvloop, one channel = one TCP connection per client, raw stubs with the admin
API key). Each phase has a warm-up and then a measured window; only calls that complete inside
the window count.

Per phase it reports the server's CPU time over the window (/proc/PID/stat: the whole process,
its main thread = the event loop, and with ``--threads`` every thread), the load generators'
CPU time and how busy the whole machine was (/proc/stat), so a reader can tell whether the
server, the clients or something else on the machine was the limit. Linux only.

Target (issue): GetTenant >= 5,000 calls/s with 16 concurrent clients on 2 cores, p99 < 20 ms.

    python scripts/bench/control_plane_unary.py                    # 16 clients, 2 s warm-up + 10 s
    python scripts/bench/control_plane_unary.py --duration 5 --phases get --threads
    python scripts/bench/control_plane_unary.py --client-mode sync --processes 4
    python scripts/bench/control_plane_unary.py --phases get --duration 30   # and meanwhile:
    py-spy record --pid <printed server pid> --duration 10 --gil --nonblocking -o /tmp/prof.svg

Prints a table and one line ``BENCH_JSON {...}``. Exits 1 if the benchmark itself fails
(server does not start, a worker dies or hangs, any RPC returns an error during warm-up or
measurement); with ``--enforce-targets`` also when the GetTenant target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `scripts.bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import (
    Server,
    channel_options,
    error_code,
    loadavg,
    machine_cpu,
    percentile,
    sample_cpu,
    split,
)

TARGET_GET_CALLS_PER_S = 5000.0
TARGET_GET_P99_MS = 20.0
PHASES = ("get", "list", "create")
RPC_NAMES = {"get": "GetTenant", "list": "ListTenants", "create": "CreateTenant"}
CALL_TIMEOUT_S = 10.0


# -- configuration shared with the workers (must pickle) ---------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    phase: str
    target: str
    api_key: str
    mode: str  # "aio" or "sync"
    concurrency: int  # in-flight calls in this process
    channels: int  # distinct gRPC channels (TCP connections) in this process
    tenant_names: tuple[str, ...]
    run_id: str
    list_page_size: int
    use_uvloop: bool


@dataclass
class WorkerResult:
    index: int
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    latencies: bytes = b""  # array("d") of seconds, calls completed in the window
    cpu_seconds: float = 0.0  # this process's CPU during the window


# -- load generator (runs in worker processes) -------------------------------------------------


class _Request:
    """Builds the request for the phase; create ids are unique per (run, worker, client, n)."""

    def __init__(self, cfg: WorkerConfig) -> None:
        from floe.v1 import tenants_pb2

        self._pb = tenants_pb2
        self._cfg = cfg
        self._list = tenants_pb2.ListTenantsRequest(page_size=cfg.list_page_size)

    def method(self, stub: Any) -> Any:
        return {"get": stub.GetTenant, "list": stub.ListTenants, "create": stub.CreateTenant}[self._cfg.phase]

    def make(self, client: int, n: int) -> Any:
        cfg = self._cfg
        if cfg.phase == "get":
            names = cfg.tenant_names
            return self._pb.GetTenantRequest(name=names[(client * 7919 + n) % len(names)])
        if cfg.phase == "list":
            return self._list
        tenant = self._pb.Tenant(display_name=f"Bench {n}", labels={"bench": cfg.run_id})
        return self._pb.CreateTenantRequest(tenant_id=f"b{cfg.run_id}-{cfg.index}-{client}-{n}", tenant=tenant)


class _Tally:
    def __init__(self, window: tuple[float, float]) -> None:
        self.start, self.end = window
        self.latencies = array("d")
        self.errors: dict[str, int] = {}
        self.first_error = ""
        self.lock = threading.Lock()

    def done(self, t0: float, t1: float) -> None:
        if t0 >= self.start and t1 <= self.end:
            self.latencies.append(t1 - t0)

    def error(self, code: str, detail: str) -> None:
        with self.lock:
            self.errors[code] = self.errors.get(code, 0) + 1
            if not self.first_error:
                self.first_error = f"{code}: {detail}"


async def _aio_main(cfg: WorkerConfig, conn: Connection) -> WorkerResult:
    import grpc

    from floe.v1 import tenants_pb2_grpc

    channels = [
        grpc.aio.insecure_channel(cfg.target, options=channel_options(cfg.channels > 1)) for _ in range(cfg.channels)
    ]
    stubs = [tenants_pb2_grpc.TenantServiceStub(ch) for ch in channels]
    req = _Request(cfg)
    metadata = (("authorization", "Bearer " + cfg.api_key),)
    try:
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), 30)
        conn.send("ready")
        window: tuple[float, float, float] = conn.recv()  # (load_start, measure_start, measure_end)
        load_start, measure_start, measure_end = window
        tally = _Tally((measure_start, measure_end))
        await asyncio.sleep(max(0.0, load_start - time.monotonic()))
        cpu_mark: list[float] = []

        async def mark_cpu() -> None:
            await asyncio.sleep(max(0.0, measure_start - time.monotonic()))
            cpu_mark.append(time.process_time())

        async def client(i: int) -> None:
            call = req.method(stubs[i % len(stubs)])
            n = 0
            while True:
                t0 = time.monotonic()
                if t0 >= measure_end:
                    return
                try:
                    await call(req.make(i, n), metadata=metadata, timeout=CALL_TIMEOUT_S)
                except Exception as exc:  # count every failure; the run is reported invalid
                    tally.error(*error_code(exc))
                else:
                    tally.done(t0, time.monotonic())
                n += 1

        marker = asyncio.ensure_future(mark_cpu())
        await asyncio.gather(*(client(i) for i in range(cfg.concurrency)))
        cpu_end = time.process_time()
        await marker
        return WorkerResult(
            index=cfg.index,
            calls=len(tally.latencies),
            errors=tally.errors,
            first_error=tally.first_error,
            latencies=tally.latencies.tobytes(),
            cpu_seconds=cpu_end - cpu_mark[0],
        )
    finally:
        for ch in channels:
            await ch.close()


def _sync_main(cfg: WorkerConfig, conn: Connection) -> WorkerResult:
    import grpc

    from floe.v1 import tenants_pb2_grpc

    options = channel_options(cfg.channels > 1)
    channels = [grpc.insecure_channel(cfg.target, options=options) for _ in range(cfg.channels)]
    stubs = [tenants_pb2_grpc.TenantServiceStub(ch) for ch in channels]
    req = _Request(cfg)
    metadata = (("authorization", "Bearer " + cfg.api_key),)
    try:
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=30)
        conn.send("ready")
        load_start, measure_start, measure_end = conn.recv()
        tally = _Tally((measure_start, measure_end))
        per_thread: list[array[float]] = [array("d") for _ in range(cfg.concurrency)]
        time.sleep(max(0.0, load_start - time.monotonic()))

        def client(i: int) -> None:
            call = req.method(stubs[i % len(stubs)])
            mine = per_thread[i]
            n = 0
            while True:
                t0 = time.monotonic()
                if t0 >= measure_end:
                    return
                try:
                    call(req.make(i, n), metadata=metadata, timeout=CALL_TIMEOUT_S)
                except Exception as exc:  # count every failure; the run is reported invalid
                    tally.error(*error_code(exc))
                else:
                    t1 = time.monotonic()
                    if t0 >= measure_start and t1 <= measure_end:
                        mine.append(t1 - t0)
                n += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(cfg.concurrency)]
        for t in threads:
            t.start()
        time.sleep(max(0.0, measure_start - time.monotonic()))
        cpu_start = time.process_time()
        time.sleep(max(0.0, measure_end - time.monotonic()))
        cpu_end = time.process_time()
        for t in threads:
            t.join(CALL_TIMEOUT_S + 5)
        for lat in per_thread:
            tally.latencies.extend(lat)
        return WorkerResult(
            index=cfg.index,
            calls=len(tally.latencies),
            errors=tally.errors,
            first_error=tally.first_error,
            latencies=tally.latencies.tobytes(),
            cpu_seconds=cpu_end - cpu_start,
        )
    finally:
        for ch in channels:
            ch.close()


def worker_entry(cfg: WorkerConfig, conn: Connection) -> None:
    """Process entry point: report ready, wait for the window, run, send the result."""
    try:
        if cfg.mode == "aio":
            if cfg.use_uvloop:
                from floe.aio import run

                result = run(_aio_main(cfg, conn))
            else:
                result = asyncio.run(_aio_main(cfg, conn))
        else:
            result = _sync_main(cfg, conn)
        conn.send(("ok", asdict(result)))
    except BaseException as exc:
        conn.send(("error", f"worker {cfg.index}: {type(exc).__name__}: {exc}"))
        raise
    finally:
        conn.close()


def create_fixtures(target: str, api_key: str, count: int, run_id: str) -> list[str]:
    import grpc

    from floe.v1 import tenants_pb2, tenants_pb2_grpc

    metadata = (("authorization", "Bearer " + api_key),)
    names = []
    with grpc.insecure_channel(target) as channel:
        stub = tenants_pb2_grpc.TenantServiceStub(channel)
        for i in range(count):
            tenant = tenants_pb2.Tenant(
                display_name=f"Fixture tenant {i}",
                description="Created by scripts/bench/control_plane_unary.py",
                labels={"env": "bench", "team": f"team-{i % 10}"},
            )
            resp = stub.CreateTenant(
                tenants_pb2.CreateTenantRequest(tenant_id=f"a{run_id}-fixture-{i:05d}", tenant=tenant),
                metadata=metadata,
                timeout=CALL_TIMEOUT_S,
            )
            names.append(resp.tenant.name)
        # The first authenticated call pays argon2 once; make sure the HMAC cache is warm.
        stub.GetTenant(tenants_pb2.GetTenantRequest(name=names[0]), metadata=metadata, timeout=CALL_TIMEOUT_S)
    return names


# -- phases ----------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    phase: str
    rpc: str
    duration: float
    calls: int
    calls_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    server_cpu_s: float
    server_cpu_pct: float  # of one core
    server_main_thread_pct: float
    server_us_per_call: float  # server CPU (all threads) per completed call
    client_cpu_pct: float  # sum over load-generator processes, of one core
    machine_busy_pct: float  # all cores busy (any process), % of the whole machine
    steal_pct: float  # hypervisor steal, % of the whole machine
    server_threads: list[tuple[str, int, float]]  # (comm, tid, % of one core), busiest first


def run_phase(args: argparse.Namespace, server: Server, phase: str, names: list[str], run_id: str) -> PhaseResult:
    ctx = mp.get_context("spawn")  # never fork a process that has gRPC state
    per_process = [c for c in split(args.concurrency, args.processes) if c > 0]
    workers: list[tuple[mp.process.BaseProcess, Connection]] = []
    try:
        for i, conc in enumerate(per_process):
            parent_end, child_end = ctx.Pipe()
            channels = conc if args.channel_per_client else 1
            cfg = WorkerConfig(
                index=i,
                phase=phase,
                target=server.grpc,
                api_key=server.admin_key,
                mode=args.client_mode,
                concurrency=conc,
                channels=channels,
                tenant_names=tuple(names),
                run_id=run_id,
                list_page_size=args.list_page_size,
                use_uvloop=not args.no_uvloop,
            )
            child = ctx.Process(target=worker_entry, args=(cfg, child_end), daemon=True, name=f"bench-{phase}-{i}")
            child.start()
            child_end.close()
            workers.append((child, parent_end))
        for proc, conn in workers:
            if not conn.poll(60):
                raise RuntimeError(f"{proc.name} did not become ready within 60s")
            msg = conn.recv()
            if msg != "ready":
                raise RuntimeError(f"{proc.name}: {msg}")
        load_start = time.monotonic() + 0.2
        measure_start = load_start + args.warmup
        measure_end = measure_start + args.duration
        for _, conn in workers:
            conn.send((load_start, measure_start, measure_end))
        time.sleep(max(0.0, measure_start - time.monotonic()))
        cpu0, machine0 = sample_cpu(server.pid), machine_cpu()
        time.sleep(max(0.0, measure_end - time.monotonic()))
        cpu1, machine1 = sample_cpu(server.pid), machine_cpu()
        results: list[WorkerResult] = []
        for proc, conn in workers:
            if not conn.poll(CALL_TIMEOUT_S + 30):
                raise RuntimeError(f"{proc.name} did not report within {CALL_TIMEOUT_S + 30}s")
            status, payload = conn.recv()
            if status != "ok":
                raise RuntimeError(str(payload))
            results.append(WorkerResult(**payload))
        for proc, _ in workers:
            proc.join(15)
            if proc.exitcode != 0:
                raise RuntimeError(f"{proc.name} exited with {proc.exitcode}")
    finally:
        for proc, conn in workers:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()
    if not server.alive():
        raise RuntimeError(f"control plane died during {phase}:\n{server.log_tail()}")

    latencies: list[float] = []
    errors: dict[str, int] = {}
    for r in results:
        lat = array("d")
        lat.frombytes(r.latencies)
        latencies.extend(lat)
        for code, n in r.errors.items():
            errors[code] = errors.get(code, 0) + n
        if r.first_error:
            print(f"  [{phase}] worker {r.index} first error: {r.first_error}", file=sys.stderr)
    latencies.sort()
    span = args.duration
    threads = []
    for tid, (comm, after) in cpu1.threads.items():
        before = cpu0.threads.get(tid, (comm, 0.0))[1]
        if after - before > 0:
            threads.append((comm, tid, round(100 * (after - before) / span, 1)))
    threads.sort(key=lambda t: -t[2])
    return PhaseResult(
        phase=phase,
        rpc=f"{RPC_NAMES[phase]}({args.list_page_size})" if phase == "list" else RPC_NAMES[phase],
        duration=span,
        calls=len(latencies),
        calls_per_s=len(latencies) / span,
        p50_ms=1000 * percentile(latencies, 50),
        p95_ms=1000 * percentile(latencies, 95),
        p99_ms=1000 * percentile(latencies, 99),
        max_ms=1000 * (latencies[-1] if latencies else math.nan),
        errors=errors,
        server_cpu_s=cpu1.process - cpu0.process,
        server_cpu_pct=100 * (cpu1.process - cpu0.process) / span,
        server_main_thread_pct=100 * (cpu1.main_thread - cpu0.main_thread) / span,
        server_us_per_call=1e6 * (cpu1.process - cpu0.process) / max(1, len(latencies)),
        client_cpu_pct=100 * sum(r.cpu_seconds for r in results) / span,
        machine_busy_pct=100 * (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]),
        steal_pct=100 * (machine1[2] - machine0[2]) / max(1, machine1[1] - machine0[1]),
        server_threads=threads,
    )


# -- reporting -------------------------------------------------------------------------------


def print_table(results: list[PhaseResult]) -> None:
    header = (
        f"{'RPC':<18}{'calls/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'errors':>8}{'srv CPU':>9}{'srv main':>10}{'us/call':>9}{'clients':>9}{'machine':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.rpc:<18}{r.calls_per_s:>10,.0f}{r.p50_ms:>9.2f}{r.p95_ms:>9.2f}{r.p99_ms:>9.2f}{r.max_ms:>9.1f}"
            f"{sum(r.errors.values()):>8}{r.server_cpu_pct:>8.0f}%{r.server_main_thread_pct:>9.0f}%{r.server_us_per_call:>9.0f}"
            f"{r.client_cpu_pct:>8.0f}%{r.machine_busy_pct:>8.0f}%"
        )
    print("(CPU columns: % of one core over the measured window; srv main = the event-loop thread;")
    print(" us/call = server CPU time, all threads, per completed call;")
    print(" clients = sum over load-generator processes; machine = all", os.cpu_count(), "cores busy, any process.)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--concurrency", "-c", type=int, default=16, help="concurrent in-flight calls in total (16)")
    p.add_argument("--processes", "-p", type=int, default=2, help="load-generator processes (2)")
    p.add_argument("--client-mode", choices=("aio", "sync"), default="aio", help="grpc.aio tasks or sync threads")
    p.add_argument(
        "--channel-per-client",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one channel (TCP connection) per concurrent client, else one per process (default: per client)",
    )
    p.add_argument("--no-uvloop", action="store_true", help="aio clients on the default asyncio loop")
    p.add_argument("--duration", "-d", type=float, default=10.0, help="measured seconds per phase (10)")
    p.add_argument("--warmup", "-w", type=float, default=2.0, help="warm-up seconds per phase (2)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--tenants", type=int, default=200, help="fixture tenants created before measuring (200)")
    p.add_argument("--list-page-size", type=int, default=50)
    p.add_argument("--pause-before", type=float, default=0.0, help="sleep after setup (e.g. to attach py-spy)")
    p.add_argument("--threads", action="store_true", help="also print per-thread server CPU for each phase")
    p.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and server log")
    p.add_argument("--enforce-targets", action="store_true", help="exit 1 when the GetTenant target is missed")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument for floe control-plane")
    args = p.parse_args(argv)
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        p.error(f"--phases: unknown {sorted(unknown)}; choose from {PHASES}")
    args.phases = phases
    if args.concurrency < 1 or args.processes < 1 or args.duration <= 0 or args.warmup < 0 or args.tenants < 1:
        p.error("--concurrency, --processes, --tenants must be >= 1; --duration > 0; --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = format(int(time.time() * 1000) % 36**6, "x")
    tmp = Path(tempfile.mkdtemp(prefix="floe-bench-"))
    server = Server(tmp / "data", args.server_arg)
    results: list[PhaseResult] = []
    load_before = loadavg()
    started = time.time()
    try:
        server.start()
        print(f"control plane pid {server.pid} on {server.grpc}; data dir {server.data_dir}")
        t = time.monotonic()
        names = create_fixtures(server.grpc, server.admin_key, args.tenants, run_id)
        print(f"created {len(names)} fixture tenants in {time.monotonic() - t:.1f}s")
        if args.pause_before:
            print(f"pausing {args.pause_before}s (server pid {server.pid})", flush=True)
            time.sleep(args.pause_before)
        print(
            f"load: {args.concurrency} concurrent calls over {args.processes} {args.client_mode} process(es), "
            f"{'one channel per client' if args.channel_per_client else 'one channel per process'}; "
            f"{args.warmup:g}s warm-up + {args.duration:g}s measured per phase",
            flush=True,
        )
        for phase in args.phases:
            r = run_phase(args, server, phase, names, run_id)
            results.append(r)
            print(
                f"  {r.rpc:<16} {r.calls_per_s:>8,.0f} calls/s  p99 {r.p99_ms:6.2f} ms  "
                f"server CPU {r.server_cpu_s:.2f}s ({r.server_cpu_pct:.0f}%, "
                f"main thread {r.server_main_thread_pct:.0f}%, {r.server_us_per_call:.0f} us/call)  "
                f"clients {r.client_cpu_pct:.0f}%  machine busy {r.machine_busy_pct:.0f}%",
                flush=True,
            )
            if args.threads:
                busiest = ", ".join(f"{c}[{tid}] {pct}%" for c, tid, pct in r.server_threads[:8])
                # Python 3.11 leaves its threads named after the executable: those share one GIL.
                py = sum(pct for c, _, pct in r.server_threads if c.startswith("python"))
                print(f"    server threads: {busiest}")
                print(f"    threads named python* (share the GIL): {py:.0f}%; others: {r.server_cpu_pct - py:.0f}%")
    except Exception as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        if args.keep_data:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = loadavg()

    print()
    print_table(results)
    get = next((r for r in results if r.phase == "get"), None)
    met: bool | None = None
    if get is not None:
        met = get.calls_per_s >= TARGET_GET_CALLS_PER_S and get.p99_ms < TARGET_GET_P99_MS
        print(
            f"\nTarget GetTenant >= {TARGET_GET_CALLS_PER_S:,.0f} calls/s and p99 < {TARGET_GET_P99_MS:g} ms: "
            f"{'MET' if met else 'NOT MET'} ({get.calls_per_s:,.0f} calls/s, p99 {get.p99_ms:.2f} ms)"
        )
    print(f"load average before {load_before}, after {load_after} (1/5/15 min)")
    summary: dict[str, Any] = {
        "bench": "control_plane_unary",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "concurrency": args.concurrency,
        "processes": args.processes,
        "client_mode": args.client_mode,
        "channel_per_client": args.channel_per_client,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "target_met": met,
        "results": {
            r.phase: {
                "rpc": r.rpc,
                "calls_per_s": round(r.calls_per_s, 1),
                "p50_ms": round(r.p50_ms, 3),
                "p95_ms": round(r.p95_ms, 3),
                "p99_ms": round(r.p99_ms, 3),
                "max_ms": round(r.max_ms, 3),
                "errors": r.errors,
                "server_cpu_pct": round(r.server_cpu_pct, 1),
                "server_main_thread_pct": round(r.server_main_thread_pct, 1),
                "server_us_per_call": round(r.server_us_per_call, 1),
                "client_cpu_pct": round(r.client_cpu_pct, 1),
                "machine_busy_pct": round(r.machine_busy_pct, 1),
                "steal_pct": round(r.steal_pct, 1),
            }
            for r in results
        },
    }
    print("BENCH_JSON " + json.dumps(summary, separators=(",", ":")))
    if any(r.errors or r.calls == 0 for r in results):
        print("benchmark invalid: some phase had RPC errors or no completed calls", file=sys.stderr)
        return 1
    if args.enforce_targets and met is False:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
