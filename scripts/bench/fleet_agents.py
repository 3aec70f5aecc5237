#!/usr/bin/env python3
"""Benchmark: N simulated agents on one control plane (connect, RSS, dataset update -> ACK).

For each fleet size N (default 1,000 then 2,000) it starts its own ``floe control-plane`` in a
temporary data dir (a separate process, loopback only), creates an agent API key (ROLE_AGENT),
a tenant and its dataset(s), then opens N ``floe.v1.AgentService/Connect`` streams from a few
load-generator processes (grpc.aio on uvloop; by default 2 processes, one channel = one TCP
connection per agent, like real agents on separate hosts). Every simulated agent is
AGENT_KIND_PIPER, so it subscribes to "datasets" = every dataset of its tenant and one dataset
update affects all of them. Each agent says hello, answers every ConfigUpdate with
ConfigAck{APPLIED} (echoing version and nonce, next sequence number) and sends heartbeats at
the Welcome's interval. All agents dial at once (``--ramp`` spreads them); a dial refused before
the Welcome is retried like agents/runtime/control.py does (RetryInfo, else 0.5 s doubling,
jittered) and reported as a redial. ``--datasets`` sets how many datasets (so how large a
config) every agent is sent.

Measured per N:

- connect: from the moment all agents start dialling until the last one has received its
  Welcome and received + acked its initial config (and the p50/p99 of both per agent);
- control-plane memory from /proc/PID/status: VmRSS idle (before agents), VmRSS and VmHWM
  after all are connected, VmRSS and VmHWM (peak) at the end;
- ``--updates`` times: one UpdateDataset (description changed) and, per agent, the time from
  that RPC's completion to the moment the agent's ACK for the new version was written to its
  stream (time.monotonic() is CLOCK_MONOTONIC, system-wide on Linux, so times from different
  processes compare). Reports p50/p99/max, % of agents acked within 1 s and 2 s, server and
  client CPU; then checks with ListAgents that the control plane recorded every ACK.

Targets (issue), on 2 cores: 2,000 streams under 1 GiB RSS; 99 % of 1,000 agents acked within
1 s of a dataset update, all within 2 s.

    python scripts/bench/fleet_agents.py                       # N = 1000 and 2000, 3 updates each
    python scripts/bench/fleet_agents.py --agents 2000 --updates 5
    python scripts/bench/fleet_agents.py --datasets 250            # a 48 KB "datasets" config
    python scripts/bench/fleet_agents.py --streams-per-channel 100    # 100 agents share a connection
    python scripts/bench/fleet_agents.py --agents 2000 --pause-before 10   # and meanwhile:
    py-spy record --pid <printed server pid> --duration 20 --nonblocking -o /tmp/fleet.svg

Prints a table and one line ``BENCH_JSON {...}``. Exits 1 if the benchmark itself fails (server
does not start or dies, a load generator dies or hangs, an agent gets an error or is not
connected within ``--connect-timeout``, or does not ack an update within ``--round-timeout``);
with ``--enforce-targets`` also when a target is missed. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `scripts.bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench._common import (
    CLK_TCK,
    Server,
    channel_options,
    error_code,
    loadavg,
    machine_cpu,
    memory_kib,
    percentile,
    sample_cpu,
    split,
)

TARGET_RSS_BYTES = 1 << 30  # 2,000 streams under 1 GiB
TARGET_RSS_AGENTS = 2000
TARGET_ACK_AGENTS = 1000  # 99 % within 1 s, all within 2 s
TARGET_WITHIN_1S_PCT = 99.0
TARGET_WITHIN_2S_PCT = 100.0
TENANT_ID = "bench"
NAN = math.nan
#: Codes a dial may fail with before the Welcome that a real agent retries; see _agent.
REDIAL_CODES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "CANCELLED", "INTERNAL"})
MAX_REDIAL_DELAY = 8.0


# -- configuration and messages shared with the workers (must pickle) --------------------------


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    target: str
    api_key: str
    names: tuple[str, ...]  # agent_name of each simulated agent in this process
    streams_per_channel: int  # agents sharing one channel (TCP connection); 0 = one channel in all
    use_uvloop: bool
    kind: str  # AgentKind name
    ramp: float  # seconds over which this process's agents start dialling (evenly spread)


@dataclass
class ConnectReport:
    """Per-agent absolute monotonic times (array("d") bytes), in the order of ``names``."""

    index: int
    welcome: bytes = b""
    initial_recv: bytes = b""
    initial_ack: bytes = b""
    redials: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # process CPU at the time of the report


@dataclass
class RoundReport:
    index: int
    recv: bytes = b""  # first ConfigUpdate received after "arm", per agent (NaN if none)
    ack: bytes = b""  # its ACK written to the stream
    updates: dict[int, int] = field(default_factory=dict)  # updates received per agent -> agents
    versions: dict[str, int] = field(default_factory=dict)  # version acked -> agents
    cpu_seconds: float = 0.0


@dataclass
class FinalReport:
    index: int
    heartbeats: int = 0
    full_state: int = 0  # RequestFullState received
    stray_updates: int = 0  # ConfigUpdates outside a measured round (other than the initial one)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    cpu_seconds: float = 0.0


# -- load generator (runs in worker processes) -------------------------------------------------


class Fleet:
    """The simulated agents of one worker process and what they observed."""

    def __init__(self, cfg: WorkerConfig) -> None:
        n = len(cfg.names)
        self.cfg = cfg
        self.n = n
        self.welcome = array("d", [NAN]) * n
        self.initial_recv = array("d", [NAN]) * n
        self.initial_ack = array("d", [NAN]) * n
        self.round_recv = array("d", [NAN]) * n
        self.round_ack = array("d", [NAN]) * n
        self.round_updates = [0] * n
        self.round_version = [""] * n
        self.armed = False
        self.round_acked = 0
        self.initial_acked = 0
        self.failed = 0
        self.all_connected = asyncio.Event()
        self.round_complete = asyncio.Event()
        self.heartbeats = self.full_state = self.stray_updates = 0
        self.redials: dict[str, int] = {}  # dials that failed before the Welcome and were retried, by code
        self.errors: dict[str, int] = {}
        self.first_error = ""

    def error(self, i: int, code: str, detail: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
        if not self.first_error:
            self.first_error = f"{self.cfg.names[i]}: {code}: {detail}"
        self.failed += 1
        # A dead agent will never ack: let the waiters see the run is incomplete now.
        if self.initial_acked + self.failed >= self.n:
            self.all_connected.set()
        if self.armed and self.round_acked + self.failed >= self.n:
            self.round_complete.set()

    def acked(self, i: int, received: float, written: float, version: str) -> None:
        if math.isnan(self.initial_ack[i]):
            self.initial_recv[i], self.initial_ack[i] = received, written
            self.initial_acked += 1
            if self.initial_acked + self.failed >= self.n:
                self.all_connected.set()
        elif self.armed:
            self.round_updates[i] += 1
            if self.round_updates[i] == 1:
                self.round_recv[i], self.round_ack[i] = received, written
                self.round_version[i] = version
                self.round_acked += 1
                if self.round_acked + self.failed >= self.n:
                    self.round_complete.set()
        else:
            self.stray_updates += 1

    def arm(self) -> None:
        self.round_recv = array("d", [NAN]) * self.n
        self.round_ack = array("d", [NAN]) * self.n
        self.round_updates = [0] * self.n
        self.round_version = [""] * self.n
        self.round_acked = 0
        self.round_complete.clear()
        self.armed = True


async def _agent(fleet: Fleet, i: int, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
    """One simulated agent: connect, then serve the stream until cancelled.

    A dial that fails before the Welcome is retried the way agents/runtime/control.py does it
    (the server's RetryInfo delay, else 0.5 s doubling, jittered) and counted in ``redials``;
    any failure after the Welcome makes the run invalid.
    """
    import grpc

    from floe.errors import from_grpc_error

    delay = 0.5
    while True:
        try:
            await _session(fleet, i, stub, metadata)
            fleet.error(i, "EOF", "the control plane ended the stream")
            return
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if math.isnan(fleet.welcome[i]) and code.name in REDIAL_CODES and delay <= MAX_REDIAL_DELAY:
                fleet.redials[code.name] = fleet.redials.get(code.name, 0) + 1
                wait = from_grpc_error(exc).retry_after
                if wait is None:
                    wait = delay * random.uniform(0.5, 1.5)
                    delay *= 2
                await asyncio.sleep(wait)
                continue
            fleet.error(i, *error_code(exc))
            return
        except Exception as exc:  # any other failure makes the run invalid
            fleet.error(i, *error_code(exc))
            return


async def _session(fleet: Fleet, i: int, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
    import grpc

    from floe.v1 import agent_pb2

    cfg = fleet.cfg
    applied: dict[str, str] = {}
    sequence = 0
    lock = asyncio.Lock()  # one write at a time on a stream; sequence numbers in write order
    instance = secrets.token_hex(8)

    def hello() -> Any:
        return agent_pb2.ConnectRequest(
            hello=agent_pb2.AgentHello(
                kind=agent_pb2.AgentKind.Value(cfg.kind),
                agent_name=cfg.names[i],
                instance_id=instance,
                version="bench",
                labels={"bench": "fleet", "shard": str(i % 10)},
                applied=[
                    agent_pb2.AppliedConfig(
                        config_type=t, version=v, status=agent_pb2.CONFIG_STATUS_APPLIED, effective_version=v
                    )
                    for t, v in sorted(applied.items())
                ],
            )
        )

    call = stub.Connect(metadata=metadata)

    async def send(request: Any) -> None:
        nonlocal sequence
        async with lock:
            sequence += 1
            request.sequence = sequence
            await call.write(request)

    async def heartbeats(interval: float) -> None:
        await asyncio.sleep(random.uniform(0, interval))  # spread them like independent agents
        while True:
            await send(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))
            fleet.heartbeats += 1
            await asyncio.sleep(interval)

    beating: asyncio.Task[None] | None = None
    try:
        await send(hello())
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            received = time.monotonic()
            kind = msg.WhichOneof("message")
            if kind == "config_update":
                update = msg.config_update
                ack = agent_pb2.ConfigAck(
                    config_type=update.config_type,
                    version=update.version,
                    nonce=update.nonce,
                    status=agent_pb2.CONFIG_STATUS_APPLIED,
                )
                await send(agent_pb2.ConnectRequest(config_ack=ack))
                applied[update.config_type] = update.version
                fleet.acked(i, received, time.monotonic(), update.version)
            elif kind == "welcome":
                if math.isnan(fleet.welcome[i]):
                    fleet.welcome[i] = received
                interval = max(msg.welcome.heartbeat_interval.ToNanoseconds() / 1e9, 0.1)
                if beating is None:
                    beating = asyncio.create_task(heartbeats(interval))
            elif kind == "request_full_state":
                fleet.full_state += 1
                await send(hello())
            elif kind == "command":
                result = agent_pb2.CommandResult(id=msg.command.id, ok=True, message="bench agent")
                await send(agent_pb2.ConnectRequest(command_result=result))
            elif kind == "throttle":
                raise RuntimeError(f"throttled by the server: {msg.throttle.reason}")
    finally:
        if beating is not None:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beating
        call.cancel()


async def _worker_main(cfg: WorkerConfig, conn: Connection) -> None:
    import grpc

    from floe.v1 import agent_pb2_grpc

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def pump() -> None:  # the pipe is read on a thread so the event loop never blocks on it
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("stop",)
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[0] == "stop":
                return

    n = len(cfg.names)
    per_channel = cfg.streams_per_channel or n
    n_channels = max(1, math.ceil(n / per_channel))
    options = channel_options(n_channels > 1)
    channels = [grpc.aio.insecure_channel(cfg.target, options=options) for _ in range(n_channels)]
    stubs = [agent_pb2_grpc.AgentServiceStub(ch) for ch in channels]
    metadata = (("authorization", "Bearer " + cfg.api_key),)
    fleet = Fleet(cfg)
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), 60)
        threading.Thread(target=pump, daemon=True, name="pipe").start()
        conn.send(("ready", time.process_time()))
        while True:
            msg = await inbox.get()
            if msg[0] == "connect":
                _, start, timeout = msg
                await asyncio.sleep(max(0.0, start - time.monotonic()))
                for i in range(n):
                    if cfg.ramp > 0:
                        await asyncio.sleep(max(0.0, start + cfg.ramp * i / n - time.monotonic()))
                    tasks.append(asyncio.create_task(_agent(fleet, i, stubs[i // per_channel], metadata)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fleet.all_connected.wait(), max(0.0, start + timeout - time.monotonic()))
                report = ConnectReport(
                    index=cfg.index,
                    welcome=fleet.welcome.tobytes(),
                    initial_recv=fleet.initial_recv.tobytes(),
                    initial_ack=fleet.initial_ack.tobytes(),
                    redials=dict(fleet.redials),
                    cpu_seconds=time.process_time(),
                )
                conn.send(("connected", asdict(report)))
            elif msg[0] == "arm":
                fleet.arm()
                conn.send(("armed", time.process_time()))
            elif msg[0] == "collect":
                _, deadline = msg
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fleet.round_complete.wait(), max(0.0, deadline - time.monotonic()))
                fleet.armed = False
                round_report = RoundReport(
                    index=cfg.index,
                    recv=fleet.round_recv.tobytes(),
                    ack=fleet.round_ack.tobytes(),
                    updates=dict(Counter(fleet.round_updates)),
                    versions=dict(Counter(fleet.round_version)),
                    cpu_seconds=time.process_time(),
                )
                conn.send(("round", asdict(round_report)))
            elif msg[0] == "status":
                conn.send(("status", {"errors": dict(fleet.errors), "first_error": fleet.first_error}))
            elif msg[0] == "stop":
                break
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        final = FinalReport(
            index=cfg.index,
            heartbeats=fleet.heartbeats,
            full_state=fleet.full_state,
            stray_updates=fleet.stray_updates,
            errors=fleet.errors,
            first_error=fleet.first_error,
            cpu_seconds=time.process_time(),
        )
        with contextlib.suppress(OSError):
            conn.send(("final", asdict(final)))
        for ch in channels:
            await ch.close()


def worker_entry(cfg: WorkerConfig, conn: Connection) -> None:
    """Process entry point."""
    try:
        if cfg.use_uvloop:
            from floe.aio import run

            run(_worker_main(cfg, conn))
        else:
            asyncio.run(_worker_main(cfg, conn))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", f"worker {cfg.index}: {type(exc).__name__}: {exc}"))
        raise
    finally:
        conn.close()


# -- coordinator -------------------------------------------------------------------------------


class Workers:
    """The load-generator processes of one fleet size and their pipes."""

    def __init__(self) -> None:
        self.procs: list[tuple[mp.process.BaseProcess, Connection]] = []

    def start(self, configs: list[WorkerConfig]) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that has gRPC state
        for cfg in configs:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=worker_entry, args=(cfg, child_end), daemon=True, name=f"agents-{cfg.index}")
            proc.start()
            child_end.close()
            self.procs.append((proc, parent_end))

    def cpu(self) -> float:
        """CPU seconds used so far by all worker processes (from /proc)."""
        total = 0.0
        for proc, _ in self.procs:
            if proc.pid is not None:
                with contextlib.suppress(OSError):
                    total += sample_cpu(proc.pid).process
        return total

    def send(self, *msg: Any) -> None:
        for _, conn in self.procs:
            conn.send(msg)

    def gather(self, tag: str, timeout: float) -> list[Any]:
        """The next message of each worker, which must be ``(tag, payload)``."""
        pending = {conn: i for i, (_, conn) in enumerate(self.procs)}
        out: list[Any] = [None] * len(self.procs)
        deadline = time.monotonic() + timeout
        while pending:
            ready = wait(list(pending), max(0.0, deadline - time.monotonic()))
            if not ready:
                names = ", ".join(self.procs[i][0].name for i in pending.values())
                raise RuntimeError(f"no {tag!r} from {names} within {timeout:.0f}s")
            for conn in ready:
                assert isinstance(conn, Connection)
                i = pending.pop(conn)
                try:
                    msg = conn.recv()
                except EOFError:
                    raise RuntimeError(f"{self.procs[i][0].name} exited (code {self.procs[i][0].exitcode})") from None
                if msg[0] != tag:
                    raise RuntimeError(f"{self.procs[i][0].name}: expected {tag!r}, got {msg!r:.500}")
                out[i] = msg[1] if len(msg) > 1 else None
        return out

    def stop(self) -> list[dict[str, Any]]:
        finals: list[dict[str, Any]] = []
        with contextlib.suppress(OSError):
            self.send("stop")
        for proc, conn in self.procs:
            with contextlib.suppress(EOFError, OSError):
                while conn.poll(20):
                    msg = conn.recv()
                    if msg[0] == "final":
                        finals.append(msg[1])
                        break
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()
        return finals


def _times(raw: bytes) -> list[float]:
    values = array("d")
    values.frombytes(raw)
    return list(values)


def _since(times: list[float], origin: float) -> list[float]:
    """Seconds from ``origin`` of the finite times, ascending."""
    return sorted(t - origin for t in times if not math.isnan(t))


def _ms(sorted_values: list[float], q: float) -> float:
    return round(1000 * percentile(sorted_values, q), 1)


@dataclass
class Round:
    number: int
    rpc_ms: float  # UpdateDataset round trip
    acked: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    recv_p50_ms: float
    recv_p99_ms: float
    within_1s_pct: float
    within_2s_pct: float
    extra_updates: int  # agents that got more than one update in the round
    versions: int  # distinct versions acked (must be 1)
    recorded: int  # agents ListAgents shows with the new version reported and APPLIED
    server_cpu_s: float
    server_main_s: float
    clients_cpu_s: float
    machine_busy_pct: float


@dataclass
class FleetResult:
    agents: int
    processes: int
    channels: int
    connected: int
    connect_s: float  # start -> last initial ACK
    welcome_p50_ms: float
    welcome_p99_ms: float
    welcome_max_ms: float
    initial_ack_p50_ms: float
    initial_ack_p99_ms: float
    redials: dict[str, int]
    connect_server_cpu_s: float
    connect_clients_cpu_s: float
    rss_idle_mib: float
    rss_connected_mib: float
    rss_end_mib: float
    hwm_mib: float  # VmHWM (peak RSS) at the end
    kib_per_stream: float
    config_bytes: int
    hwm_connected_mib: float = NAN  # VmHWM once all agents were connected (before any update)
    quiet_machine_busy_pct: float = NAN  # both cores, during --settle (only heartbeats flowing)
    foreign_load_pct: float = NAN  # of that, not the control plane or the load generators
    rounds: list[Round] = field(default_factory=list)
    heartbeats: int = 0
    full_state: int = 0
    stray_updates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    listed_connected: int = 0
    failure: str = ""


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _recorded(client: Any, version: str) -> tuple[int, int]:
    """(connected agents, agents whose "datasets" config is reported at ``version`` and APPLIED)."""
    from floe.v1 import agent_pb2

    connected = recorded = 0
    for agent in client.agents.list(agent_pb2.AGENT_KIND_PIPER):
        connected += agent.connected
        for state in agent.configs:
            if (
                state.config_type == "datasets"
                and state.reported_version == version
                and state.status == agent_pb2.CONFIG_STATUS_APPLIED
            ):
                recorded += 1
    return connected, recorded


def run_fleet(args: argparse.Namespace, n: int, tmp: Path, run_id: str) -> FleetResult:
    from floe import Client
    from floe.v1 import agent_pb2, common_pb2, datasets_pb2

    server = Server(tmp / f"n{n}" / "data", args.server_arg)
    server.data_dir.parent.mkdir(parents=True)
    workers = Workers()
    per_process = [c for c in split(n, args.processes) if c > 0]
    spc = args.streams_per_channel
    n_channels = sum(max(1, math.ceil(c / (spc or c))) for c in per_process)
    result = FleetResult(
        agents=n, processes=len(per_process), channels=n_channels, connected=0, connect_s=NAN,
        welcome_p50_ms=NAN, welcome_p99_ms=NAN, welcome_max_ms=NAN, initial_ack_p50_ms=NAN,
        initial_ack_p99_ms=NAN, redials={}, connect_server_cpu_s=NAN, connect_clients_cpu_s=NAN,
        rss_idle_mib=NAN, rss_connected_mib=NAN, rss_end_mib=NAN, hwm_mib=NAN, kib_per_stream=NAN, config_bytes=0,
    )  # fmt: skip
    client: Any = None
    try:
        server.start()
        print(f"[N={n}] control plane pid {server.pid} on {server.grpc}", flush=True)
        client = Client(server.grpc, api_key=server.admin_key)
        _, agent_key = client.keys.create(common_pb2.ROLE_AGENT, display_name="fleet bench")
        client.tenants.create(TENANT_ID, display_name="Fleet bench")
        datasets = [
            client.datasets.create(
                f"tenants/{TENANT_ID}",
                f"ds-{d:03d}",
                datasets_pb2.Dataset(
                    display_name=f"Bench dataset {d}",
                    description="created by scripts/bench/fleet_agents.py",
                    source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_UDP, port=5514 + d),
                    labels={"bench": "fleet"},
                    active=True,
                ),
            )
            for d in range(args.datasets)
        ]
        target_ds = datasets[0]
        result.config_bytes = agent_pb2.DatasetsConfig(datasets=datasets).ByteSize()
        time.sleep(0.5)
        idle = memory_kib(server.pid)
        result.rss_idle_mib = _mib(idle["VmRSS"])

        names = [f"b{run_id}-{i:05d}" for i in range(n)]
        configs, offset = [], 0
        for i, count in enumerate(per_process):
            configs.append(
                WorkerConfig(
                    index=i,
                    target=server.grpc,
                    api_key=agent_key,
                    names=tuple(names[offset : offset + count]),
                    streams_per_channel=spc,
                    use_uvloop=not args.no_uvloop,
                    kind="AGENT_KIND_PIPER",
                    ramp=args.ramp,
                )
            )
            offset += count
        workers.start(configs)
        ready_cpu = sum(workers.gather("ready", 120))
        if args.pause_before:
            print(f"[N={n}] pausing {args.pause_before:g}s before connecting (server pid {server.pid})", flush=True)
            time.sleep(args.pause_before)

        # -- connect ------------------------------------------------------------------------
        cpu0 = sample_cpu(server.pid)
        start = time.monotonic() + 0.2
        workers.send("connect", start, args.connect_timeout)
        reports = [ConnectReport(**r) for r in workers.gather("connected", args.connect_timeout + 30)]
        cpu1 = sample_cpu(server.pid)
        welcome = _since([t for r in reports for t in _times(r.welcome)], start)
        initial = _since([t for r in reports for t in _times(r.initial_ack)], start)
        result.connected = len(initial)
        for report in reports:
            for code, count in report.redials.items():
                result.redials[code] = result.redials.get(code, 0) + count
        result.connect_s = round(initial[-1], 3) if initial else NAN
        result.welcome_p50_ms, result.welcome_p99_ms = _ms(welcome, 50), _ms(welcome, 99)
        result.welcome_max_ms = _ms(welcome, 100)
        result.initial_ack_p50_ms, result.initial_ack_p99_ms = _ms(initial, 50), _ms(initial, 99)
        result.connect_server_cpu_s = round(cpu1.process - cpu0.process, 2)
        result.connect_clients_cpu_s = round(sum(r.cpu_seconds for r in reports) - ready_cpu, 2)
        print(
            f"[N={n}] {len(initial)}/{n} agents connected and acked their initial config in {result.connect_s:.2f}s "
            f"(welcome p50 {result.welcome_p50_ms:.0f} ms, p99 {result.welcome_p99_ms:.0f} ms; "
            f"server CPU {result.connect_server_cpu_s:.1f}s; dials retried {result.redials or 0})",
            flush=True,
        )
        if len(initial) < n:
            workers.send("status")
            status = workers.gather("status", 30)
            firsts = "; ".join(s["first_error"] for s in status if s["first_error"])
            raise RuntimeError(f"only {len(initial)}/{n} agents connected within {args.connect_timeout:g}s {firsts}")
        # Quiet period (heartbeats only): whatever else keeps the machine busy is foreign load.
        settle0 = (time.monotonic(), machine_cpu(), sample_cpu(server.pid).process, workers.cpu())
        time.sleep(args.settle)
        settle1 = (time.monotonic(), machine_cpu(), sample_cpu(server.pid).process, workers.cpu())
        span = (settle1[0] - settle0[0]) * (os.cpu_count() or 1)
        busy = (settle1[1][0] - settle0[1][0]) / CLK_TCK
        ours = (settle1[2] - settle0[2]) + (settle1[3] - settle0[3])
        result.quiet_machine_busy_pct = round(100 * busy / span, 1)
        result.foreign_load_pct = round(max(0.0, 100 * (busy - ours) / span), 1)
        connected = memory_kib(server.pid)
        result.rss_connected_mib = _mib(connected["VmRSS"])
        result.hwm_connected_mib = _mib(connected["VmHWM"])
        result.kib_per_stream = round((connected["VmRSS"] - idle["VmRSS"]) / n, 1)
        result.listed_connected, _ = _recorded(client, "")
        if result.listed_connected != n:
            raise RuntimeError(f"ListAgents shows {result.listed_connected} connected agents, expected {n}")
        print(
            f"[N={n}] control plane RSS {result.rss_idle_mib:.0f} MiB idle -> {result.rss_connected_mib:.0f} MiB "
            f"with {n} streams ({result.kib_per_stream:.0f} KiB per stream); quiet machine busy "
            f"{result.quiet_machine_busy_pct:.0f}%, foreign load {result.foreign_load_pct:.0f}%",
            flush=True,
        )

        # -- dataset updates -----------------------------------------------------------------
        previous = ""
        for number in range(1, args.updates + 1):
            workers.send("arm")
            client_cpu = sum(workers.gather("armed", 30))
            cpu0, machine0 = sample_cpu(server.pid), machine_cpu()
            target_ds.description = f"update {number} of run {run_id} at {time.time():.3f}"
            t0 = time.monotonic()
            target_ds = client.datasets.update(target_ds, ["description"])
            t_done = time.monotonic()
            workers.send("collect", t_done + args.round_timeout)
            rounds = [RoundReport(**r) for r in workers.gather("round", args.round_timeout + 30)]
            cpu1, machine1 = sample_cpu(server.pid), machine_cpu()
            acks = _since([t for r in rounds for t in _times(r.ack)], t_done)
            recvs = _since([t for r in rounds for t in _times(r.recv)], t_done)
            versions: Counter[str] = Counter()
            updates: Counter[int] = Counter()
            for r in rounds:
                versions.update({k: v for k, v in r.versions.items() if k})
                updates.update({int(k): v for k, v in r.updates.items()})
            version = versions.most_common(1)[0][0] if versions else ""
            _, recorded = _recorded(client, version) if version else (0, 0)
            rnd = Round(
                number=number,
                rpc_ms=round(1000 * (t_done - t0), 1),
                acked=len(acks),
                p50_ms=_ms(acks, 50),
                p99_ms=_ms(acks, 99),
                max_ms=_ms(acks, 100),
                recv_p50_ms=_ms(recvs, 50),
                recv_p99_ms=_ms(recvs, 99),
                within_1s_pct=round(100 * sum(1 for t in acks if t <= 1.0) / n, 2),
                within_2s_pct=round(100 * sum(1 for t in acks if t <= 2.0) / n, 2),
                extra_updates=sum(v for k, v in updates.items() if k > 1),
                versions=len(versions),
                recorded=recorded,
                server_cpu_s=round(cpu1.process - cpu0.process, 2),
                server_main_s=round(cpu1.main_thread - cpu0.main_thread, 2),
                clients_cpu_s=round(sum(r.cpu_seconds for r in rounds) - client_cpu, 2),
                machine_busy_pct=round(100 * (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]), 1),
            )
            result.rounds.append(rnd)
            print(
                f"[N={n}] update {number}: {rnd.acked}/{n} acked; p50 {rnd.p50_ms:.0f} ms, p99 {rnd.p99_ms:.0f} ms, "
                f"max {rnd.max_ms:.0f} ms; {rnd.within_1s_pct:g}% within 1 s, {rnd.within_2s_pct:g}% within 2 s; "
                f"recorded by the control plane: {rnd.recorded}; server CPU {rnd.server_cpu_s:.2f}s "
                f"(main thread {rnd.server_main_s:.2f}s), clients {rnd.clients_cpu_s:.2f}s, "
                f"machine busy {rnd.machine_busy_pct:.0f}%",
                flush=True,
            )
            problems = []
            if rnd.acked < n:
                problems.append(f"only {rnd.acked}/{n} agents acked within {args.round_timeout:g}s")
            if rnd.versions != 1 or version == previous:
                problems.append(f"agents acked {dict(versions)} (expected one new version)")
            if rnd.recorded != n:
                problems.append(f"ListAgents shows {rnd.recorded}/{n} agents with the new version applied")
            if problems:
                raise RuntimeError(f"update {number}: " + "; ".join(problems))
            previous = version
            if not server.alive():
                raise RuntimeError(f"control plane died:\n{server.log_tail()}")
            time.sleep(args.gap)
        end = memory_kib(server.pid)
        result.rss_end_mib, result.hwm_mib = _mib(end["VmRSS"]), _mib(end["VmHWM"])
    except Exception as exc:
        result.failure = str(exc)
        print(f"[N={n}] failed: {exc}", file=sys.stderr, flush=True)
    finally:
        finals = [FinalReport(**f) for f in workers.stop()]
        result.heartbeats = sum(f.heartbeats for f in finals)
        result.full_state = sum(f.full_state for f in finals)
        result.stray_updates = sum(f.stray_updates for f in finals)
        for f in finals:
            for code, count in f.errors.items():
                result.errors[code] = result.errors.get(code, 0) + count
            if f.first_error:
                print(f"[N={n}] worker {f.index} first error: {f.first_error}", file=sys.stderr)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if not server.alive() and not result.failure:
            result.failure = f"control plane died:\n{server.log_tail()}"
        server.stop()
    return result


# -- reporting ---------------------------------------------------------------------------------


def targets(results: list[FleetResult]) -> dict[str, bool | None]:
    """Each target: True/False, or None when the run did not cover it."""
    rss = next((r for r in results if r.agents == TARGET_RSS_AGENTS and not r.failure), None)
    ack = next((r for r in results if r.agents == TARGET_ACK_AGENTS and r.rounds and not r.failure), None)
    return {
        "rss_2000_under_1gib": None if rss is None else rss.hwm_mib * 1024 * 1024 < TARGET_RSS_BYTES,
        "ack_1000_99pct_1s_all_2s": None
        if ack is None
        else all(
            r.within_1s_pct >= TARGET_WITHIN_1S_PCT and r.within_2s_pct >= TARGET_WITHIN_2S_PCT for r in ack.rounds
        ),
    }


def print_tables(results: list[FleetResult]) -> None:
    header = (
        f"{'agents':>7}{'conns':>7}{'connect s':>11}{'welcome p50/p99 ms':>20}{'redials':>9}"
        f"{'srv CPU s':>10}{'RSS idle':>10}{'RSS conn':>10}{'RSS end':>9}{'VmHWM':>8}{'KiB/strm':>9}{'foreign':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.agents:>7}{r.channels:>7}{r.connect_s:>11.2f}{f'{r.welcome_p50_ms:.0f} / {r.welcome_p99_ms:.0f}':>20}"
            f"{sum(r.redials.values()):>9}{r.connect_server_cpu_s:>10.1f}{r.rss_idle_mib:>9.0f}M{r.rss_connected_mib:>9.0f}M"
            f"{r.rss_end_mib:>8.0f}M{r.hwm_mib:>7.0f}M{r.kib_per_stream:>9.0f}{r.foreign_load_pct:>7.0f}%"
        )
    print("(connect s = start of dialling -> last agent acked its initial config; redials = dials retried before")
    print(" the Welcome; RSS of the control plane: idle, after connecting, at the end; VmHWM = its peak;")
    print(" foreign = machine busy with other processes during a quiet period, % of all cores.)")
    print()
    header = (
        f"{'agents':>7}{'update':>7}{'RPC ms':>8}{'acked':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'<=1s %':>8}{'<=2s %':>8}{'recorded':>9}{'srv CPU':>9}{'srv main':>9}{'clients':>9}{'machine':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        for u in r.rounds:
            print(
                f"{r.agents:>7}{u.number:>7}{u.rpc_ms:>8.1f}{u.acked:>7}{u.p50_ms:>8.0f}{u.p99_ms:>8.0f}{u.max_ms:>8.0f}"
                f"{u.within_1s_pct:>8.1f}{u.within_2s_pct:>8.1f}{u.recorded:>9}{u.server_cpu_s:>8.2f}s"
                f"{u.server_main_s:>8.2f}s{u.clients_cpu_s:>8.2f}s{u.machine_busy_pct:>8.0f}%"
            )
    print("(update latencies: from the UpdateDataset RPC's completion to each agent's ACK written to its stream;")
    print(" recorded = agents ListAgents shows with the new version APPLIED afterwards; CPU = seconds over the round,")
    print(
        f" srv main = the control plane's event-loop thread; machine = all {os.cpu_count()} cores busy (any process)."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--agents", "-n", default="1000,2000", help="comma-separated fleet sizes (1000,2000)")
    p.add_argument("--processes", "-p", type=int, default=2, help="load-generator processes (2)")
    p.add_argument(
        "--streams-per-channel",
        type=int,
        default=1,
        help="agents sharing one gRPC channel = TCP connection (1: one per agent; 0: one per process)",
    )
    p.add_argument("--ramp", type=float, default=0.0, help="spread the agents' first dials over this many seconds (0)")
    p.add_argument("--datasets", type=int, default=1, help="datasets in the tenant, all sent to every agent (1)")
    p.add_argument("--updates", "-u", type=int, default=3, help="dataset updates measured per fleet size (3)")
    p.add_argument("--gap", type=float, default=1.0, help="seconds between updates (1)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds after connecting before measuring RSS (2)")
    p.add_argument("--connect-timeout", type=float, default=120.0, help="all agents connected within (120 s)")
    p.add_argument("--round-timeout", type=float, default=30.0, help="all agents acked an update within (30 s)")
    p.add_argument("--no-uvloop", action="store_true", help="load generators on the default asyncio loop")
    p.add_argument("--pause-before", type=float, default=0.0, help="sleep before connecting (to attach py-spy)")
    p.add_argument("--keep-data", action="store_true", help="keep the temporary data dirs and server logs")
    p.add_argument("--enforce-targets", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument for floe control-plane")
    args = p.parse_args(argv)
    try:
        args.agents = [int(x) for x in args.agents.split(",") if x.strip()]
    except ValueError:
        p.error("--agents: comma-separated integers")
    if not args.agents or min(args.agents) < 1 or args.processes < 1 or args.updates < 0:
        p.error("--agents and --processes must be >= 1, --updates >= 0")
    if args.streams_per_channel < 0 or args.datasets < 1:
        p.error("--streams-per-channel must be >= 0 and --datasets >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = format(int(time.time() * 1000) % 36**6, "x")
    tmp = Path(tempfile.mkdtemp(prefix="floe-bench-fleet-"))
    load_before = loadavg()
    started = time.time()
    results: list[FleetResult] = []
    sharing = {0: "one channel per process", 1: "one channel per agent"}.get(
        args.streams_per_channel, f"{args.streams_per_channel} agents per channel"
    )
    print(
        f"fleet sizes {args.agents}; {args.processes} load-generator processes; {sharing}; "
        f"{args.datasets} dataset(s); {args.updates} update(s) each; load average {load_before}",
        flush=True,
    )
    try:
        for n in args.agents:
            results.append(run_fleet(args, n, tmp, run_id))
    finally:
        if args.keep_data:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = loadavg()

    print()
    print_tables(results)
    met = targets(results)
    labels = {
        "rss_2000_under_1gib": "2,000 streams under 1 GiB RSS (VmHWM)",
        "ack_1000_99pct_1s_all_2s": "1,000 agents: 99 % acked within 1 s, all within 2 s (every update)",
    }
    print()
    for key, label in labels.items():
        verdict = {True: "MET", False: "NOT MET", None: "not measured"}[met[key]]
        print(f"Target {label}: {verdict}")
    print(f"load average before {load_before}, after {load_after} (1/5/15 min)")
    summary: dict[str, Any] = {
        "bench": "fleet_agents",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "processes": args.processes,
        "streams_per_channel": args.streams_per_channel,
        "datasets": args.datasets,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "targets": met,
        "results": [asdict(r) for r in results],
    }
    print("BENCH_JSON " + json.dumps(summary, separators=(",", ":")))
    failed = [r for r in results if r.failure or r.errors]
    if failed:
        for r in failed:
            print(f"benchmark invalid for N={r.agents}: {r.failure or r.errors}", file=sys.stderr)
        return 1
    if args.enforce_targets and False in met.values():
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
