"""A real ``floe agent connector`` exporting Parquet to the Elasticsearch bulk protocol
(``fake_es``, a protocol fake in its own process): watch mode sends only new files and resumes
after a restart without re-sending; batch mode runs once; partial failures, 429s and mapping
errors; a job's SQL cannot read outside its dataset; jobs created through the control plane."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from agents.runtime.layout import parquet_key
from agents.runtime.objectstore import LocalStore
from floe.client import Client
from floe.v1 import common_pb2, datasets_pb2, exports_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess, http_get

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "ZmFrZTpzZWNyZXQ="


class FakeEs:
    """``python -m tests.integration.fake_es`` as a child process."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.fake_es", "--port", "0", *args],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:  # noqa: S310 - the fake's http:// URL
            return json.loads(resp.read())

    def faults(self, **faults: Any) -> None:
        url = self.url + "/_fake/faults"
        req = urllib.request.Request(url, data=json.dumps(faults).encode(), method="POST")  # noqa: S310 - http://
        req.add_header("Content-Type", "application/json")
        urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 - the fake's http:// URL

    def docs(self, index: str) -> dict[str, Any]:
        return dict(self.get(f"/_fake/docs/{index}")["docs"])

    def stats(self) -> dict[str, Any]:
        return dict(self.get("/_fake/stats"))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def es() -> Iterator[FakeEs]:
    fake = FakeEs("--api-key", API_KEY)
    yield fake
    fake.close()


def put_parquet(data_dir: Path, key_parts: tuple[str, str, str, str], rows: dict[str, list[Any]]) -> str:
    """Write a Parquet file where packers put them (the agents' default local store)."""
    buf = io.BytesIO()
    pq.write_table(pa.table(rows), buf, compression="zstd")
    key = parquet_key(*key_parts)

    async def put() -> None:
        async with LocalStore(data_dir / "objects" / "parquet") as store:
            await store.put(key, buf.getvalue())

    asyncio.run(put())
    return key


def ts(n: int) -> datetime:
    return datetime(2026, 3, 1, 10, 0, n, tzinfo=UTC)


def es_job(name: str, url: str, *, mode: str = "EXPORT_MODE_WATCH", query: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": "tenants/acme/datasets/fw",
        "query": query,
        "mode": mode,
        "interval": "1s",
        "retry": {"maxAttempts": 6, "initialBackoff": "0.1s", "maxBackoff": "1s"},
        "destination": {"elasticsearch": {"url": url, "index": "logs", "apiKey": {"env": "TEST_ES_KEY"}}},
        **extra,
    }


def local_connector(tmp_path: Path, jobs: list[dict[str, Any]], name: str = "conn-1") -> AgentProcess:
    config = tmp_path / "connector.yaml"
    config.write_text(yaml.safe_dump({"exports": jobs}))
    return AgentProcess(
        "connector",
        name,
        tmp_path / "data",
        "--config",
        str(config),
        config_mode="local-only",
        env={"TEST_ES_KEY": API_KEY},
    )


def exports_status(agent: AgentProcess) -> dict[str, dict[str, Any]]:
    status, body = http_get(agent.api, "/api/v1/exports")
    assert status == 200
    return {j["name"]: j for j in body["jobs"]}


