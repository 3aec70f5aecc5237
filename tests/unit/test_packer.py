"""The packer's commit protocol and schema rule, in process on a local store."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.packer.pack import Packer, PackSettings
from agents.packer.schema import unify
from agents.runtime.health import HealthBoard
from agents.runtime.layout import parquet_key, processed_key
from agents.runtime.leases import LocalLeases
from agents.runtime.objectstore import LocalStore

pytestmark = pytest.mark.anyio

HOUR = "2026112309"


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def stores(tmp_path: Path) -> tuple[LocalStore, LocalStore]:
    return LocalStore(tmp_path / "processed"), LocalStore(tmp_path / "parquet")


def make_packer(stores: tuple[LocalStore, LocalStore], **kw: float) -> tuple[Packer, HealthBoard]:
    board = HealthBoard()
    packer = Packer(
        stores[0],
        stores[1],
        LocalLeases("test"),
        settings=PackSettings(**kw),  # type: ignore[arg-type]
        component=lambda name: board.component(f"pack/{name}", "packer"),
    )
    return packer, board


async def put_batch(store: LocalStore, stem: str, table: pa.Table, hour: str = HOUR) -> str:
    key = processed_key("acme", "fw", hour, stem)
    await store.put(key, arrow_bytes(table))
    return key


def read_dataset(root: Path) -> list[tuple[object, ...]]:
    glob = str(root / "acme/fw/data/parquet/**/*.parquet")
    con = duckdb.connect()
    query = "SELECT * EXCLUDE (year, month, day, hour) FROM read_parquet(?, hive_partitioning=true, union_by_name=true)"
    return con.execute(query + " ORDER BY n", [glob]).fetchall()


async def test_testing_dataset_packs_at_once_and_removes_sources(stores: tuple[LocalStore, LocalStore]) -> None:
    processed, parquet = stores
    await put_batch(processed, "b1", pa.table({"n": [1, 2], "msg": ["a", "é"]}))
    await put_batch(processed, "b2", pa.table({"n": [3], "msg": ["c"]}))
    packer, board = make_packer(stores)
    assert await packer.run_once([("acme", "fw", True)]) == 1
    assert await processed.list("acme/fw/") == []
    files = await parquet.list("acme/fw/data/parquet/")
    assert len(files) == 1
    assert files[0].key.startswith("acme/fw/data/parquet/year=2026/month=11/day=23/hour=09/part-")
    assert read_dataset(parquet.root) == [(1, "a"), (2, "é"), (3, "c")]
    comp = board.component("pack/acme/fw", "packer")
    assert comp.events_out == 3


async def test_waits_for_size_or_age(stores: tuple[LocalStore, LocalStore]) -> None:
    processed = stores[0]
    await put_batch(processed, "b1", pa.table({"n": [1]}))
    packer, _ = make_packer(stores, target_bytes=1 << 30, max_age=3600)
    assert await packer.run_once([("acme", "fw", False)]) == 0
    packer, _ = make_packer(stores, target_bytes=1, max_age=3600)
    assert await packer.run_once([("acme", "fw", False)]) == 1


async def test_target_size_splits_into_several_files(stores: tuple[LocalStore, LocalStore]) -> None:
    processed, parquet = stores
    for i in range(4):
        await put_batch(processed, f"b{i}", pa.table({"n": list(range(i * 10, i * 10 + 10))}))
    one = (await processed.list("acme/fw/"))[0].size
    packer, _ = make_packer(stores, target_bytes=one * 2)
    assert await packer.run_once([("acme", "fw", True)]) == 2
    assert [r[0] for r in read_dataset(parquet.root)] == list(range(40))


async def test_conflicting_types_become_strings_and_new_fields_are_added(
    stores: tuple[LocalStore, LocalStore],
) -> None:
    processed, parquet = stores
    await put_batch(processed, "b1", pa.table({"n": [1], "code": pa.array([7], pa.int64())}))
    await put_batch(processed, "b2", pa.table({"n": [2], "code": ["x7"], "extra": [1.5]}))
    await put_batch(processed, "b3", pa.table({"n": pa.array([3], pa.int32()), "extra": [2]}))
    packer, _ = make_packer(stores)
    await packer.run_once([("acme", "fw", True)])
    files = await parquet.list("acme/fw/")
    schema = pq.read_schema(parquet.root / files[0].key)
    assert schema.field("code").type == pa.string()
    assert schema.field("extra").type == pa.float64()
    assert schema.field("n").type == pa.int64()
    assert read_dataset(parquet.root) == [(1, "7", None), (2, "x7", 1.5), (3, None, 2.0)]


async def test_crash_after_parquet_written_finishes_without_duplicates(stores: tuple[LocalStore, LocalStore]) -> None:
    processed, parquet = stores
    keys = [await put_batch(processed, f"b{i}", pa.table({"n": [i]})) for i in range(3)]
    # A packer wrote the file and died before deleting its sources: re-run the same pack.
    packer, _ = make_packer(stores)
    await packer.run_once([("acme", "fw", True)])
    written = await parquet.list("acme/fw/")
    for i, key in enumerate(keys):
        await processed.put(key, arrow_bytes(pa.table({"n": [i]})))
    file_id = written[0].key.rsplit("part-", 1)[1].removesuffix(".parquet")
    manifest = {"parquet": written[0].key, "sources": keys}
    await processed.put(f"acme/fw/_manifests/{HOUR}/{file_id}.json", json.dumps(manifest).encode())
    packer, _ = make_packer(stores, target_bytes=1 << 30, max_age=3600)
    await packer.run_once([("acme", "fw", False)])  # a manifest makes the partition due
    assert await processed.list("acme/fw/") == []
    assert [r[0] for r in read_dataset(parquet.root)] == [0, 1, 2]


async def test_crash_before_parquet_written_repacks_the_same_sources(stores: tuple[LocalStore, LocalStore]) -> None:
    processed, parquet = stores
    keys = [await put_batch(processed, f"b{i}", pa.table({"n": [i]})) for i in range(2)]
    target = parquet_key("acme", "fw", HOUR, "deadbeef")
    await processed.put(
        f"acme/fw/_manifests/{HOUR}/deadbeef.json", json.dumps({"parquet": target, "sources": keys}).encode()
    )
    packer, _ = make_packer(stores, target_bytes=1 << 30, max_age=3600)
    await packer.run_once([("acme", "fw", False)])
    assert await parquet.head(target) is None
    assert [r[0] for r in read_dataset(parquet.root)] == [0, 1]
    assert await processed.list("acme/fw/") == []


def test_unify_keeps_nested_values_as_json() -> None:
    a = pa.table({"v": pa.array([{"x": 1}])})
    b = pa.table({"v": ["text"]})
    out = unify([a, b])
    assert out.column("v").to_pylist() == ['{"x": 1}', "text"]
