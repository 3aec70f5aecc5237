#!/usr/bin/env python3
"""Benchmark: the query service against plain DuckDB on the same Parquet files and SQL.

Generates ``--rows`` syslog-like records (default 5M) as zstd Parquet in the packer's Hive
layout over ``--hours`` hours, then times four queries — count(*), a group-by, a time-range
top-N and a text search (``message LIKE '%...%'``) — three ways, ``--repeat`` times each:

- ``duckdb``: plain DuckDB, ``read_parquet`` over the dataset's glob, result fetched as Arrow;
- ``engine``: the query agent's engine in this process (guard, locked-down session, pruning,
  Arrow IPC chunks), no gRPC;
- ``service``: a real control plane and ``floe agent query`` process, called with the SDK as an
  application would: straight to the agent under a grant from the control plane (one gRPC hop);
- ``via-cp``: the same service with ``direct_queries=False``: through the control plane (two
  gRPC hops, authorization, forwarding signature), as the CLI, grpcurl and the dashboard call it.

The paths take turns within each repetition, so load from other work on the machine falls on all
of them alike; one more, ``hops``, times a call that does no work (``GetLimits``) along the two
gRPC hops through the control plane, the floor of any call forwarded by it. Prints the median and
range in ms, rows/s (rows in the files the query covers / median time) and the ratio to DuckDB,
plus the service's own elapsed time per call (``in-agent``, from its summary: the difference to
``service`` is the two gRPC hops and the SDK). Target (issue 7): service <= 1.15x DuckDB. Both
sides use the same number of DuckDB threads (``--threads``), the same files and the same SQL.

    python scripts/bench/query.py
    python scripts/bench/query.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.query.engine import Engine, QueryJob
from agents.query.session import Limits
from agents.runtime.layout import parquet_key
from agents.runtime.objectstore import LocalStore
from floe import Client
from scripts.bench._common import Server

TENANT, DATASET = "bench", "syslog"
BASE = datetime(2024, 5, 1, tzinfo=UTC)
WORDS = np.array(
    [
        "accepted", "failed", "password", "session", "opened", "closed", "connection", "timeout",
        "error", "user", "root", "from", "port", "disk", "full",
    ]
)  # fmt: skip
QUERIES = {
    "count": ("SELECT count(*) AS n FROM syslog", None),
    "group-by": ("SELECT host, count(*) AS n, max(severity) AS worst FROM syslog GROUP BY host", None),
    "range-top-n": (
        "SELECT timestamp, host, message FROM syslog ORDER BY timestamp DESC LIMIT 100",
        (BASE + timedelta(hours=2), BASE + timedelta(hours=4)),
    ),
    "text-search": ("SELECT count(*) AS n FROM syslog WHERE message LIKE '%timeout error%'", None),
}


def generate(root: Path, rows: int, hours: int) -> int:
    rng = np.random.default_rng(7)
    hosts = np.array([f"host-{i:03d}" for i in range(200)])
    apps = np.array(["sshd", "cron", "kernel", "nginx", "postfix", "systemd", "sudo", "dhclient"])
    per = rows // hours
    for h in range(hours):
        start = int((BASE + timedelta(hours=h)).timestamp() * 1e6)
        ts = start + np.sort(rng.integers(0, 3_600_000_000, per))
        w = WORDS[rng.integers(0, len(WORDS), (per, 4))]
        message = np.char.add(np.char.add(np.char.add(w[:, 0], " "), np.char.add(w[:, 1], " ")), w[:, 2])
        table = pa.table(
            {
                "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "host": hosts[rng.integers(0, len(hosts), per)],
                "app": apps[rng.integers(0, len(apps), per)],
                "severity": rng.integers(0, 8, per).astype(np.int64),
                "facility": rng.integers(0, 24, per).astype(np.int64),
                "message": message,
            }
        )
        path = root / parquet_key(TENANT, DATASET, (BASE + timedelta(hours=h)).strftime("%Y%m%d%H"), f"{h:04d}")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd", row_group_size=512 * 1024)
    return per * hours


Runner = Callable[[str, tuple[datetime, datetime] | None], object]


def plain_duckdb(root: Path, threads: int, metadata_cache: bool = False) -> Runner:
    """Plain DuckDB: one connection with the service's ``threads``, its other settings DuckDB's
    defaults (no local file cache); with ``metadata_cache`` it also caches Parquet footers, as
    the service does."""
    glob = str(root / TENANT / DATASET / "data/parquet/**/*.parquet")
    con = duckdb.connect(config={"threads": threads})
    if metadata_cache:
        con.execute("SET parquet_metadata_cache=true")
    src = f"read_parquet('{glob}', hive_partitioning=true, hive_types_autocast=false, union_by_name=true)"

    def run(sql: str, window: tuple[datetime, datetime] | None) -> object:
        view = src
        if window is not None:
            view = (
                f"(SELECT * FROM {src} WHERE timestamp >= '{window[0].isoformat()}'::TIMESTAMPTZ "  # noqa: S608
                f"AND timestamp < '{window[1].isoformat()}'::TIMESTAMPTZ)"
            )
        return con.sql(sql.replace("FROM syslog", f"FROM {view} AS syslog")).to_arrow_table()

    return run


def engine_path(engine: Engine, loop: asyncio.AbstractEventLoop) -> Runner:
    def run(sql: str, window: tuple[datetime, datetime] | None) -> object:
        job = QueryJob(TENANT, DATASET, sql, "", window[0] if window else None, window[1] if window else None,
                       0, False, single=True)  # fmt: skip

        async def drain() -> int:
            size = 0
            async for response in engine.execute(job):
                size += len(response.chunk.arrow_ipc) + len(response.result.chunk.arrow_ipc)
            return size

        return loop.run_until_complete(drain())

    return run


def engine_settled(engine: Engine) -> Callable[[], None]:
    """Waits (untimed) until the engine has rolled its last query back and put its database back,
    which its worker thread does after the last response: otherwise that work would run during
    the next path's measurement."""

    def settle() -> None:
        deadline = time.monotonic() + 10
        while not engine._databases._idle.get(f"{TENANT}/{DATASET}") and time.monotonic() < deadline:
            time.sleep(0.0005)

    return settle


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--hours", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep data in this directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="floe-bench-query-"))
    data = args.keep or work / "parquet"
    try:
        if not (data / TENANT).exists():
            t = time.perf_counter()
            total = generate(data, args.rows, args.hours)
            print(f"generated {total:,} rows in {args.hours} hourly files in {time.perf_counter() - t:.1f}s")
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in data.rglob("*.parquet"))
        covered = {name: total if w is None else total * 2 // args.hours for name, (_, w) in QUERIES.items()}
        limits = Limits(0, 10_000_000, True, 600.0, "4GiB", args.threads, 1)
        engine = Engine(LocalStore(data), limits, work / "spill", None)
        loop = asyncio.new_event_loop()
        try:
            with Service(work, data, args.threads) as service:
                paths = {
                    "duckdb": plain_duckdb(data, args.threads),
                    "duckdb+mc": plain_duckdb(data, args.threads, metadata_cache=True),
                    "engine": engine_path(engine, loop),
                    "service": service.run,
                    "via-cp": service.forwarded,
                    "hops": service.hops,
                }
                results = measure(paths, args.repeat, service, {"engine": engine_settled(engine)})
        finally:
            loop.run_until_complete(engine.close())
            loop.close()
        print(f"\n{total:,} rows, {args.threads} DuckDB threads, median of {args.repeat} (range) in ms")
        print("paths interleaved per repetition; in-agent: the service's own elapsed time (its summary)\n")
        print("duckdb+mc: plain DuckDB caching Parquet footers, as the service does\n")
        print(f"{'query':<12} {'path':<9} {'median':>8} {'range':>17} {'rows/s':>14} {'vs duckdb':>9} {'vs +mc':>7}")
        for name, by_path in results.items():
            base = statistics.median(by_path["duckdb"])
            cached = statistics.median(by_path["duckdb+mc"])
            for path, times in by_path.items():
                med = statistics.median(times)
                spread = f"{min(times) * 1e3:.1f}-{max(times) * 1e3:.1f}"
                if path == "hops":
                    print(f"{name:<12} {path:<9} {med * 1e3:8.1f} {spread:>17} {'-':>14} {'-':>9} {'-':>7}")
                    continue
                rate = covered[name] / med
                print(
                    f"{name:<12} {path:<9} {med * 1e3:8.1f} {spread:>17} {rate:14,.0f} "
                    f"{med / base:8.2f}x {med / cached:6.2f}x"
                )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(
    paths: dict[str, Runner], repeat: int, service: Service, settle: dict[str, Callable[[], None]]
) -> dict[str, dict[str, list[float]]]:
    """Each query ``repeat`` times on every path, the paths taking turns within a repetition in a
    shuffled order, so load from other work on the machine falls on all of them alike. One warm-up run each first
    (page cache, footers, the service's per-dataset database). ``settle[path]`` runs untimed
    after each run of that path."""
    results: dict[str, dict[str, list[float]]] = {}
    for name, (sql, window) in QUERIES.items():
        times: dict[str, list[float]] = {path: [] for path in paths}
        for path, run in paths.items():
            run(sql, window)
            settle.get(path, lambda: None)()
        service.inside.clear()
        for rep in range(repeat):
            # A new order each repetition: a path run right after another that used the same
            # processes finds them awake, one run after idle pays their wake-up.
            order = list(paths.items())
            random.Random(rep).shuffle(order)
            for path, run in order:
                t = time.perf_counter()
                run(sql, window)
                times[path].append(time.perf_counter() - t)
                settle.get(path, lambda: None)()
        times["in-agent"] = list(service.inside)
        results[name] = times
    return results


class Service:
    """A real control plane and ``floe agent query`` process; ``run`` calls it with the SDK
    (straight to the agent under a grant), ``forwarded`` through the control plane."""

    def __init__(self, work: Path, data: Path, threads: int) -> None:
        self.work = work
        self.data = data
        self.threads = threads
        self.server = Server(work / "cp", ["--agent-heartbeat-interval", "2s"])
        self.agent: subprocess.Popen[bytes] | None = None
        self.admin: Client | None = None
        self.forwarding: Client | None = None
        self.channel: grpc.Channel | None = None
        #: The agent's own elapsed time of each call (from its summary).
        self.inside: list[float] = []

    def __enter__(self) -> Service:
        from floe.v1 import common_pb2, datasets_pb2, keys_pb2

        self.server.start()
        try:
            self.admin = admin = Client(self.server.grpc, api_key=self.server.admin_key, retries=0, timeout=600)
            admin.tenants.create(TENANT)
            source = datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_UDP, port=5514)
            admin.datasets.create(TENANT, DATASET, datasets_pb2.Dataset(source=source))
            _, key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
            key_file = self.work / "agent.key"
            key_file.write_text(key)
            argv = [
                sys.executable, "-m", "floe.cli", "agent", "query",
                "--agent-name", "bench-query", "--data-dir", str(self.work / "agents"),
                "--api-listen", "127.0.0.1:0", "--query-grpc-listen", "127.0.0.1:0",
                "--control-url", self.server.grpc, "--api-key-file", str(key_file),
                "--parquet-store", str(self.data), "--log-level", "warning",
                "--query-max-time-range", "0", "--query-max-rows", "10000000",
                "--query-threads", str(self.threads), "--query-memory-limit", "4GiB",
            ]  # fmt: skip
            self.channel = grpc.insecure_channel(self.server.grpc)
            self.forwarding = Client(
                self.server.grpc, api_key=self.server.admin_key, retries=0, timeout=600, direct_queries=False
            )
            log = (self.work / "agent.log").open("wb")
            self.agent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
            deadline = time.monotonic() + 60
            while True:
                try:
                    admin.query.execute("SELECT 1 AS x FROM syslog LIMIT 1", dataset=f"{TENANT}/{DATASET}")
                    break
                except Exception:
                    if time.monotonic() > deadline or self.agent.poll() is not None:
                        raise
                    time.sleep(0.2)
            # Queries asked before the agent connected went through the control plane, and the
            # client does so for a moment after such a refusal: wait until it can go direct.
            routes = admin.query.routes
            while routes.route_blocking(f"tenants/{TENANT}/datasets/{DATASET}") is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("the SDK did not get a query grant")
                time.sleep(0.2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def run(self, sql: str, window: tuple[datetime, datetime] | None) -> object:
        assert self.admin is not None
        result = self.admin.query.execute(
            sql, dataset=f"{TENANT}/{DATASET}", start=window[0] if window else None, end=window[1] if window else None
        )
        self.inside.append(result.summary.elapsed.ToNanoseconds() / 1e9)
        return result

    def forwarded(self, sql: str, window: tuple[datetime, datetime] | None) -> object:
        assert self.forwarding is not None
        return self.forwarding.query.execute(
            sql, dataset=f"{TENANT}/{DATASET}", start=window[0] if window else None, end=window[1] if window else None
        )

    def hops(self, sql: str, window: tuple[datetime, datetime] | None) -> object:
        """``GetLimits`` through the control plane to the agent: both hops, no query work."""
        from floe.v1 import query_pb2, query_pb2_grpc

        assert self.channel is not None
        metadata = (("authorization", f"Bearer {self.server.admin_key}"),)
        return query_pb2_grpc.QueryServiceStub(self.channel).GetLimits(query_pb2.GetLimitsRequest(), metadata=metadata)

    def __exit__(self, *exc: object) -> None:
        if self.channel is not None:
            self.channel.close()
        for client in (self.admin, self.forwarding):
            if client is not None:
                client.close()
        if self.agent is not None:
            self.agent.terminate()
            self.agent.wait(15)
        self.server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