def test_watch_exports_new_files_once_and_resumes_after_restart(tmp_path: Path, es: FakeEs) -> None:
    data = tmp_path / "data"
    first = put_parquet(data, ("acme", "fw", "2026030110", "a"), {"timestamp": [ts(1), ts(2)], "msg": ["one", "two"]})
    agent = local_connector(tmp_path, [es_job("tenants/acme/exports/to-es", es.url)]).start()
    try:
        eventually(lambda: len(es.docs("logs")) == 2, timeout=30)
        docs = es.docs("logs")
        assert sorted(d["msg"] for d in docs.values()) == ["one", "two"]
        assert {d["timestamp"] for d in docs.values()} == {"2026-03-01T10:00:01.000000Z", "2026-03-01T10:00:02.000000Z"}
        # A new file with another schema (union by name, new column): only it is sent.
        put_parquet(data, ("acme", "fw", "2026030111", "b"), {"msg": ["three"], "severity": [3]})
        eventually(lambda: len(es.docs("logs")) == 3, timeout=30)
        assert es.stats()["items"] == 3
        # The job goes back to "watching" once the pass that sent the file has committed its cursor.
        eventually(lambda: exports_status(agent)["tenants/acme/exports/to-es"]["state"] == "watching", timeout=10)
        status = exports_status(agent)["tenants/acme/exports/to-es"]
        assert status["events_out"] == 3 and status["last_error"] == ""
        assert agent.stop() == 0
        # Written while the connector is down: exported after the restart, and nothing else.
        put_parquet(data, ("acme", "fw", "2026030112", "c"), {"msg": ["four"]})
        agent.start()
        eventually(lambda: len(es.docs("logs")) == 4, timeout=30)
        eventually(lambda: exports_status(agent)["tenants/acme/exports/to-es"]["state"] == "watching", timeout=10)
        assert es.stats()["items"] == 4, "a file exported before the restart was sent again"
        health = agent.healthz()["health"]
        comp = next(c for c in health["components"] if c["name"] == "export/acme/exports/to-es")
        assert int(comp["events_out"]) == 1  # this process sent one event
        assert first.endswith(".parquet")
    finally:
        agent.stop()


def test_batch_mode_runs_once(tmp_path: Path, es: FakeEs) -> None:
    data = tmp_path / "data"
    put_parquet(data, ("acme", "fw", "2026030110", "a"), {"n": [1, 2, 3, 4, 5], "msg": list("abcde")})
    job = es_job("tenants/acme/exports/once", es.url, mode="EXPORT_MODE_BATCH", query="n >= 3", batchSize=2)
    agent = local_connector(tmp_path, [job]).start()
    try:
        eventually(lambda: exports_status(agent)["tenants/acme/exports/once"]["state"] == "completed", timeout=30)
        assert sorted(d["n"] for d in es.docs("logs").values()) == [3, 4, 5]
        assert es.stats()["requests"] == 2  # batch_size 2: two requests for three rows
        # Partition columns the file lacks are filterable but not exported.
        assert all(set(d) == {"n", "msg"} for d in es.docs("logs").values())
        put_parquet(data, ("acme", "fw", "2026030111", "b"), {"n": [9], "msg": ["z"]})
        agent.restart()
        eventually(lambda: exports_status(agent)["tenants/acme/exports/once"]["state"] == "completed", timeout=30)
        assert es.stats()["items"] == 3, "a completed batch job ran again"
    finally:
        agent.stop()


def test_partial_failures_throttling_and_dlq(tmp_path: Path, es: FakeEs) -> None:
    data = tmp_path / "data"
    # Mapping fixed by the first file (code: long); the second file has a value that cannot fit.
    put_parquet(data, ("acme", "fw", "2026030110", "a"), {"code": [1, 2], "msg": ["x", "y"]})
    put_parquet(data, ("acme", "fw", "2026030111", "b"), {"code": ["oops", "7"], "msg": ["bad", "fine"]})
    # The first request is refused as a whole (429 + Retry-After), then two items are throttled.
    es.faults(reject_requests=1, reject_status=429, retry_after="1", throttle_items=2)
    agent = local_connector(tmp_path, [es_job("tenants/acme/exports/faulty", es.url)]).start()
    try:
        eventually(lambda: exports_status(agent)["tenants/acme/exports/faulty"]["dead_lettered"] == 1, timeout=30)
        docs = es.docs("logs")
        assert sorted(d["msg"] for d in docs.values()) == ["fine", "x", "y"]
        assert es.stats()["rejected_requests"] == 1
        status, body = http_get(agent.api, "/api/v1/dlq/files")
        assert status == 200 and body["count"] == 1
        entry = body["files"][0]
        assert "mapper_parsing_exception" in json.dumps(entry)
        health = agent.healthz()["health"]
        dlq = next(c for c in health["components"] if c["name"] == "dlq")
        assert int(dlq.get("dlq_size", 0)) == 1
    finally:
        agent.stop()


