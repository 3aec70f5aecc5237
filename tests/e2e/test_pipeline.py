"""The whole path from a fresh directory, as the README quickstart runs it: ``floe up``, a tenant
and a syslog dataset, lines sent with ``logger`` to the proxy and NDJSON posted with ``curl`` to
the receiver, all of it readable as Parquet within 90 seconds."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from floe import Client
from floe.v1 import datasets_pb2
from tests.helpers import eventually
from tests.upkit import Up, clean_env, endpoint, run_floe


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    started = Up(tmp_path)
    try:
        yield started
    finally:
        # SIGTERM lets floe up stop its children; SIGKILL would leave them running.
        try:
            started.stop(signal.SIGTERM, timeout=60)
        finally:
            started.kill()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rows(parquet_root: Path, tenant: str, dataset: str, columns: str) -> list[tuple[object, ...]]:
    files = list((parquet_root / tenant / dataset / "data" / "parquet").rglob("*.parquet"))
    if not files:
        return []
    query = f"SELECT {columns} FROM read_parquet(?, union_by_name=true, hive_partitioning=true) ORDER BY ALL"  # noqa: S608
    return duckdb.connect().execute(query, [[str(f) for f in files]]).fetchall()


def test_logger_and_curl_to_parquet_from_a_fresh_directory(up: Up, tmp_path: Path) -> None:
    banner = up.read_until("Press Ctrl-C")
    grpc = endpoint(banner, "control plane gRPC")
    ingest = endpoint(banner, "HTTP ingest").removesuffix("/TENANT/DATASET")
    data = tmp_path / "floe-data"
    admin_key = (data / "admin.key").read_text().strip()
    port = _free_udp_port()
    with Client(grpc, api_key=admin_key) as admin:
        admin.tenants.create("acme", display_name="ACME")
        syslog = datasets_pb2.Dataset(
            source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_UDP, bind_host="127.0.0.1", port=port),
            proxy=datasets_pb2.ProxyAssignment(agent="local"),
            active=True,
            testing=True,
        )
        admin.datasets.create("acme", "syslog", syslog)
        web = datasets_pb2.Dataset(
            source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=_free_udp_port()),
            active=True,
            testing=True,
        )
        admin.datasets.create("acme", "web", web)
        eventually(lambda: not admin.agents.get("local").drift and not admin.agents.get("receiver").drift, timeout=30)

        def listening() -> bool:
            comps = admin.agents.get("local").last_health.components
            return any(c.name == "source/tenants/acme/datasets/syslog" for c in comps)

        eventually(listening, timeout=30)

    for i in range(20):
        subprocess.run(
            ["logger", "--rfc5424", "-n", "127.0.0.1", "-P", str(port), "-d", "-t", "e2e", f"hello from logger {i}"],
            check=True,
            timeout=10,
        )
    body = "".join(json.dumps({"user": f"u{i}", "action": "login"}) + "\n" for i in range(5))
    curl = subprocess.run(
        [
            "curl", "-sS", "--noproxy", "*", "-X", "POST",
            "-H", f"Authorization: Bearer {admin_key}",
            "-H", "Content-Type: application/x-ndjson",
            "--data-binary", body,
            "-w", "\n%{http_code}",
            f"http://{ingest}/acme/web",
        ],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    assert curl.stdout.rsplit("\n", 1)[1] == "200", curl.stdout
    assert "batch_id" in json.loads(curl.stdout.rsplit("\n", 1)[0])

    parquet = data / "agents" / "objects" / "parquet"

    def syslog_arrived() -> list[tuple[object, ...]]:
        rows = _rows(parquet, "acme", "syslog", "app_name, message, severity")
        return rows if len(rows) >= 20 else []

    rows = eventually(syslog_arrived, timeout=90, interval=1)
    assert rows == sorted(("e2e", f"hello from logger {i}", 5) for i in range(20))
    web_rows = eventually(lambda: _rows(parquet, "acme", "web", "user, action"), timeout=90, interval=1)
    assert web_rows == [(f"u{i}", "login") for i in range(5)]

    # And as the quickstart reads them: `floe query` through the control plane.
    def query(sql: str, dataset: str) -> list[dict[str, object]]:
        done = run_floe(
            "query", sql, "--dataset", dataset, "--format", "json",
            env=clean_env(FLOE_CONTROL_URL=grpc), cwd=tmp_path, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]  # one object per line

    found = eventually(
        lambda: query("SELECT message FROM syslog WHERE app_name = 'e2e' ORDER BY message", "acme/syslog"), timeout=30
    )
    assert [r["message"] for r in found] == sorted(f"hello from logger {i}" for i in range(20))
    assert query("SELECT count(*) AS n FROM web", "acme/web") == [{"n": 5}]
