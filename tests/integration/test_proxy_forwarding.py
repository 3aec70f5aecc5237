"""The proxy's forwarding path: batcher -> disk spool -> forwarder -> receivers.

Most tests run the real ``Batcher``, ``Spool`` (in tmp_path) and ``Forwarder`` in one process and
feed them through the ``Sink``, against ``ScriptedReceiver``: a small aiohttp server speaking the
receiver's wire contract (status + JSON error body, Retry-After), scripted to inject the 503s,
429s, 4xx, outages and slow answers a real receiver gives only by accident. The real receiver
is tested on its own. Process-level tests run ``floe agent proxy`` against the same double.

Required behaviours: receiver down -> batches spool; receiver back -> all delivered, none twice;
4xx -> DLQ at once; 5xx/429 retried, then DLQ after retry_attempts; DLQ limit evicts oldest;
failover between two receivers; restart resumes from the spool; bodies decompress (with the
``zstd``/``gzip`` tools) to exactly the submitted NDJSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.proxy.batcher import Batcher, compress
from agents.proxy.forwarder import Forwarder
from agents.runtime.dlq_api import DlqApi
from agents.runtime.health import Component, HealthBoard
from agents.runtime.spool import BatchMeta, BatchState, Spool
from floe import Client
from floe.v1 import agent_pb2, common_pb2, datasets_pb2, health_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess, free_port, send_udp
from tests.integration.scripted_receiver import Answer, ScriptedReceiver, batch_headers_ok, decompress

HS = health_pb2.HealthStatus
FW = datasets_pb2.Dataset(name="tenants/acme/datasets/fw")
WEB = datasets_pb2.Dataset(name="tenants/acme/datasets/web")
KEY = "floe_s_testkey1_" + "k" * 43


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(fn(), 100))


async def until(check: Callable[[], Any], within: float = 20.0) -> None:
    """Poll ``check`` on the loop until it is truthy (it may raise AssertionError meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


def lines(start: int, count: int, tag: str = "") -> bytes:
    return b"".join(b'{"n":%d,"tag":"%s"}\n' % (i, tag.encode()) for i in range(start, start + count))


def noise(n: int, size: int = 1000) -> bytes:
    """One barely compressible record of ``size`` bytes, numbered ``n``."""
    text = base64.b64encode(os.urandom(size)).decode()[: size - 20]
    return b'{"n":%d,"r":"%s"}\n' % (n, text.encode())


@dataclass
class Pipe:
    spool: Spool
    health: HealthBoard
    forwarder: Forwarder
    batcher: Batcher

    def component(self, name: str) -> Component:
        return next(c for c in self.health.components() if c.name == name)

    def count(self, state: BatchState) -> int:
        return self.spool.stats().states[state].count


@asynccontextmanager
async def pipeline(
    directory: Path,
    receivers: list[str],
    *,
    max_records: int = 100,
    compression: str = "zstd",
    retry_attempts: int = 5,
    retry_interval: float = 0.3,
    post_timeout: float = 5.0,
    dlq_max_bytes: int = 0,
    max_age: float = 0.0,
    cleanup_interval: float = 60.0,
) -> AsyncIterator[Pipe]:
    spool = await Spool.open(directory, dlq_max_bytes=dlq_max_bytes, max_age=max_age)
    health = HealthBoard()
    forwarder = Forwarder(
        spool,
        health,
        receivers,
        KEY,
        workers=4,
        timeout=post_timeout,
        retry_attempts=retry_attempts,
        retry_interval=retry_interval,
        cleanup_interval=cleanup_interval,
    )
    await forwarder.start()
    batcher = Batcher(
        spool,
        health.component("batcher", "proxy.batcher"),
        max_bytes=1 << 20,
        max_records=max_records,
        max_age=0.05,
        compression=compression,
        on_spooled=forwarder.wake,
    )
    try:
        yield Pipe(spool, health, forwarder, batcher)
    finally:
        await batcher.close(1.0)
        await forwarder.stop(0.5)
        await spool.close()


@pytest.fixture
def receiver() -> Any:
    made: list[ScriptedReceiver] = []

    def make(*, start: bool = True) -> ScriptedReceiver:
        r = ScriptedReceiver()
        made.append(r)
        return r.start() if start else r

    yield make
    for r in made:
        r.stop()


MakeReceiver = Callable[..., ScriptedReceiver]


# -- outage and recovery -----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_receiver_down_batches_spool_then_all_delivered_once(
    tmp_path: Path, receiver: MakeReceiver, compression: str
) -> None:
    r = receiver(start=False)  # its port refuses connections until it starts

    async def scenario() -> None:
        async with pipeline(tmp_path, [r.url], compression=compression) as p:
            sent = {"fw": b"", "web": b""}
            for i in range(20):
                for ds, name in ((FW, "fw"), (WEB, "web")):
                    buf = lines(i * 50, 50, name)
                    sent[name] += buf
                    assert p.batcher.submit(ds, buf, 50)
                await asyncio.sleep(0.01)
            await p.batcher.flush_all()
            spooled = p.spool.stats().appended
            assert spooled >= 2
            forwarder = p.component("forwarder")
            await until(lambda: forwarder.status == HS.HEALTH_STATUS_DEGRADED)
            assert "no receiver takes batches now" in forwarder.message and r.url in forwarder.message
            # Waiting for a receiver costs no attempts: nothing is retrying, nothing dead-lettered.
            await asyncio.sleep(0.5)
            assert p.count(BatchState.QUEUE) == spooled
            assert p.count(BatchState.RETRY) == p.count(BatchState.DLQ) == 0

            await asyncio.to_thread(r.start)
            await until(lambda: p.count(BatchState.QUEUE) == 0 and len(r.delivered()) == spooled)
            ids = r.delivered_ids()
            assert len(ids) == spooled and set(ids.values()) == {1}, ids  # none twice
            for name in ("fw", "web"):
                posts = [x for x in r.delivered() if x.path == f"/acme/{name}"]
                got = b"".join(x.records() for x in sorted(posts, key=lambda x: x.batch_id))
                assert got == sent[name]  # exactly the submitted NDJSON, in order
            for post in r.delivered():
                assert post.headers["Content-Encoding"] == compression
                assert post.headers["Authorization"] == f"Bearer {KEY}"
                assert batch_headers_ok(post)
                assert int(post.headers["X-Floe-Original-Bytes"]) == len(post.records())
                assert int(post.headers["X-Floe-Record-Count"]) == post.records().count(b"\n")
                assert abs(int(post.headers["X-Floe-Created-At"]) / 1e9 - time.time()) < 60
            await until(lambda: forwarder.events_out == 2000)  # settled after the receiver answered
            assert forwarder.status == HS.HEALTH_STATUS_HEALTHY

    run(scenario)


