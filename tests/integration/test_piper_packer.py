"""Two pipers and two packers on the same stores, sharing work through control-plane leases,
while the test kill -9s and restarts them: every record ends up in Parquet exactly once."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from agents.runtime.layout import list_all, raw_key
from agents.runtime.objectstore import LocalStore
from floe import Client
from floe.v1 import common_pb2, datasets_pb2, keys_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess

OBJECTS = 150
PER_OBJECT = 500
BASE_NS = 1_795_424_400 * 10**9  # 2026-11-23T09:00:00Z


def _body(i: int) -> bytes:
    return "".join(
        json.dumps({"n": i * PER_OBJECT + j, "obj": i, "msg": f"record {j} of {i}"}) + "\n" for j in range(PER_OBJECT)
    ).encode()


def _store_args(root: Path) -> list[str]:
    return [
        "--object-store", str(root / "intake"),
        "--processed-store", str(root / "processed"),
        "--parquet-store", str(root / "parquet"),
        "--poll-interval", "0.2s",
        "--lease-ttl", "3s",
    ]  # fmt: skip


def _count(root: Path, tenant: str, dataset: str) -> tuple[int, int]:
    glob = str(root / "parquet" / tenant / dataset / "data/parquet/**/*.parquet")
    row = (
        duckdb.connect()
        .execute("SELECT count(*), count(DISTINCT n) FROM read_parquet(?, union_by_name=true)", [glob])
        .fetchone()
    )
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("kills", [0, 8])
def test_every_record_exactly_once_with_two_of_each_and_kill_9(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str], tmp_path: Path, kills: int
) -> None:
    cp = control_plane
    tenant = uid("pp")
    admin.tenants.create(tenant)
    ds = datasets_pb2.Dataset(
        source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=18080), active=True, testing=True
    )
    admin.datasets.create(tenant, "app", ds)
    _, key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    intake = LocalStore(tmp_path / "stores" / "intake")

    async def fill() -> None:
        for i in range(OBJECTS):
            await intake.put(raw_key(tenant, "app", BASE_NS + i, "ndjson", "ndjson"), _body(i))

    asyncio.run(fill())
    agents = [
        AgentProcess(
            kind,
            f"{kind}-{uid('x')[-6:]}-{n}",
            tmp_path / "agents",
            *_store_args(tmp_path / "stores"),
            control_url=cp.grpc,
            key=key,
        )
        for kind in ("piper", "packer")
        for n in range(2)
    ]
    for agent in agents:
        agent.start()
    try:
        rng = random.Random(kills)
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 0.5))
            victim = rng.choice(agents)
            victim.kill()
            victim.start()

        def settled() -> bool:
            left = asyncio.run(list_all(intake, f"{tenant}/"))
            processed = asyncio.run(list_all(LocalStore(tmp_path / "stores" / "processed"), f"{tenant}/"))
            return not left and not processed and _count(tmp_path / "stores", tenant, "app")[0] >= OBJECTS * PER_OBJECT

        eventually(settled, timeout=90, interval=0.5)
        total, distinct = _count(tmp_path / "stores", tenant, "app")
        assert (total, distinct) == (OBJECTS * PER_OBJECT, OBJECTS * PER_OBJECT)
        # Pipers report the fields they saw (counts are approximate when a piper is killed
        # between processing and its next report).
        fields = eventually(lambda: admin.datasets.fields(f"tenants/{tenant}/datasets/app"), timeout=30)
        assert {f.name: f.type for f in fields.fields} == {"n": "int64", "obj": "int64", "msg": "string"}
        if not kills:
            assert eventually(
                lambda: admin.datasets.fields(f"tenants/{tenant}/datasets/app").records == OBJECTS * PER_OBJECT
            )
    finally:
        for agent in agents:
            if agent.alive():
                agent.stop()
