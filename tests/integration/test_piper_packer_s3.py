"""Piper and packer on a real S3 server (SeaweedFS, credentials enforced): raw objects in,
Hive-partitioned zstd Parquet out, checked row by row; a second pass changes nothing."""

from __future__ import annotations

import asyncio
import io
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from agents.packer.pack import Packer, PackSettings
from agents.piper.pipe import Piper
from agents.piper.process import Processors
from agents.runtime.health import HealthBoard
from agents.runtime.layout import list_all, raw_key
from agents.runtime.leases import LocalLeases
from agents.runtime.objectstore import S3Settings, S3Store
from floe.v1 import datasets_pb2, transforms_pb2
from tests.integration.s3server import S3Server, s3_server

__all__ = ["s3_server"]  # the session fixture, imported so pytest finds it

NOV23_09 = 1_795_424_400 * 10**9  # 2026-11-23T09:00:00Z


def test_raw_objects_to_parquet_on_s3(s3_server: S3Server) -> None:
    run = uuid.uuid4().hex[:10]

    def settings(stage: str) -> S3Settings:
        return S3Settings(
            bucket="floe-pipeline-test",
            endpoint_url=s3_server.endpoint,
            prefix=f"{run}/{stage}",
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
            create_bucket=True,
        )

    async def scenario() -> None:
        intake, processed, parquet = [await S3Store.connect(settings(s)) for s in ("intake", "processed", "parquet")]
        board = HealthBoard()
        upper = transforms_pb2.Transformation(
            change_case=transforms_pb2.ChangeCase(field="msg", case=transforms_pb2.ChangeCase.CASE_UPPER)
        )
        procs = Processors("salt")
        procs.configure([datasets_pb2.Dataset(name="tenants/acme/datasets/app", active=True, transformations=[upper])])
        piper = Piper(
            intake,
            processed,
            parquet,
            LocalLeases("piper"),
            process=procs.process,
            component=lambda n: board.component(n, "piper"),
        )
        packer = Packer(
            processed,
            parquet,
            LocalLeases("packer"),
            settings=PackSettings(),
            component=lambda n: board.component(n, "p"),
        )
        for i in range(3):
            body = "".join(json.dumps({"n": i * 10 + j, "msg": f"héllo {j}"}) + "\n" for j in range(10))
            await intake.put(
                raw_key("acme", "app", NOV23_09 + i, "ndjson", "zst"), pa.compress(body.encode(), "zstd", asbytes=True)
            )
        for _ in range(2):  # the second pass finds nothing left to do
            await piper.run_once([("acme", "app")])
            await packer.run_once([("acme", "app", True)])
        assert await list_all(intake, "acme/") == []
        assert await list_all(processed, "acme/") == []
        files = await list_all(parquet, "acme/app/data/parquet/")
        assert len(files) == 1
        assert files[0].key.startswith("acme/app/data/parquet/year=2026/month=11/day=23/hour=09/part-")
        table = pq.read_table(io.BytesIO(await parquet.get(files[0].key)))
        assert pq.ParquetFile(io.BytesIO(await parquet.get(files[0].key))).metadata.row_group(0).column(
            0
        ).compression == ("ZSTD")
        rows = sorted(table.select(["n", "msg"]).to_pylist(), key=lambda r: r["n"])
        assert rows == [{"n": i * 10 + j, "msg": f"HÉLLO {j}"} for i in range(3) for j in range(10)]
        for store in (intake, processed, parquet):
            await store.close()

    asyncio.run(scenario())