# -- answers of the receiver -------------------------------------------------------------------


def test_permanent_4xx_dead_letters_at_once(tmp_path: Path, receiver: MakeReceiver) -> None:
    statuses = [400, 401, 404, 410, 413]
    r = receiver().script(*(Answer(s, f"refused with {s}") for s in statuses))

    async def scenario() -> None:
        async with pipeline(tmp_path, [r.url]) as p:

            def dead_letters(n: int) -> Callable[[], bool]:
                return lambda: p.count(BatchState.DLQ) == n

            for i in range(len(statuses)):
                assert p.batcher.submit(FW, lines(i, 1), 1)
                await p.batcher.flush_all()
                await until(dead_letters(i + 1))
            dead = p.spool.dlq_list()
            assert [b.attempts for b in dead] == [0] * len(statuses)
            reasons = [b.dlq_reason for b in dead]
            for status, reason in zip(statuses, reasons, strict=True):
                assert f"{r.url} answered {status}: refused with {status}" in reason, reason
            assert "(UNAUTHENTICATED)" in reasons[1]
            assert len(r.posts()) == len(statuses)  # never retried
            assert p.component("forwarder").dropped["dead_lettered"] == len(statuses)

    run(scenario)


def test_5xx_is_retried_with_the_same_id_then_dead_lettered(tmp_path: Path, receiver: MakeReceiver) -> None:
    r = receiver().script(Answer(503, "spool full"), Answer(500, "oops"))

    async def scenario() -> None:
        async with pipeline(tmp_path, [r.url], retry_attempts=3, retry_interval=0.2) as p:
            # Two failures, then the receiver takes it: delivered, one id throughout.
            assert p.batcher.submit(FW, lines(0, 3), 3)
            await until(lambda: len(r.delivered()) == 1)
            assert [x.status for x in r.posts()] == [503, 500, 200]
            assert len({x.batch_id for x in r.posts()}) == 1

            # A receiver that keeps failing: exactly retry_attempts POSTs, then the DLQ.
            r.script(default=Answer(503, "still starting"))
            assert p.batcher.submit(FW, lines(3, 2), 2)
            await until(lambda: p.count(BatchState.DLQ) == 1)
            assert len(r.posts(503)) == 1 + 3
            (dead,) = p.spool.dlq_list()
            assert dead.dlq_reason.startswith("Delivery failed 3 times; the last error: ")
            assert "answered 503: still starting" in dead.dlq_reason
            assert dead.meta.records == 2

    run(scenario)


