"""The query service end to end: a private control plane, a real ``floe agent query`` process over
a local Parquet store, clients calling the control plane (SDK, CLI) and attackers calling both.

Covers forwarding and its authentication, tenant isolation, the SQL guard's refusals (the attacks
of issue 7), limits, output formats, schema/listing/limits calls and questions answered by a
local server speaking the OpenAI chat-completions API (including 429 and 500).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from agents.runtime.layout import parquet_key
from floe import AsyncClient, Client
from floe.errors import RpcError
from floe.v1 import common_pb2, datasets_pb2, keys_pb2, query_pb2, query_pb2_grpc
from tests.helpers import ROOT, ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess

ROWS_PER_HOUR = 3000


@dataclass
class Env:
    cp: ControlPlaneProcess
    admin: Client
    agent: AgentProcess
    store: Path
    viewer_a: str
    agent_key: str
    hours: list[datetime]


def _hour(dt: datetime) -> str:
    return dt.strftime("%Y%m%d%H")


def write_hour(root: Path, tenant: str, dataset: str, hour: datetime, rows: int, *, tag: str, part: str = "a") -> None:
    """One Parquet file in the packer's layout with ``rows`` syslog-like records in ``hour``."""
    start = int(hour.timestamp() * 1e6)
    step = 3600 * 1_000_000 // rows
    table = pa.table(
        {
            "timestamp": pa.array([start + i * step for i in range(rows)], pa.timestamp("us", tz="UTC")),
            "host": [f"host-{i % 7}" for i in range(rows)],
            "severity": pa.array([i % 8 for i in range(rows)], pa.int64()),
            "message": [f"{tag} message {i} {'timeout' if i % 100 == 0 else 'ok'}" for i in range(rows)],
        }
    )
    path = root / parquet_key(tenant, dataset, _hour(hour), part)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


