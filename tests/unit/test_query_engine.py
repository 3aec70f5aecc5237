"""The engine's response stream and cancellation: a single-response call gets a small answer as one
``result`` (header, chunk and summary in one message) and anything larger as the usual stream;
a call that never asked gets the stream whatever the size; a caller that goes away while the
statement runs stops it at once, and its database comes back clean."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.query.engine import Engine, QueryJob
from agents.query.session import Database, Limits
from agents.runtime.layout import parquet_key
from agents.runtime.objectstore import LocalStore
from floe.v1 import query_pb2

ROWS = 3000
#: A statement timeout far beyond any deadline below: a query that stops did so because it was told.
LIMITS = Limits(0, 10_000, True, 120.0, "256MiB", 1, 1)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    path = tmp_path / "store" / parquet_key("a", "fw", "2024050100", "a")
    path.parent.mkdir(parents=True)
    start = int(datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1e6)
    table = pa.table(
        {
            "timestamp": pa.array([start + i for i in range(ROWS)], pa.timestamp("us", tz="UTC")),
            "host": [f"host-{i % 3}" for i in range(ROWS)],
            # ~1 KB a row: the whole file is more than one ~1 MiB Arrow chunk.
            "message": [f"{i:04d}" + "x" * 1000 for i in range(ROWS)],
        }
    )
    pq.write_table(table, path)
    return Engine(LocalStore(tmp_path / "store"), LIMITS, tmp_path / "spill", None)


def _kinds(responses: list[query_pb2.ExecuteQueryResponse]) -> list[str]:
    return [str(r.WhichOneof("payload")) for r in responses]


def _run(engine: Engine, sql: str, *, single: bool, json: bool = False, max_rows: int = 0) -> list[str]:
    """The payload kinds of the query's responses, in order."""

    async def main() -> list[query_pb2.ExecuteQueryResponse]:
        try:
            job = QueryJob("a", "fw", sql, "", None, None, max_rows, json, single=single)
            return [r async for r in engine.execute(job)]
        finally:
            await engine.close()

    responses = asyncio.run(main())
    return _kinds(responses)