def test_429_honours_retry_after(tmp_path: Path, receiver: MakeReceiver) -> None:
    r = receiver().script(Answer(429, "slow down", headers={"Retry-After": "1"}))

    async def scenario() -> None:
        async with pipeline(tmp_path, [r.url], retry_attempts=2, retry_interval=0.1) as p:
            assert p.batcher.submit(FW, lines(0, 1), 1)
            await until(lambda: len(r.delivered()) == 1)
            first, second = r.posts()
            assert first.status == 429 and second.status == 200
            # Retry-After wins over the 0.1 s retry interval.
            assert second.at - first.at >= 0.95, second.at - first.at

    run(scenario)


# -- several receivers -------------------------------------------------------------------------


def test_failover_between_two_receivers(tmp_path: Path, receiver: MakeReceiver) -> None:
    a, b = receiver(), receiver()

    async def scenario() -> None:
        # One attempt only: a batch charged for another receiver's failure would be dead-lettered.
        async with pipeline(tmp_path, [a.url, b.url], retry_attempts=1, post_timeout=1.0) as p:
            sent = 0

            async def phase(batches: int) -> None:
                nonlocal sent
                for _ in range(batches):
                    assert p.batcher.submit(FW, lines(sent, 1), 1)
                    sent += 1
                    await p.batcher.flush_all()
                await until(lambda: len(a.delivered()) + len(b.delivered()) == sent)
                assert p.count(BatchState.DLQ) == 0 and p.count(BatchState.RETRY) == 0

            await phase(10)  # both healthy: round-robin
            assert len(a.delivered()) >= 3 and len(b.delivered()) >= 3

            for trouble in ("503", "slow", "down"):
                before = len(b.delivered())
                if trouble == "503":
                    a.script(default=Answer(503, "overloaded"))
                elif trouble == "slow":
                    a.script(default=Answer(200, delay=3.0))  # past the 1 s timeout
                else:
                    await asyncio.to_thread(a.stop)
                await phase(6)
                assert len(b.delivered()) - before >= 5, trouble
                forwarder = p.component("forwarder")
                assert forwarder.status == HS.HEALTH_STATUS_DEGRADED and a.url in forwarder.message
                assert b.url not in forwarder.message

            ids = a.delivered_ids() + b.delivered_ids()
            assert len(ids) == sent and set(ids.values()) == {1}
            got = sorted(
                json.loads(line)["n"] for x in [*a.delivered(), *b.delivered()] for line in x.records().split()
            )
            assert got == list(range(sent))

    run(scenario)


# -- the DLQ -----------------------------------------------------------------------------------


def test_dlq_limit_evicts_the_oldest(tmp_path: Path, receiver: MakeReceiver) -> None:
    r = receiver().script(default=Answer(404, "no such dataset"))

    async def scenario() -> None:
        # ~760-byte compressed batches; room for three of them.
        async with pipeline(tmp_path, [r.url], dlq_max_bytes=2500) as p:

            def settled(n: int) -> Callable[[], bool]:
                return lambda: len(r.posts()) == n and p.spool.stats().claimed == 0

            for n in range(6):
                assert p.batcher.submit(FW, noise(n), 1)
                await p.batcher.flush_all()
                await until(settled(n + 1))
            kept = p.spool.dlq_list()
            assert len(kept) == 3
            assert [json.loads(decompress(await p.spool.read(b), "zstd"))["n"] for b in kept] == [3, 4, 5]
            assert p.spool.stats().evicted == 3
            await until(lambda: p.component("spool").dropped.get("dlq_evicted") == 3)  # refreshed each second

    run(scenario)


def test_batches_past_the_max_age_go_to_the_dlq(tmp_path: Path, receiver: MakeReceiver) -> None:
    r = receiver(start=False)

    async def scenario() -> None:
        async with pipeline(tmp_path, [r.url], max_age=0.5, cleanup_interval=0.2) as p:
            assert p.batcher.submit(FW, lines(0, 2), 2)
            await until(lambda: p.count(BatchState.DLQ) == 1)
            (dead,) = p.spool.dlq_list()
            assert dead.dlq_reason == "older than max_age (0.5 s)"

    run(scenario)