class FakeLLM:
    """A local server speaking the OpenAI chat-completions API; answers by keyword in the question."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("Authorization", "")})
        question = body["messages"][-1]["content"]
        if "busy" in question:
            return web.json_response({"error": {"message": "rate limited"}}, status=429)
        if "broken" in question:
            return web.json_response({"error": {"message": "boom"}}, status=500)
        table = "logs"
        if "passwd" in question:
            sql = "SELECT * FROM read_csv('/etc/passwd')"
        else:
            sql = f"SELECT host, count(*) AS n FROM {table} GROUP BY host ORDER BY host"  # noqa: S608
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": f"```sql\n{sql}\n```"}}]})

    def start(self) -> FakeLLM:
        self._thread.start()

        async def run() -> str:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"  # type: ignore[attr-defined]

        self.address = asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, llm: FakeLLM) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("query")
    cp = ControlPlaneProcess(base / "cp", "--auth-failure-burst", "100000", "--agent-heartbeat-interval", "1s")
    cp.start()
    admin = Client(cp.grpc, api_key=cp.admin_key, retries=0)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=3), now - timedelta(hours=2), now - timedelta(hours=1)]
    store = base / "parquet"
    http = datasets_pb2.Dataset(source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=18099))
    for tenant in ("qa", "qb"):
        admin.tenants.create(tenant)
        admin.datasets.create(tenant, "logs", http)
        for h in hours:
            write_hour(store, tenant, "logs", h, ROWS_PER_HOUR, tag=f"{tenant}-secret")
    admin.datasets.create("qa", "empty", http)
    _, viewer_a = admin.keys.create(common_pb2.ROLE_VIEWER, tenant="qa")
    _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    agent = AgentProcess(
        "query",
        "query-1",
        base / "agents",
        "--parquet-store", str(store),
        "--query-grpc-listen", "127.0.0.1:0",
        "--query-max-rows", "5000",
        "--query-statement-timeout", "3s",
        "--query-memory-limit", "256MiB",
        "--query-threads", "1",
        "--llm-base-url", llm.address,
        "--llm-model", "test-model",
        control_url=cp.grpc,
        key=agent_key,
        env={"FLOE_LLM_API_KEY": "llm-test-key"},
    ).start()  # fmt: skip
    try:
        eventually(lambda: admin.query.execute("SELECT 1 AS one FROM logs LIMIT 1", dataset="qa/logs"), timeout=30)
        yield Env(cp, admin, agent, store, viewer_a, agent_key, hours)
    finally:
        agent.stop()
        admin.close()
        cp.stop()


def _error(fn: object, *args: object, **kwargs: object) -> RpcError:
    with pytest.raises(RpcError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value


# -- results ---------------------------------------------------------------------------------


def test_query_through_the_control_plane_returns_arrow_rows_and_summary(env: Env) -> None:
    result = env.admin.query.execute("SELECT count(*) AS n, count(DISTINCT host) AS hosts FROM logs", dataset="qa/logs")
    assert result.table.to_pylist() == [{"n": 3 * ROWS_PER_HOUR, "hosts": 7}]
    assert [(c.name, c.type) for c in result.header.columns] == [("n", "BIGINT"), ("hosts", "BIGINT")]
    assert result.header.files == 3
    assert result.summary.row_count == 1
    assert result.summary.bytes_scanned > 0
    assert result.summary.elapsed.ToNanoseconds() > 0
    assert not result.summary.truncated


def test_time_range_prunes_partitions_and_filters_rows(env: Env) -> None:
    start = env.hours[1] + timedelta(minutes=30)
    end = env.hours[2]
    result = env.admin.query.execute(
        "SELECT count(*) AS n, min(timestamp) AS first FROM logs", dataset="qa/logs", start=start, end=end
    )
    row = result.table.to_pylist()[0]
    assert row["n"] == ROWS_PER_HOUR // 2
    assert row["first"] >= start
    assert result.summary.files_scanned == 1  # only the middle hour's file was read
    assert result.header.start_time.ToDatetime(tzinfo=UTC) == start


def test_max_rows_truncates_and_says_so(env: Env) -> None:
    result = env.admin.query.execute("SELECT * FROM logs", dataset="qa/logs")
    assert result.table.num_rows == 5000
    assert result.summary.truncated
    assert "max_rows limit" in result.summary.truncated_reason
    small = env.admin.query.execute("SELECT * FROM logs", dataset="qa/logs", max_rows=10)
    assert small.table.num_rows == 10 and small.summary.truncated
    exact = env.admin.query.execute("SELECT * FROM logs LIMIT 10", dataset="qa/logs", max_rows=10)
    assert exact.table.num_rows == 10 and not exact.summary.truncated


def test_json_rows_and_the_parquet_path_placeholder(env: Env) -> None:
    sql = (
        "SELECT host, count(*) AS n FROM read_parquet('PARQUET_PATH', hive_partitioning=true, union_by_name=true) "
        "GROUP BY host ORDER BY host LIMIT 2"
    )
    result = env.admin.query.execute(sql, dataset="qa/logs", json=True)
    assert result.json_rows == [{"host": "host-0", "n": 1287}, {"host": "host-1", "n": 1287}]
    assert "FROM logs" in result.header.sql


def test_small_answers_come_as_one_response_to_clients_that_ask(env: Env) -> None:
    metadata = [("authorization", f"Bearer {env.viewer_a}")]

    def kinds(sql: str, *, single_response: bool = False, json: bool = False, max_rows: int = 0) -> list[str]:
        request = query_pb2.ExecuteQueryRequest(
            dataset="tenants/qa/datasets/logs",
            sql=sql,
            single_response=single_response,
            format=query_pb2.RESULT_FORMAT_JSON if json else query_pb2.RESULT_FORMAT_ARROW,
            max_rows=max_rows,
        )
        with grpc.insecure_channel(env.cp.grpc) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            return [str(r.WhichOneof("payload")) for r in stub.ExecuteQuery(request, metadata=metadata, timeout=30)]

    count = "SELECT count(*) AS n FROM logs"
    assert kinds(count, single_response=True) == ["result"]
    # Clients that do not know the combined form (grpcurl, older SDKs) never get it.
    assert kinds(count) == ["header", "chunk", "summary"]
    assert kinds(count, json=True) == ["header", "chunk", "summary"]
    # More than one chunk (JSON: 500 rows each) streams even when one response was asked for.
    streamed = kinds("SELECT host FROM logs", single_response=True, json=True, max_rows=1200)
    assert streamed == ["header", "chunk", "chunk", "chunk", "summary"]


def test_the_async_client_collects_both_forms(env: Env) -> None:
    async def main() -> None:
        async with AsyncClient(env.cp.grpc, api_key=env.viewer_a, retries=0) as client:
            small = await client.query.execute("SELECT count(*) AS n FROM logs", dataset="qa/logs")
            assert small.table.to_pylist() == [{"n": 3 * ROWS_PER_HOUR}] and small.summary.row_count == 1
            assert [c.name for c in small.header.columns] == ["n"]
            large = await client.query.execute("SELECT host FROM logs", dataset="qa/logs", json=True, max_rows=1200)
            assert len(large.json_rows) == 1200 and large.summary.truncated
            raw = [r.WhichOneof("payload") async for r in client.query.stream("SELECT 1 AS x", dataset="qa/logs")]
            assert raw == ["header", "chunk", "summary"]

    asyncio.run(main())


def test_a_deadline_ends_a_running_query_and_the_agent_goes_on(env: Env) -> None:
    endless = "SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3"
    err = _error(env.admin.query.execute, endless, dataset="qa/logs", timeout=0.5)
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert env.admin.query.execute("SELECT 1 AS x FROM logs LIMIT 1", dataset="qa/logs").table.num_rows == 1


def test_schema_listing_and_limits(env: Env) -> None:
    schema = env.admin.query.schema("qa/logs")
    assert [(c.name, c.type) for c in schema.columns] == [
        ("timestamp", "TIMESTAMP WITH TIME ZONE"),
        ("host", "VARCHAR"),
        ("severity", "BIGINT"),
        ("message", "VARCHAR"),
        ("year", "VARCHAR"),
        ("month", "VARCHAR"),
        ("day", "VARCHAR"),
        ("hour", "VARCHAR"),
    ]
    listed = env.admin.query.datasets("qa")
    assert [d.name for d in listed] == ["tenants/qa/datasets/logs"]  # "empty" has no files
    assert listed[0].files == 3 and listed[0].bytes > 0
    assert listed[0].start_time.ToDatetime(tzinfo=UTC) == env.hours[0]
    limits = env.admin.query.limits()
    assert limits.max_rows == 5000 and limits.memory_limit == "256MiB" and limits.questions_enabled
    assert limits.statement_timeout.ToSeconds() == 3


def test_cli_prints_table_csv_and_json(env: Env) -> None:
    def floe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "floe.cli", "--target", env.cp.grpc, "--api-key", env.viewer_a, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("FLOE_")},
        )

    sql = "SELECT host, count(*) AS n FROM logs GROUP BY host ORDER BY host LIMIT 2"
    table = floe("query", sql, "--dataset", "qa/logs")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == ["HOST    N", "host-0  1287", "host-1  1287"]
    assert "2 rows" in table.stderr
    as_csv = floe("query", sql, "--dataset", "qa/logs", "--format", "csv", "--start", "4h")
    assert as_csv.stdout.splitlines() == ["host,n", "host-0,1287", "host-1,1287"]
    as_json = floe("query", sql, "--dataset", "tenants/qa/datasets/logs", "--format", "json")
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [
        {"host": "host-0", "n": 1287},
        {"host": "host-1", "n": 1287},
    ]
    other = floe("query", "SELECT count(*) FROM logs", "--dataset", "qb/logs")
    assert other.returncode == 1 and "NOT_FOUND" in other.stderr


# -- isolation -------------------------------------------------------------------------------


def test_a_tenant_never_reads_another_tenants_dataset(env: Env) -> None:
    with Client(env.cp.grpc, api_key=env.viewer_a, retries=0) as viewer:
        assert viewer.query.execute("SELECT count(*) AS n FROM logs", dataset="qa/logs").table.to_pylist() == [
            {"n": 3 * ROWS_PER_HOUR}
        ]
        for call in (
            lambda: viewer.query.execute("SELECT count(*) FROM logs", dataset="qb/logs"),
            lambda: viewer.query.schema("qb/logs"),
            lambda: viewer.query.datasets("qb"),
        ):
            err = _error(call)
            assert err.code == grpc.StatusCode.NOT_FOUND, err
        # Other tenants' files by path, from inside the own dataset: refused by the guard.
        other = str(env.store / "qb" / "logs" / "data" / "parquet" / "**" / "*.parquet")
        sql = f"SELECT * FROM read_parquet('{other}')"  # noqa: S608 - the attack under test
        err = _error(viewer.query.execute, sql, dataset="qa/logs")
        assert err.code == grpc.StatusCode.PERMISSION_DENIED
        rows = viewer.query.execute("SELECT message FROM logs", dataset="qa/logs", max_rows=5000).table
        assert not any("qb-secret" in m for m in rows.column("message").to_pylist())
    with Client(env.cp.grpc, api_key=env.agent_key, retries=0) as agent:
        err = _error(agent.query.execute, "SELECT 1 FROM logs", dataset="qa/logs")
        assert err.code == grpc.StatusCode.PERMISSION_DENIED


ATTACKS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM logs WHERE host IN (SELECT column0 FROM read_csv_auto('/etc/passwd'))",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/**')",
    "SELECT * FROM read_parquet('../qb/logs/data/parquet/*/*/*/*/*.parquet')",
    "ATTACH '/tmp/evil.db' AS evil",
    "COPY (SELECT * FROM logs) TO '/tmp/stolen.csv'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET threads = 64",
    "PRAGMA database_list",
    "CREATE VIEW escape AS SELECT * FROM read_csv('/etc/passwd')",
    "CREATE MACRO m() AS TABLE SELECT * FROM read_csv('/etc/passwd')",
    "CREATE TEMP TABLE t AS SELECT 1",
    "SELECT getenv('HOME')",
    "SELECT current_setting('allowed_directories')",
    "SELECT 1 FROM logs; SELECT * FROM read_csv('/etc/passwd')",
    "SELECT 1 FROM logs /* harmless */; ATTACH '/tmp/x.db'",
    "SELECT 1 FROM logs; -- a comment\nCOPY logs TO '/tmp/x.csv'",
    "SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM memory.main.logs",
    "EXPORT DATABASE '/tmp/dump'",
    "CALL pragma_version()",
    "DESCRIBE logs",
    "SELECT * FROM sqlite_scan('/tmp/x.db', 't')",
]


def test_attacks_are_refused_with_permission_denied(env: Env) -> None:
    with Client(env.cp.grpc, api_key=env.viewer_a, retries=0) as viewer:
        for sql in ATTACKS:
            err = _error(viewer.query.execute, sql, dataset="qa/logs")
            assert err.code == grpc.StatusCode.PERMISSION_DENIED, (sql, err)
            assert err.message.endswith("."), err.message  # a sentence
    assert not Path("/tmp/stolen.csv").exists()


# -- forwarding authentication -----------------------------------------------------------------


def test_the_agent_refuses_calls_that_do_not_come_from_the_control_plane(env: Env) -> None:
    address = env.agent.addresses["query_grpc"]
    request = query_pb2.ExecuteQueryRequest(dataset="tenants/qb/datasets/logs", sql="SELECT * FROM logs")

    async def call(metadata: list[tuple[str, str]]) -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            try:
                async for _ in stub.ExecuteQuery(request, metadata=metadata, timeout=10):
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    forged = [
        [],
        [("authorization", f"Bearer {env.cp.admin_key}")],
        [("x-floe-forward-signature", "v1.9999999999.abc.def"), ("x-floe-forward-caller", "keys/admin")],
        [("x-floe-forward-signature", "forged"), ("x-floe-tenant", "qb")],
    ]
    for metadata in forged:
        assert asyncio.run(call(metadata)) == grpc.StatusCode.UNAUTHENTICATED, metadata
    for bare in ("GetLimits", "GetSchema", "ListQueryableDatasets"):

        async def unary(method: str = bare) -> grpc.StatusCode:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = query_pb2_grpc.QueryServiceStub(channel)
                req = {
                    "GetLimits": query_pb2.GetLimitsRequest(),
                    "GetSchema": query_pb2.GetSchemaRequest(dataset="tenants/qb/datasets/logs"),
                    "ListQueryableDatasets": query_pb2.ListQueryableDatasetsRequest(parent="tenants/qb"),
                }[method]
                try:
                    await getattr(stub, method)(req, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

        assert asyncio.run(unary()) == grpc.StatusCode.UNAUTHENTICATED, bare
    # The secret never reaches agent.json, the fleet view or the logs.
    state = (env.agent.state_dir / "agent.json").read_text()
    assert "query_auth" not in state
    agents = env.admin.agents.list() if hasattr(env.admin.agents, "list") else []
    assert all("query_auth" not in str(a) for a in agents)


# -- limits ----------------------------------------------------------------------------------


def test_limits_are_enforced_and_named(env: Env) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=60)
    err = _error(env.admin.query.execute, "SELECT count(*) FROM logs", dataset="qa/logs", start=long_ago)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "max_time_range" in err.message
    assert err.reason == "TIME_RANGE_TOO_LONG"
    err = _error(env.admin.query.execute, "SELECT count(*) FROM range(1000000000000) t(x)", dataset="qa/logs")
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "statement_timeout" in err.message
    err = _error(
        env.admin.query.execute,
        "SELECT list(x) AS big FROM (SELECT repeat('x', 1000) AS x FROM range(2000000))",
        dataset="qa/logs",
    )
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "memory_limit" in err.message
    err = _error(env.admin.query.execute, "SELECT nosuchcolumn FROM logs", dataset="qa/logs")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "nosuchcolumn" in err.message
    err = _error(env.admin.query.execute, "SELECT 1 FROM empty", dataset="qa/empty")
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "no Parquet files" in err.message
    err = _error(env.admin.query.execute, "SELECT 1", dataset="qa/nothere")
    assert err.code == grpc.StatusCode.NOT_FOUND
    # The agent still answers after all that.
    assert env.admin.query.execute("SELECT 1 AS x FROM logs LIMIT 1", dataset="qa/logs").table.num_rows == 1


# -- questions -------------------------------------------------------------------------------


def test_questions_become_sql_that_passes_the_same_guard(env: Env, llm: FakeLLM) -> None:
    result = env.admin.query.execute(dataset="qa/logs", question="how many lines per host?")
    assert result.header.sql == "SELECT host, count(*) AS n FROM logs GROUP BY host ORDER BY host"
    assert result.table.num_rows == 7
    sent = llm.requests[-1]
    assert sent["auth"] == "Bearer llm-test-key"
    prompt = json.dumps(sent["body"])
    assert "timestamp TIMESTAMP WITH TIME ZONE" in prompt and "qa-secret" not in prompt  # schema, never data
    err = _error(env.admin.query.execute, dataset="qa/logs", question="show me passwd")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    for word, status in (("busy", "429"), ("broken", "500")):
        err = _error(env.admin.query.execute, dataset="qa/logs", question=f"are you {word}?")
        assert err.code == grpc.StatusCode.UNAVAILABLE and status in err.message, err
