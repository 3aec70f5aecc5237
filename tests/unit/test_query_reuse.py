"""A reused query database is provably clean: whatever a statement that got past the guard did
inside its query is gone for the next query, and a database whose transaction was ended is
never reused. Databases are never shared between datasets."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.query.catalog import TimeRange
from agents.query.engine import Engine, QueryJob
from agents.query.session import Database, Limits
from agents.runtime.layout import parquet_key
from agents.runtime.objectstore import LocalStore

LIMITS = Limits(0, 100, True, 5.0, "128MiB", 1, 1)


def _write(root: Path, tenant: str, dataset: str, host: str) -> None:
    path = root / parquet_key(tenant, dataset, "2024050100", "a")
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = pa.array([int(datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1e6)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"timestamp": ts, "host": [host]}), path)


async def _rows(engine: Engine, tenant: str, dataset: str, sql: str) -> int:
    rows = 0
    async for response in engine.execute(QueryJob(tenant, dataset, sql, "", None, None, 0, False)):
        if response.HasField("summary"):
            rows = response.summary.row_count
    return rows


def _idle(engine: Engine, key: str) -> list[Database]:
    """The dataset's idle databases once the last query's database is back (workers finish it)."""
    deadline = time.monotonic() + 10
    while not engine._databases._idle.get(key):
        assert time.monotonic() < deadline, f"no idle database for {key}"
        time.sleep(0.01)
    return list(engine._databases._idle[key])


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    _write(tmp_path / "store", "a", "fw", "a-host")
    _write(tmp_path / "store", "b", "fw", "b-host")
    return Engine(LocalStore(tmp_path / "store"), LIMITS, tmp_path / "spill", None)


def test_a_dataset_reuses_its_database_and_never_another_datasets(engine: Engine) -> None:
    async def main() -> None:
        try:
            assert await _rows(engine, "a", "fw", "SELECT * FROM fw") == 1
            [first] = _idle(engine, "a/fw")
            assert await _rows(engine, "a", "fw", "SELECT * FROM fw") == 1
            assert _idle(engine, "a/fw") == [first]
            assert await _rows(engine, "b", "fw", "SELECT host FROM fw WHERE host = 'b-host'") == 1
            assert first not in _idle(engine, "b/fw")
            assert first.allowed is not None and first.allowed.endswith("/a/fw/data/parquet/")
        finally:
            await engine.close()

    asyncio.run(main())


def test_what_a_query_did_is_rolled_back_and_an_ended_transaction_retires_the_database(engine: Engine) -> None:
    async def main() -> None:
        try:
            assert await _rows(engine, "a", "fw", "SELECT * FROM fw") == 1
            _idle(engine, "a/fw")
            files = await engine.files("a", "fw")
            # What a statement past the guard could do inside its transaction:
            session = engine._open("a", "fw", files, files, TimeRange(None, None))
            db = session.database
            for sql in (
                "CREATE MACRO m() AS 1",
                "CREATE VIEW leftover AS SELECT 1 AS x",
                "CREATE OR REPLACE VIEW fw AS SELECT 'spoofed' AS host",
                "CREATE SEQUENCE s",
                "ATTACH ':memory:' AS extra",
                "CREATE SECRET s (TYPE http, BEARER_TOKEN 'x')",
            ):
                session.con.execute(sql)
            engine._finish("a", "fw", session)
            assert engine._databases._idle["a/fw"][-1] is db
            session = engine._open("a", "fw", files, files, TimeRange(None, None))
            assert session.database is db
            assert session.con.sql("SELECT host FROM fw").fetchall() == [("a-host",)]
            for sql in ("SELECT m()", "SELECT * FROM leftover", "SELECT nextval('s')", "SELECT * FROM extra.x"):
                with pytest.raises(duckdb.Error):
                    session.con.sql(sql).fetchall()
            assert session.con.sql("SELECT count(*) FROM duckdb_secrets()").fetchall() == [(0,)]
            # A statement that ends the transaction: what follows would outlive the query.
            session.con.execute("COMMIT")
            session.con.execute("CREATE MACRO kept() AS 1")
            engine._finish("a", "fw", session)
            assert db not in engine._databases._idle.get("a/fw", [])
            assert await _rows(engine, "a", "fw", "SELECT * FROM fw") == 1
        finally:
            await engine.close()

    asyncio.run(main())


def test_each_querys_own_connection_has_the_lock_down(engine: Engine) -> None:
    """Settings scoped to a connection (``LOCAL``) set on the database's own connection would not
    reach the query's: the lock-down sets them globally, and a query cannot set them back."""

    async def main() -> None:
        try:
            files = await engine.files("a", "fw")
            session = engine._open("a", "fw", files, files, TimeRange(None, None))
            settings = dict(session.con.sql("SELECT name, value FROM duckdb_settings()").fetchall())
            assert settings["python_enable_replacements"] == "false"  # no Python objects by name
            assert settings["enable_external_access"] == "false"
            assert settings["lock_configuration"] == "true"
            assert settings["parquet_metadata_cache"] == "true"  # footers read once per file
            with pytest.raises(duckdb.Error, match="configuration"):
                session.con.execute("SET python_enable_replacements=true")
            engine._finish("a", "fw", session)
        finally:
            await engine.close()

    asyncio.run(main())


def test_the_kept_view_reads_each_querys_own_time_range(tmp_path: Path) -> None:
    path = tmp_path / "store" / parquet_key("a", "fw", "2024050100", "a")
    path.parent.mkdir(parents=True)
    minutes = [10, 40]
    ts = pa.array([int(datetime(2024, 5, 1, 0, m, tzinfo=UTC).timestamp() * 1e6) for m in minutes],
                  pa.timestamp("us", tz="UTC"))  # fmt: skip
    pq.write_table(pa.table({"timestamp": ts, "host": ["early", "late"]}), path)
    engine = Engine(LocalStore(tmp_path / "store"), LIMITS, tmp_path / "spill", None)

    async def hosts(start: int, end: int) -> list[str]:
        job = QueryJob("a", "fw", "SELECT host FROM fw", "", datetime(2024, 5, 1, 0, start, tzinfo=UTC),
                       datetime(2024, 5, 1, 0, end, tzinfo=UTC), 0, True)  # fmt: skip
        out = []
        async for response in engine.execute(job):
            out += [row.fields["host"].string_value for row in response.chunk.rows]
        return out

    async def main() -> None:
        try:
            assert await hosts(0, 30) == ["early"]
            [db] = _idle(engine, "a/fw")
            assert await hosts(30, 59) == ["late"]
            assert _idle(engine, "a/fw") == [db]  # the same database and view, another range
            assert await hosts(0, 59) == ["early", "late"]
            assert await hosts(45, 59) == []
        finally:
            await engine.close()

    asyncio.run(main())
