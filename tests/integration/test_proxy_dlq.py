"""The proxy's DLQ through its two doors, on real ``floe agent proxy`` processes: the API port
(``/api/v1/dlq/stats|files|retry``) and the ``retry_dlq`` command over the control stream.

The receiver is ``ScriptedReceiver``, a small aiohttp server speaking the receiver's wire
contract (status + JSON error body), scripted to refuse batches (404, 410) and later take them;
the real receiver is tested on its own. Batches are put in the proxy's spool before it starts,
as a previous run would have left them.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.proxy.batcher import compress
from agents.runtime.spool import BatchMeta, Spool
from floe import Client
from floe.v1 import agent_pb2, common_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess, http_get
from tests.integration.scripted_receiver import Answer, ScriptedReceiver

KEY = "floe_s_dlqtest1_" + "d" * 43
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_post(address: str, path: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{address}{path}", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with _opener.open(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def lines(tag: str, count: int) -> bytes:
    return b"".join(b'{"n":%d,"tag":"%s"}\n' % (i, tag.encode()) for i in range(count))


def prefill(spool_dir: Path, batches: list[tuple[str, bytes]]) -> list[str]:
    """Append zstd batches of (dataset, ndjson) for tenant acme to the spool; their ids."""

    async def fill() -> list[str]:
        async with await Spool.open(spool_dir) as spool:
            return [
                await spool.append(
                    BatchMeta("acme", ds, "ndjson", "zstd", body.count(b"\n"), len(body), time.time()),
                    compress(body, "zstd"),
                )
                for ds, body in batches
            ]

    return asyncio.run(fill())


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    with ScriptedReceiver() as r:
        yield r


def stats(agent: AgentProcess) -> dict[str, Any]:
    status, body = http_get(agent.api, "/api/v1/dlq/stats")
    assert status == 200, body
    return dict(body)


def test_dlq_over_the_api_port(tmp_path: Path, receiver: ScriptedReceiver) -> None:
    receiver.script(default=Answer(404, "dataset not found"))
    agent = AgentProcess(
        "proxy",
        "edge-dlq",
        tmp_path,
        "--receivers",
        receiver.url,
        "--ingest-key",
        KEY,
        config_mode="local-only",
    )
    sent = [("fw", lines("fw0", 3)), ("fw", lines("fw1", 4)), ("fw", lines("fw2", 5)), ("web", lines("web", 6))]
    ids = prefill(agent.state_dir / "spool", sent)
    agent.start()
    try:
        eventually(lambda: stats(agent)["dlq"]["files"] == 4)
        s = stats(agent)
        assert s["queue"] == {"files": 0, "bytes": 0} and s["retry"]["files"] == 0
        assert s["dlq"]["bytes"] > 0
        acme = s["tenants"]["acme"]
        assert acme["dlq"]["files"] == 4
        assert acme["datasets"]["fw"]["dlq"]["files"] == 3 and acme["datasets"]["web"]["dlq"]["files"] == 1

        status, body = http_get(agent.api, "/api/v1/dlq/files?tenant=acme&dataset=fw")
        assert status == 200 and body["count"] == 3 and not body["truncated"]
        assert sorted(f["id"] for f in body["files"]) == ids[:3]
        first = next(f for f in body["files"] if f["id"] == ids[0])
        assert (first["tenant"], first["dataset"]) == ("acme", "fw")
        assert first["records"] == 3 and first["attempts"] == 0 and first["size"] > 0
        assert first["reason"] == f"{receiver.url} answered 404: dataset not found (NOT_FOUND)"
        assert first["created_at"].endswith("Z") and first["dead_lettered_at"].endswith("Z")
        _, everything = http_get(agent.api, "/api/v1/dlq/files")
        assert sorted(f["id"] for f in everything["files"]) == ids
        status, body = http_get(agent.api, "/api/v1/dlq/files?limit=2")  # oldest in the DLQ first
        assert body["files"] == everything["files"][:2] and body["truncated"]
        status, body = http_get(agent.api, "/api/v1/dlq/files?limit=0")
        assert status == 400 and body["error"]["code"] == "INVALID_ARGUMENT" and "limit" in body["error"]["message"]
        status, body = http_post(agent.api, "/api/v1/dlq/retry", b'{"ids": [1]}')
        assert status == 400 and body["error"]["message"].startswith("ids:")
        status, body = http_post(agent.api, "/api/v1/dlq/retry", b"{nope")
        assert status == 400 and "not JSON" in body["error"]["message"]

        # The receiver takes them now: retry one, then all; each arrives once, under its old id.
        receiver.script(default=Answer(200))
        assert http_post(agent.api, "/api/v1/dlq/retry", json.dumps({"ids": [ids[3]]}).encode()) == (200, {"moved": 1})
        eventually(lambda: [x.batch_id for x in receiver.delivered()] == [ids[3]])
        assert receiver.delivered()[0].records() == sent[3][1]
        assert http_post(agent.api, "/api/v1/dlq/retry", b"") == (200, {"moved": 3})
        eventually(lambda: len(receiver.delivered()) == 4)
        assert sorted(receiver.delivered_ids()) == ids and set(receiver.delivered_ids().values()) == {1}
        eventually(lambda: stats(agent)["dlq"]["files"] == 0 and stats(agent)["queue"]["files"] == 0)
        assert http_post(agent.api, "/api/v1/dlq/retry", b"{}") == (200, {"moved": 0})
    finally:
        agent.kill()


def test_retry_dlq_command_over_the_control_stream(
    tmp_path: Path,
    receiver: ScriptedReceiver,
    control_plane: ControlPlaneProcess,
    admin: Client,
    uid: Callable[[str], str],
) -> None:
    _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, display_name="proxy dlq test")
    receiver.script(default=Answer(410, "tenant suspended"))
    name = uid("edge")
    agent = AgentProcess(
        "proxy",
        name,
        tmp_path,
        "--receivers",
        receiver.url,
        control_url=control_plane.grpc,
        key=str(agent_key),
    )
    ids = prefill(agent.state_dir / "spool", [("fw", lines("a", 2)), ("web", lines("b", 3))])
    agent.start()
    try:
        eventually(lambda: stats(agent)["dlq"]["files"] == 2)
        # Without an ingest_key the proxy presents its own agent key.
        assert receiver.posts()[0].headers["Authorization"] == f"Bearer {agent_key}"
        eventually(lambda: admin.agents.get(name).connected)
        receiver.script(default=Answer(200))

        bad = admin.agents.send_command(
            name, agent_pb2.Command(retry_dlq=agent_pb2.RetryDlq(items=["nope"])), wait_seconds=10
        )
        assert not bad.ok and "retry_dlq.items" in bad.message
        one = admin.agents.send_command(
            name, agent_pb2.Command(retry_dlq=agent_pb2.RetryDlq(items=[ids[0]])), wait_seconds=10
        )
        assert one.ok and one.details["moved"] == "1", one
        eventually(lambda: [x.batch_id for x in receiver.delivered()] == [ids[0]])
        rest = admin.agents.send_command(name, agent_pb2.Command(retry_dlq=agent_pb2.RetryDlq()), wait_seconds=10)
        assert rest.ok and rest.details["moved"] == "1" and rest.message.startswith("Moved 1 batch(es)")
        eventually(lambda: sorted(receiver.delivered_ids()) == ids)
    finally:
        agent.kill()