def test_dlq_retry_delivers(tmp_path: Path, receiver: MakeReceiver) -> None:
    r = receiver().script(default=Answer(410, "tenant suspended"))

    async def scenario() -> None:
        async with pipeline(tmp_path, [r.url]) as p:
            for n in range(4):
                assert p.batcher.submit(FW, lines(n, 1), 1)
                await p.batcher.flush_all()
            await until(lambda: p.count(BatchState.DLQ) == 4)
            dead = [b.id for b in p.spool.dlq_list()]
            r.script(default=Answer(200))
            api = DlqApi(lambda: p.spool, on_moved=p.forwarder.wake)
            assert await api.retry(p.spool, [dead[0]]) == 1
            await until(lambda: len(r.delivered()) == 1)
            assert r.delivered()[0].batch_id == dead[0]
            assert await api.retry(p.spool, None) == 3
            await until(lambda: len(r.delivered()) == 4)
            assert sorted(r.delivered_ids()) == dead  # the ids they had; nothing new, nothing twice
            assert p.count(BatchState.DLQ) == p.count(BatchState.QUEUE) == 0

    run(scenario)


# -- restarts ----------------------------------------------------------------------------------


def test_stop_releases_in_flight_batches_and_a_new_forwarder_resumes(tmp_path: Path, receiver: MakeReceiver) -> None:
    r = receiver().script(default=Answer(200, delay=5.0))

    async def scenario() -> None:
        async with pipeline(tmp_path, [r.url], post_timeout=30) as p:
            for n in range(3):
                assert p.batcher.submit(FW, lines(n, 1), 1)
                await p.batcher.flush_all()
            await until(lambda: p.spool.stats().claimed == 3)  # all three POSTs in flight
        # Stopped mid-POST: the batches are still on disk, and queued again.
        spooled = sorted(f.stem for f in (tmp_path / "batches").glob("*.batch"))
        assert len(spooled) == 3
        r.script(default=Answer(200))
        async with pipeline(tmp_path, [r.url]) as p:
            await until(lambda: p.count(BatchState.QUEUE) == 0 and p.spool.stats().claimed == 0)
        # Sent again under the same ids (the receiver overwrites, never duplicates).
        assert sorted({x.batch_id for x in r.delivered()}) == spooled

    run(scenario)


def prefill(spool_dir: Path, batches: list[tuple[str, bytes]]) -> list[str]:
    """Append zstd batches of (dataset, ndjson) to the spool in ``spool_dir``; their ids."""

    async def fill() -> list[str]:
        async with await Spool.open(spool_dir) as spool:
            ids = []
            for dataset, records in batches:
                meta = BatchMeta("acme", dataset, "ndjson", "zstd", records.count(b"\n"), len(records), time.time())
                ids.append(await spool.append(meta, compress(records, "zstd")))
            return ids

    return asyncio.run(fill())


def proxy(tmp_path: Path, name: str, *receivers: ScriptedReceiver, extra: tuple[str, ...] = ()) -> AgentProcess:
    return AgentProcess(
        "proxy",
        name,
        tmp_path / "agents",
        "--receivers",
        ",".join(r.url for r in receivers),
        "--ingest-key",
        KEY,
        "--retry-interval",
        "1s",
        *extra,
        config_mode="local-only",
    )


def forwarder_health(agent: AgentProcess) -> dict[str, Any]:
    comps = agent.healthz()["health"]["components"]
    return next(c for c in comps if c["name"] == "forwarder")


