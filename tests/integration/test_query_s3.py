"""The query agent reading Parquet from S3 (real SeaweedFS, credentials enforced) through
pyarrow's S3 filesystem, with partition pruning, forwarded by the control plane."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.runtime.objectstore import S3Settings, S3Store
from floe import Client
from floe.v1 import common_pb2, datasets_pb2, keys_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess
from tests.integration.s3server import S3Server, s3_server
from tests.integration.test_query_service import write_hour

__all__ = ["s3_server"]  # the fixture, imported so pytest finds it

BUCKET = "query-parquet"


@pytest.fixture
def control_plane_s3(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    cp = ControlPlaneProcess(tmp_path / "cp", "--agent-heartbeat-interval", "1s").start()
    yield cp
    cp.stop()


def test_queries_read_parquet_from_s3_with_pruning(
    control_plane_s3: ControlPlaneProcess, s3_server: S3Server, tmp_path: Path
) -> None:
    cp = control_plane_s3
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=2), now - timedelta(hours=1)]
    local = tmp_path / "staging"
    for h in hours:
        write_hour(local, "s3t", "logs", h, 1000, tag="s3", part="a")
    # A second, small file in the same hour: both are read, and both pruned together.
    write_hour(local, "s3t", "logs", hours[1], 10, tag="s3b", part="b")
    settings = S3Settings(
        bucket=BUCKET,
        endpoint_url=s3_server.endpoint,
        prefix="lake",
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
        create_bucket=True,
    )

    async def upload() -> None:
        store = await S3Store.connect(settings)
        try:
            for path in sorted(local.rglob("*.parquet")):
                await store.put(str(path.relative_to(local)), path.read_bytes())
        finally:
            await store.close()

    asyncio.run(upload())
    with Client(cp.grpc, api_key=cp.admin_key, retries=0) as admin:
        admin.tenants.create("s3t")
        admin.datasets.create(
            "s3t", "logs", datasets_pb2.Dataset(source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=1))
        )
        _, key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
        agent = AgentProcess(
            "query",
            "query-s3",
            tmp_path / "agents",
            "--parquet-store", f"s3://{BUCKET}/lake?endpoint={s3_server.endpoint}",
            "--query-grpc-listen", "127.0.0.1:0",
            control_url=cp.grpc,
            key=key,
            env={"AWS_ACCESS_KEY_ID": s3_server.access_key_id, "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key},
        ).start()  # fmt: skip
        try:
            result = eventually(
                lambda: admin.query.execute("SELECT count(*) AS n FROM logs", dataset="s3t/logs"), timeout=30
            )
            assert result.table.to_pylist() == [{"n": 2010}]
            assert result.summary.files_scanned == 3
            pruned = admin.query.execute(
                "SELECT count(*) AS n, min(hour) AS h FROM logs", dataset="s3t/logs", start=hours[1]
            )
            assert pruned.summary.files_scanned == 2
            assert pruned.table.to_pylist() == [{"n": 1010, "h": hours[1].strftime("%H")}]
            schema = admin.query.schema("s3t/logs")
            assert [c.name for c in schema.columns][:4] == ["timestamp", "host", "severity", "message"]
            assert admin.query.datasets("s3t")[0].files == 3
        finally:
            agent.stop()
