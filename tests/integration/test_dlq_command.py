"""Dead-letter queues through the control plane: ``list_dlq`` and ``retry_dlq`` sent by
``FleetService.SendCommand`` to a real ``floe agent proxy``, through the SDK
(``client.agents.dlq`` / ``retry_dlq``) and the CLI (``floe agents dlq`` / ``retry-dlq``).

The proxy forwards to ``ScriptedReceiver`` (the receiver's wire contract), which refuses every
batch with a 404 until the test lets it take them; the batches were left in the proxy's spool
as a previous run would have, for two tenants and three datasets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from agents.proxy.batcher import compress
from agents.runtime.spool import BatchMeta, Spool
from floe import Client
from floe.errors import RpcError
from floe.v1 import agent_pb2, common_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess
from tests.integration.scripted_receiver import Answer, ScriptedReceiver
from tests.upkit import clean_env, run_floe


def lines(tag: str, count: int) -> bytes:
    return b"".join(b'{"n":%d,"tag":"%s"}\n' % (i, tag.encode()) for i in range(count))


def prefill(spool_dir: Path, batches: list[tuple[str, str, bytes]]) -> list[str]:
    """Append zstd batches of (tenant, dataset, ndjson) to the spool, one second apart in age;
    their ids in order."""

    async def fill() -> list[str]:
        start = time.time() - len(batches)
        async with await Spool.open(spool_dir) as spool:
            return [
                await spool.append(
                    BatchMeta(tenant, ds, "ndjson", "zstd", body.count(b"\n"), len(body), start + i),
                    compress(body, "zstd"),
                )
                for i, (tenant, ds, body) in enumerate(batches)
            ]

    # On a thread of its own: a browser test in the same session may hold this thread's loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fill()).result()


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    with ScriptedReceiver() as r:
        yield r


def dlq_size(admin: Client, name: str) -> int:
    return sum(c.dlq_size for c in admin.agents.get(name).last_health.components)


def test_list_and_retry_dlq_through_the_control_plane(
    tmp_path: Path,
    receiver: ScriptedReceiver,
    control_plane: ControlPlaneProcess,
    admin: Client,
    uid: Callable[[str], str],
) -> None:
    _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, display_name="dlq command test")
    receiver.script(default=Answer(404, "dataset not found"))
    name = uid("edge-dlq")
    agent = AgentProcess(
        "proxy", name, tmp_path, "--receivers", receiver.url, control_url=control_plane.grpc, key=str(agent_key)
    )
    sent = [
        ("acme", "fw", lines("fw0", 3)),
        ("acme", "fw", lines("fw1", 4)),
        ("acme", "web", lines("web", 5)),
        ("beta", "fw", lines("beta", 6)),
        ("acme", "fw", lines("fw2", 7)),
    ]
    ids = prefill(agent.state_dir / "spool", sent)
    agent.start()
    try:
        eventually(lambda: admin.agents.get(name).connected)
        eventually(lambda: len(admin.agents.dlq(name)) == 5, timeout=20)
        items: list[agent_pb2.DlqItem] = admin.agents.dlq(name)
        # Oldest in the DLQ first (the forwarder's workers refuse them in any order).
        order = [i.id for i in items]
        assert sorted(order) == ids
        assert [i.dead_letter_time.ToNanoseconds() for i in items] == sorted(
            i.dead_letter_time.ToNanoseconds() for i in items
        )

        def in_order(*wanted: int) -> list[str]:
            return [i for i in order if i in {ids[w] for w in wanted}]

        first = next(i for i in items if i.id == ids[0])
        assert (first.tenant, first.dataset) == ("tenants/acme", "tenants/acme/datasets/fw")
        assert first.records == 3 and first.original_bytes == len(sent[0][2]) and first.size_bytes > 0
        assert first.attempts == 0 and first.last_error == ""  # refused at once, never retried
        assert first.reason == f"{receiver.url} answered 404: dataset not found (NOT_FOUND)"
        assert (first.data_hint, first.content_encoding) == ("ndjson", "zstd")
        assert first.create_time.ToSeconds() < first.dead_letter_time.ToSeconds() <= time.time() + 1

        # Filters: a tenant (bare or as a name), a dataset (bare or as a name), a limit.
        assert [i.id for i in admin.agents.dlq(name, tenant="acme")] == in_order(0, 1, 2, 4)
        assert [i.id for i in admin.agents.dlq(name, tenant="tenants/acme", dataset="fw")] == in_order(0, 1, 4)
        assert [i.id for i in admin.agents.dlq(name, dataset="tenants/beta/datasets/fw")] == [ids[3]]
        assert [i.id for i in admin.agents.dlq(name, dataset="fw")] == in_order(0, 1, 3, 4)
        assert admin.agents.dlq(name, tenant="nobody") == []
        # The totals count every match, listed or not.
        raw = admin.agents.send_command(
            name, agent_pb2.Command(list_dlq=agent_pb2.ListDlq(tenant="acme", limit=2)), wait_seconds=10
        )
        assert raw.ok and [i.id for i in raw.dlq_items] == in_order(0, 1, 2, 4)[:2]
        assert raw.dlq_totals.count == 4
        assert raw.dlq_totals.size_bytes == sum(i.size_bytes for i in items if i.tenant == "tenants/acme")
        assert raw.message.startswith("4 dead-lettered batch(es) of acme,") and "the oldest 2 are listed" in raw.message

        # Refusals name the field.
        with pytest.raises(RpcError) as bad:
            admin.agents.dlq(name, limit=1001)
        assert bad.value.code == grpc.StatusCode.FAILED_PRECONDITION and bad.value.reason == "COMMAND_FAILED"
        assert "list_dlq.limit: must be from 1 to 1000" in bad.value.message
        with pytest.raises(RpcError, match=r"list_dlq\.dataset: 'tenants/acme/datasets/fw' is not of tenant 'beta'"):
            admin.agents.dlq(name, tenant="beta", dataset="tenants/acme/datasets/fw")
        with pytest.raises(ValueError, match="ids: empty"):
            admin.agents.retry_dlq(name, [])

        # A viewer may list dead letters (it only reads) but not move them.
        _, viewer_key = admin.keys.create(common_pb2.ROLE_VIEWER, display_name="dlq viewer")
        with Client(control_plane.grpc, api_key=viewer_key) as viewer:
            assert len(viewer.agents.dlq(name)) == 5
            with pytest.raises(RpcError) as denied:
                viewer.agents.retry_dlq(name)
            assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED

        # Health reports carry the DLQ size the dashboard shows beside each agent.
        eventually(lambda: dlq_size(admin, name) == 5, timeout=30)

        # The CLI: list one tenant's batches, retry one by id.
        env = clean_env(FLOE_CONTROL_URL=control_plane.grpc, FLOE_API_KEY=control_plane.admin_key)
        table = run_floe("agents", "dlq", name, "--tenant", "beta", env=env, cwd=tmp_path)
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split()[:3] == ["ID", "DATASET", "BYTES"]
        assert row.split()[:2] == [ids[3], "tenants/beta/datasets/fw"] and "answered 404" in row
        listed = json.loads(run_floe("-o", "json", "agents", "dlq", name, "--dataset", "web", env=env).stdout)
        assert [(i["id"], i["records"], i["sizeBytes"] != "0") for i in listed] == [(ids[2], "5", True)]
        receiver.script(default=Answer(200))
        moved = run_floe("agents", "retry-dlq", name, ids[3], env=env, cwd=tmp_path)
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.strip() == "Moved 1 batch(es) of the 1 requested from the DLQ back to the queue."
        eventually(lambda: list(receiver.delivered_ids()) == [ids[3]])
        assert receiver.delivered()[0].records() == sent[3][2]
        assert [i.id for i in admin.agents.dlq(name)] == in_order(0, 1, 2, 4)

        # The SDK: an unknown id moves nothing; no ids moves the rest, each delivered once.
        assert admin.agents.retry_dlq(name, ["00000000000000099999"]) == 0
        assert admin.agents.retry_dlq(name) == 4
        eventually(lambda: sorted(receiver.delivered_ids()) == ids)
        assert set(receiver.delivered_ids().values()) == {1}
        eventually(lambda: admin.agents.dlq(name) == [])
        eventually(lambda: dlq_size(admin, name) == 0, timeout=30)
        assert admin.agents.retry_dlq(name) == 0
    finally:
        agent.kill()
