"""Raw objects -> piper -> packer -> Parquet, in process on local stores, checked with DuckDB."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from agents.packer.pack import Packer, PackSettings
from agents.piper.pipe import Piper
from agents.piper.process import Processors
from agents.runtime.health import HealthBoard
from agents.runtime.layout import list_all, raw_key
from agents.runtime.leases import LocalLeases
from agents.runtime.objectstore import LocalStore
from floe.v1 import datasets_pb2, transforms_pb2

pytestmark = pytest.mark.anyio

NOV23_09 = 1_795_424_400 * 10**9  # 2026-11-23T09:00:00Z


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def dataset(name: str, *steps: transforms_pb2.Transformation) -> datasets_pb2.Dataset:
    return datasets_pb2.Dataset(name=f"tenants/acme/datasets/{name}", active=True, transformations=steps)


class Stages:
    def __init__(self, root: Path, datasets: list[datasets_pb2.Dataset]) -> None:
        self.intake = LocalStore(root / "intake")
        self.processed = LocalStore(root / "processed")
        self.parquet = LocalStore(root / "parquet")
        self.board = HealthBoard()
        self.processors = Processors("pepper")
        self.processors.configure(datasets)
        self.piper = Piper(
            self.intake,
            self.processed,
            self.parquet,
            LocalLeases("piper"),
            process=self.processors.process,
            component=lambda n: self.board.component(f"pipe/{n}", "piper"),
        )
        self.packer = Packer(
            self.processed,
            self.parquet,
            LocalLeases("packer"),
            settings=PackSettings(),
            component=lambda n: self.board.component(f"pack/{n}", "packer"),
        )

    async def run(self, *datasets: str) -> None:
        await self.piper.run_once([("acme", d) for d in datasets])
        await self.packer.run_once([("acme", d, True) for d in datasets])

    def rows(self, ds: str, columns: str = "*") -> list[tuple[object, ...]]:
        glob = str(self.parquet.root / f"acme/{ds}/data/parquet/**/*.parquet")
        query = f"SELECT {columns} FROM read_parquet(?, hive_partitioning=true, union_by_name=true) ORDER BY ALL"  # noqa: S608 (test-chosen columns)
        return duckdb.connect().execute(query, [glob]).fetchall()


async def test_ndjson_with_transformations_routing_and_errors(tmp_path: Path) -> None:
    steps = [
        transforms_pb2.Transformation(
            filter=transforms_pb2.Filter(
                mode=transforms_pb2.Filter.MODE_EXCLUDE,
                condition=transforms_pb2.Condition(
                    compare=transforms_pb2.Comparison(
                        field="level", operator=transforms_pb2.Comparison.OPERATOR_EQ, value="debug"
                    )
                ),
            )
        ),
        transforms_pb2.Transformation(rename_field=transforms_pb2.RenameField(**{"from": "msg", "to": "message"})),
        transforms_pb2.Transformation(
            convert_type=transforms_pb2.ConvertType(field="code", type=transforms_pb2.ConvertType.TYPE_INT)
        ),
        transforms_pb2.Transformation(
            route=transforms_pb2.Route(
                dataset="tenants/acme/datasets/audit",
                condition=transforms_pb2.Condition(
                    compare=transforms_pb2.Comparison(
                        field="level", operator=transforms_pb2.Comparison.OPERATOR_EQ, value="audit"
                    )
                ),
            )
        ),
    ]
    stages = Stages(tmp_path, [dataset("app", *steps), dataset("audit")])
    records = [
        {"level": "info", "msg": "héllo", "code": "1"},
        {"level": "debug", "msg": "noise", "code": "2"},
        {"level": "audit", "msg": "login", "code": "3"},
        {"level": "info", "msg": "bad code", "code": "x"},
    ]
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    await stages.intake.put(raw_key("acme", "app", NOV23_09, "ndjson", "gz"), body)
    await stages.run("app", "audit")
    assert stages.rows("app", "level, message, code, hour") == [("info", "héllo", 1, "09")]
    assert stages.rows("audit", "level, message") == [("audit", "login")]
    errors = (await stages.parquet.get("acme/app/errors/acme--app--" + str(NOV23_09) + "--ndjson.ndjson")).decode()
    assert "bad code" in errors
    assert await list_all(stages.intake, "") == []
    assert [o.key for o in await list_all(stages.processed, "acme/")] == []


async def test_syslog_lines_partition_by_event_hour(tmp_path: Path) -> None:
    stages = Stages(tmp_path, [dataset("fw")])
    lines = (
        "<34>1 2026-11-23T09:59:59Z host app 1 - - first\n"
        "<34>1 2026-11-23T10:00:00Z host app 1 - - second\n"
        "not syslog at all\n"
    )
    await stages.intake.put(raw_key("acme", "fw", NOV23_09, "syslog", "zst"), pa.compress(lines.encode(), "zstd"))
    await stages.run("fw")
    rows = stages.rows("fw", "message, hour")
    assert ("first", "09") in rows
    assert ("second", "10") in rows
    assert len(rows) == 3  # the unparseable line is kept as a raw record


async def test_reprocessing_a_completed_object_publishes_once(tmp_path: Path) -> None:
    stages = Stages(tmp_path, [dataset("app")])
    key = raw_key("acme", "app", NOV23_09, "ndjson", "ndjson")
    await stages.intake.put(key, b'{"n": 1}\n{"n": 2}\n')
    await stages.piper.run_once([("acme", "app")])
    # A piper that died after completing the item but before deleting the raw object:
    await stages.intake.put(key, b'{"n": 1}\n{"n": 2}\n')
    await stages.run("app")
    assert stages.rows("app", "n") == [(1,), (2,)]