def test_a_small_answer_comes_as_one_result_when_asked(engine: Engine) -> None:
    async def main() -> list[query_pb2.ExecuteQueryResponse]:
        try:
            job = QueryJob("a", "fw", "SELECT host, count(*) AS n FROM fw GROUP BY host ORDER BY host", "", None,
                           None, 0, False, single=True)  # fmt: skip
            return [r async for r in engine.execute(job)]
        finally:
            await engine.close()

    [response] = asyncio.run(main())
    result = response.result
    assert [(c.name, c.type) for c in result.header.columns] == [("host", "VARCHAR"), ("n", "BIGINT")]
    assert result.header.arrow_schema and result.header.files == 1
    table = pa.ipc.open_stream(result.chunk.arrow_ipc).read_all()
    assert table.to_pylist() == [{"host": f"host-{i}", "n": ROWS // 3} for i in range(3)]
    assert result.summary.row_count == 3 and not result.summary.truncated
    assert result.summary.elapsed.ToNanoseconds() > 0


def test_an_empty_answer_is_one_result_without_a_chunk(engine: Engine) -> None:
    async def main() -> list[query_pb2.ExecuteQueryResponse]:
        try:
            job = QueryJob("a", "fw", "SELECT host FROM fw WHERE false", "", None, None, 0, False, single=True)
            return [r async for r in engine.execute(job)]
        finally:
            await engine.close()

    [response] = asyncio.run(main())
    assert not response.result.HasField("chunk")
    assert response.result.summary.row_count == 0
    assert [c.name for c in response.result.header.columns] == ["host"]


def test_a_cut_answer_says_so_in_its_one_result(engine: Engine) -> None:
    async def main() -> list[query_pb2.ExecuteQueryResponse]:
        try:
            job = QueryJob("a", "fw", "SELECT host FROM fw", "", None, None, 5, False, single=True)
            return [r async for r in engine.execute(job)]
        finally:
            await engine.close()

    [response] = asyncio.run(main())
    assert pa.ipc.open_stream(response.result.chunk.arrow_ipc).read_all().num_rows == 5
    assert response.result.summary.truncated and "max_rows" in response.result.summary.truncated_reason


def test_answers_larger_than_one_chunk_stream_even_when_one_result_was_asked_for(engine: Engine) -> None:
    kinds = _run(engine, "SELECT * FROM fw", single=True)
    assert kinds[0] == "header" and kinds[-1] == "summary"
    assert kinds[1:-1] == ["chunk"] * (len(kinds) - 2) and len(kinds) - 2 >= 2


def test_json_answers_over_one_chunk_of_rows_stream(engine: Engine) -> None:
    kinds = _run(engine, "SELECT host FROM fw LIMIT 501", single=True, json=True)
    assert kinds == ["header", "chunk", "chunk", "summary"]


def test_callers_that_did_not_ask_get_the_stream(engine: Engine) -> None:
    assert _run(engine, "SELECT count(*) AS n FROM fw", single=False) == ["header", "chunk", "summary"]


def test_a_caller_going_away_stops_the_statement_and_the_database_comes_back(engine: Engine) -> None:
    async def main() -> None:
        try:

            async def drain(sql: str) -> list[query_pb2.ExecuteQueryResponse]:
                return [r async for r in engine.execute(QueryJob("a", "fw", sql, "", None, None, 0, False))]

            await drain("SELECT count(*) FROM fw")
            [db] = await _idle(engine)
            endless = asyncio.create_task(drain("SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3"))
            await _until(lambda: not engine._databases._idle.get("a/fw"))  # the statement has the database
            endless.cancel()
            with pytest.raises(asyncio.CancelledError):
                await endless
            # Interrupted, rolled back and handed back long before the statement timeout.
            assert await _idle(engine) == [db]
            assert db.clean()
            [response] = [r for r in await drain("SELECT count(*) AS n FROM fw") if r.HasField("chunk")]
            assert pa.ipc.open_stream(response.chunk.arrow_ipc).read_all().to_pylist() == [{"n": ROWS}]
        finally:
            await engine.close()

    asyncio.run(main())


async def _until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _idle(engine: Engine) -> list[Database]:
    await _until(lambda: engine._databases._idle.get("a/fw"))
    return list(engine._databases._idle["a/fw"])


def _write(store: Path, hour: str, table: pa.Table) -> None:
    path = store / parquet_key("a", "fw", hour, "a")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _rows(engine: Engine, sql: str) -> list[dict[str, object]]:
    async def main() -> list[dict[str, object]]:
        job = QueryJob("a", "fw", sql, "", None, None, 0, False, single=True)
        [response] = [r async for r in engine.execute(job)]
        out: list[dict[str, object]] = pa.ipc.open_stream(response.result.chunk.arrow_ipc).read_all().to_pylist()
        return out

    return asyncio.run(main())


def _view_sources(engine: Engine) -> list[str]:
    """What the kept views of the engine's idle databases read (white box: the view's key),
    once a worker has handed the query's database back."""
    deadline = time.monotonic() + 10
    while True:
        idle = [db for dbs in engine._databases._idle.values() for db in dbs]
        if idle or time.monotonic() > deadline:
            return [str(db.view[0][1]) for db in idle if db.view is not None]
        time.sleep(0.01)


def test_files_with_one_schema_are_read_without_matching_columns_by_name(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for hour in ("2024050100", "2024050101"):
        _write(store, hour, pa.table({"host": ["a", "b"], "n": [1, 2]}))
    engine = Engine(LocalStore(store), LIMITS, tmp_path / "spill", None)
    try:
        assert _rows(engine, "SELECT count(*) AS c, sum(n) AS s FROM fw") == [{"c": 4, "s": 6}]
        [source] = _view_sources(engine)
        assert "union_by_name" not in source
    finally:
        asyncio.run(engine.close())


def test_files_whose_schemas_differ_are_matched_by_column_name(tmp_path: Path) -> None:
    """A column added later (and columns in another order) must neither vanish nor shift."""
    store = tmp_path / "store"
    _write(store, "2024050100", pa.table({"host": ["a"], "n": [1]}))
    _write(store, "2024050101", pa.table({"n": [2], "host": ["b"], "app": ["sshd"]}))
    engine = Engine(LocalStore(store), LIMITS, tmp_path / "spill", None)
    try:
        rows = _rows(engine, "SELECT host, n, app FROM fw ORDER BY n")
        assert rows == [{"host": "a", "n": 1, "app": None}, {"host": "b", "n": 2, "app": "sshd"}]
        [source] = _view_sources(engine)
        assert "union_by_name=true" in source
    finally:
        asyncio.run(engine.close())