def test_wrong_credentials_stop_the_pass_without_losing_data(tmp_path: Path, es: FakeEs) -> None:
    data = tmp_path / "data"
    put_parquet(data, ("acme", "fw", "2026030110", "a"), {"msg": ["kept"]})
    agent = local_connector(tmp_path, [es_job("tenants/acme/exports/badkey", es.url)])
    agent.env["TEST_ES_KEY"] = "d3Jvbmc="
    agent.start()
    try:
        st = eventually(lambda: exports_status(agent)["tenants/acme/exports/badkey"], timeout=30)
        eventually(lambda: "credentials (401)" in exports_status(agent)["tenants/acme/exports/badkey"]["last_error"])
        assert st["events_out"] == 0
        assert agent.healthz()["status"] == "degraded"
        # Fixed on the connector host: the same rows go out, nothing went to the DLQ.
        agent.stop()
        agent.env["TEST_ES_KEY"] = API_KEY
        agent.start()
        eventually(lambda: len(es.docs("logs")) == 1, timeout=30)
    finally:
        agent.stop()


def test_job_reads_only_its_dataset(tmp_path: Path, es: FakeEs) -> None:
    data = tmp_path / "data"
    put_parquet(data, ("acme", "fw", "2026030110", "a"), {"msg": ["mine"]})
    other = put_parquet(data, ("evil", "fw", "2026030110", "a"), {"msg": ["secret"]})
    path = data / "objects" / "parquet" / other
    jobs = [
        es_job("tenants/acme/exports/sneaky", es.url, query=f"SELECT * FROM read_parquet('{path}')"),  # noqa: S608 - the attack under test
        es_job("tenants/acme/exports/csv", es.url, query="SELECT * FROM read_csv('/etc/passwd')"),
        es_job("tenants/acme/exports/own", es.url, query="SELECT msg FROM fw"),
    ]
    agent = local_connector(tmp_path, jobs).start()
    try:
        eventually(lambda: len(es.docs("logs")) == 1, timeout=30)
        assert [d["msg"] for d in es.docs("logs").values()] == ["mine"]
        for name in ("sneaky", "csv"):
            job = f"tenants/acme/exports/{name}"

            def last_error(job: str = job) -> str:
                return str(exports_status(agent)[job]["last_error"])

            err = eventually(last_error, timeout=30)
            assert "disabled by configuration" in err, err
    finally:
        agent.stop()


def test_export_job_from_the_control_plane(
    tmp_path: Path, es: FakeEs, start_control_plane: Callable[..., ControlPlaneProcess]
) -> None:
    cp = start_control_plane()
    with Client(cp.grpc, api_key=cp.admin_key, retries=0) as admin:
        admin.tenants.create("acme")
        ds = datasets_pb2.Dataset(source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=18931))
        admin.datasets.create("tenants/acme", "fw", ds)
        _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, display_name="connector")
        job = exports_pb2.ExportJob()
        from google.protobuf import json_format

        spec = es_job("", es.url)
        del spec["name"]
        json_format.ParseDict(spec, job)
        created = admin.exports.create("tenants/acme", "to-es", job)
        assert created.name == "tenants/acme/exports/to-es" and created.etag
        assert [j.name for j in admin.exports.list("tenants/acme")] == ["tenants/acme/exports/to-es"]
    data = tmp_path / "data"
    put_parquet(data, ("acme", "fw", "2026030110", "a"), {"msg": ["from the control plane"]})
    agent = AgentProcess(
        "connector", "conn-cp", data, control_url=cp.grpc, key=agent_key, env={"TEST_ES_KEY": API_KEY}
    ).start()
    try:
        eventually(lambda: len(es.docs("logs")) == 1, timeout=30)
        configs = agent.healthz()["configs"]
        assert configs["exports"]["status"] == "applied"
    finally:
        agent.stop()
