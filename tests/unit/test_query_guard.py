"""The SQL guard and the sandbox under it: each refusal is PERMISSION_DENIED with a sentence, and
statements that get past the guard are still stopped by DuckDB's own settings."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.query.catalog import TimeRange
from agents.query.errors import QueryError
from agents.query.forwarding import Verifier, new_secret, sign
from agents.query.guard import check_sql
from agents.query.session import Limits, Session

LIMITS = Limits(0, 100, True, 5.0, "128MiB", 1, 1)


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM fw WHERE x IN (SELECT * FROM read_json_auto('/etc/x.json'))",
        "FROM '/etc/passwd'",
        "SELECT * FROM read_parquet('/data/parquet/other/fw/**/*.parquet')",
        "SELECT * FROM read_parquet(['PARQUET_PATH', '/etc/passwd'])",
        "SELECT * FROM glob('*')",
        "SELECT * FROM read_blob('/etc/shadow')",
        "SELECT * FROM query_table('fw2')",
        "ATTACH 'x.db'",
        "DETACH memory",
        "COPY fw TO '/tmp/x.parquet'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET memory_limit='100GB'",
        "RESET lock_configuration",
        "PRAGMA enable_profiling",
        "CREATE OR REPLACE VIEW fw AS SELECT * FROM read_csv('/etc/passwd')",
        "CREATE MACRO fw() AS TABLE SELECT 1",
        "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
        "SELECT getenv('AWS_SECRET_ACCESS_KEY')",
        "SELECT current_setting('allowed_directories')",
        "SELECT 1; SELECT 2",
        "SELECT 1 /* ; */ ; ATTACH 'x.db'",
        "SELECT 1 FROM fw;\n-- hidden\nINSTALL httpfs",
        "SELECT * FROM other",
        "SELECT * FROM main.fw",
        "SELECT * FROM fw UNION ALL SELECT * FROM fw_other",
        "DESCRIBE fw",
        "SHOW TABLES",
        "SUMMARIZE fw",
        "EXPLAIN SELECT 1",
        "CALL duckdb_settings()",
        "USE memory",
        "BEGIN TRANSACTION",
        "INSERT INTO fw VALUES (1)",
        "DELETE FROM fw",
        "PIVOT fw ON a USING count(*)",
    ],
)
def test_refused(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(QueryError) as info:
        check_sql(con, sql, "fw", allow_order_by=True)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED, info.value.message
    assert info.value.message.endswith(".")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM fw",
        "SELECT * FROM \"FW\" AS t WHERE t.host LIKE '%x%'",
        "WITH a AS (SELECT * FROM fw) SELECT count(*) FROM a JOIN fw USING (host)",
        "SELECT host, count(*) FROM fw GROUP BY ALL HAVING count(*) > 1 QUALIFY row_number() OVER () = 1",
        "SELECT * FROM range(10) r, unnest([1, 2]) u",
        "SELECT 1 -- ; ATTACH 'x.db'",
        "SELECT (SELECT max(severity) FROM fw), EXISTS (SELECT 1 FROM fw)",
    ],
)
def test_allowed(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    assert check_sql(con, sql, "fw", allow_order_by=True).sql == sql


def test_placeholder_is_rewritten_and_order_by_can_be_disallowed(con: duckdb.DuckDBPyConnection) -> None:
    checked = check_sql(con, "SELECT count(*) FROM read_parquet('PARQUET_PATH', union_by_name=true) p", "fw",
                        allow_order_by=True)  # fmt: skip
    assert checked.sql == "SELECT count_star() FROM fw AS p"
    with pytest.raises(QueryError) as info:
        check_sql(con, "SELECT * FROM fw ORDER BY 1", "fw", allow_order_by=False)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "allow_order_by" in info.value.message
    with pytest.raises(QueryError) as info:
        check_sql(con, "SELEC 1", "fw", allow_order_by=True)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def _dataset(root: Path) -> tuple[Path, list[Path]]:
    directory = root / "t" / "fw" / "data" / "parquet"
    path = directory / "year=2024" / "month=05" / "day=01" / "hour=00" / "part-a.parquet"
    path.parent.mkdir(parents=True)
    ts = pa.array([int(datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1e6)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"timestamp": ts, "host": ["a"]}), path)
    (root / "secret.csv").write_text("password\nhunter2\n")
    return directory, [path]


def test_the_sandbox_stops_what_the_guard_would_have_let_through(tmp_path: Path) -> None:
    directory, paths = _dataset(tmp_path)
    session = Session(LIMITS, tmp_path / "spill")
    session.attach_local("fw", directory, paths, TimeRange(None, None), empty=False)
    try:
        assert session.con.sql("SELECT count(*) FROM fw").fetchall() == [(1,)]
        for sql in (
            f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')",  # noqa: S608 - attacks under test
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_csv('{directory}/../../../../secret.csv')",  # noqa: S608
        ):
            with pytest.raises(duckdb.PermissionException):
                session.con.sql(sql).fetchall()
        for sql in ("SET enable_external_access=true", "SET allowed_directories=['/']", "SET memory_limit='64GB'"):
            with pytest.raises(duckdb.Error, match="locked"):
                session.con.execute(sql)
        with pytest.raises(duckdb.Error):
            session.con.execute("INSTALL httpfs")
    finally:
        session.close()


def test_forwarding_signatures_bind_method_resource_and_time() -> None:
    secret = new_secret()
    verifier = Verifier(secret)
    method, scope = "/floe.v1.QueryService/ExecuteQuery", "tenants/a/datasets/fw"
    md = sign(secret, method, scope, "keys/k1")
    assert verifier.verify(md, method, scope) == "keys/k1"
    refusals = [
        (md, method, scope),  # replay
        (sign(secret, method, scope, "keys/k1"), method, "tenants/b/datasets/fw"),  # another tenant
        (sign(secret, method, scope, "keys/k1"), "/floe.v1.QueryService/GetSchema", scope),
        (sign(new_secret(), method, scope, "keys/k1"), method, scope),  # not our secret
        (sign(secret, method, scope, "keys/k1", now=time.time() - 600), method, scope),  # expired
        ([("x-floe-forward-caller", "keys/admin")], method, scope),
    ]
    for metadata, m, s in refusals:
        with pytest.raises(QueryError) as info:
            verifier.verify(metadata, m, s)
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    tampered = [(k, v.replace("keys/k1", "keys/admin")) for k, v in sign(secret, method, scope, "keys/k1")]
    with pytest.raises(QueryError):
        verifier.verify(tampered, method, scope)