def test_proxy_process_restart_resumes_from_the_spool(tmp_path: Path, receiver: MakeReceiver) -> None:
    r = receiver(start=False)
    agent = proxy(tmp_path, "edge-resume", r)
    sent = [("fw" if i % 2 else "web", lines(i * 10, 10, f"b{i}")) for i in range(8)]
    ids = prefill(agent.state_dir / "spool", sent)
    agent.start()
    try:
        # The receiver is away: the proxy reports it and keeps every batch.
        health = eventually(lambda: (h := forwarder_health(agent))["status"] == "HEALTH_STATUS_DEGRADED" and h)
        assert r.url in health["message"]
        assert agent.stop() == 0
        assert len(list((agent.state_dir / "spool" / "batches").glob("*.batch"))) == len(ids)

        r.start()
        agent.start()
        eventually(lambda: len(r.delivered()) == len(ids), timeout=30)
        assert sorted(r.delivered_ids()) == ids and set(r.delivered_ids().values()) == {1}
        by_id = {x.batch_id: x for x in r.delivered()}
        for batch_id, (dataset, records) in zip(ids, sent, strict=True):
            assert by_id[batch_id].path == f"/acme/{dataset}"
            assert by_id[batch_id].records() == records
        eventually(lambda: not list((agent.state_dir / "spool" / "batches").glob("*.batch")))
        eventually(lambda: forwarder_health(agent)["status"] == "HEALTH_STATUS_HEALTHY")
    finally:
        agent.kill()


def test_udp_syslog_reaches_the_receiver(tmp_path: Path, receiver: MakeReceiver) -> None:
    """End to end through a real proxy process: UDP syslog in, compressed NDJSON out, each
    record carrying its message."""
    r = receiver()
    port = free_port(socket.SOCK_DGRAM)
    dataset = {
        "name": "tenants/acme/datasets/fw",
        "source": {"type": "SOURCE_TYPE_SYSLOG_UDP", "bindHost": "127.0.0.1", "port": port},
    }
    config = tmp_path / "proxy.yaml"
    config.write_text(json.dumps({"datasets": [dataset]}))
    agent = proxy(tmp_path, "edge-udp", r, extra=("--config", str(config), "--batch-max-age", "200ms"))
    agent.start()
    try:
        eventually(lambda: any(c["name"].startswith("source/") for c in agent.healthz()["health"]["components"]))
        for i in range(100):
            send_udp(port, b"<13>Jan  1 00:00:00 host test: message %d\n" % i)
        eventually(lambda: sum(len(x.records().splitlines()) for x in r.delivered()) == 100, timeout=20)
        records = [json.loads(line) for x in r.delivered() for line in x.records().splitlines()]
        assert sorted(rec["message"] for rec in records) == sorted(f"message {i}" for i in range(100))
        assert {rec["hostname"] for rec in records} == {"host"}
        assert all(x.path == "/acme/fw" and x.headers["Content-Encoding"] == "zstd" for x in r.delivered())
    finally:
        agent.kill()


def test_drain_flushes_buffered_records_to_the_receiver(
    tmp_path: Path,
    receiver: MakeReceiver,
    control_plane: ControlPlaneProcess,
    admin: Client,
    uid: Callable[[str], str],
) -> None:
    """``drain`` over the control stream closes the listeners and spools what they buffered,
    without waiting for the batch max age (an hour here)."""
    r = receiver()
    _, key = admin.keys.create(common_pb2.ROLE_AGENT, display_name="proxy drain test")
    port = free_port(socket.SOCK_DGRAM)
    dataset = {
        "name": "tenants/acme/datasets/fw",
        "source": {"type": "SOURCE_TYPE_SYSLOG_UDP", "bindHost": "127.0.0.1", "port": port},
    }
    config = tmp_path / "proxy.yaml"
    config.write_text(json.dumps({"datasets": [dataset]}))
    name = uid("edge")
    agent = AgentProcess(
        "proxy",
        name,
        tmp_path / "agents",
        "--receivers",
        r.url,
        "--config",
        str(config),
        "--batch-max-age",
        "1h",
        control_url=control_plane.grpc,
        key=str(key),
        config_mode="hybrid",
    )
    agent.start()
    try:
        source = f"source/{dataset['name']}"

        def received() -> int:
            comps = agent.healthz()["health"]["components"]
            return int(next((c.get("events_in", 0) for c in comps if c["name"] == source), 0))

        eventually(lambda: admin.agents.get(name).connected)
        eventually(lambda: any(c["name"] == source for c in agent.healthz()["health"]["components"]))
        for i in range(10):
            send_udp(port, b"<13>Jan  1 00:00:00 host test: drained %d\n" % i)
        eventually(lambda: received() == 10)
        assert r.posts() == []  # still in the open batch

        result = admin.agents.send_command(name, agent_pb2.Command(drain=agent_pb2.Drain()), wait_seconds=15)
        assert result.ok and result.message.startswith("Drained"), result
        assert result.details["unflushed_records"] == "0"
        eventually(lambda: sum(len(x.records().splitlines()) for x in r.delivered()) == 10)
    finally:
        agent.kill()
