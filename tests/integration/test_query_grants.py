"""Query grants: clients send queries straight to a query agent under a grant from the control
plane (``IssueQueryGrant``), and fall back to the control plane whenever that cannot work.

A real control plane and ``floe agent query`` process; the SDK, ``grpcurl`` and raw gRPC calls
as clients. Which path a query took is read from the control plane's own ``/metrics``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from floe import Client
from floe.errors import RpcError
from floe.v1 import common_pb2, datasets_pb2, keys_pb2, query_pb2, query_pb2_grpc
from tests.helpers import ROOT, ControlPlaneProcess, eventually, metric_value, metric_value_tls
from tests.integration.agentkit import AgentProcess
from tests.integration.test_query_service import write_hour

GRPCURL = shutil.which("grpcurl")
ROWS = 500
COUNT = "SELECT count(*) AS n FROM logs"


@dataclass
class Site:
    cp: ControlPlaneProcess
    agent: AgentProcess
    admin: Client
    viewer: str
    agent_key: str
    store: Path


def _site(
    cp: ControlPlaneProcess, data_dir: Path, store: Path, *agent_args: str, client: dict[str, Any] | None = None
) -> Site:
    """Tenants ``ga``/``gb`` with ``logs`` datasets on ``cp`` and a query agent over ``store``."""
    admin = Client(cp.grpc, api_key=cp.admin_key, retries=0, **(client or {}))
    http = datasets_pb2.Dataset(source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=18299))
    for tenant in ("ga", "gb"):
        admin.tenants.create(tenant)
        admin.datasets.create(tenant, "logs", http)
    admin.datasets.create("ga", "other", http)
    _, viewer = admin.keys.create(common_pb2.ROLE_VIEWER, tenant="ga")
    _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    agent = AgentProcess(
        "query", "query-g", data_dir, "--parquet-store", str(store), "--query-grpc-listen", "127.0.0.1:0",
        *agent_args, control_url=cp.grpc, key=agent_key,
    ).start()  # fmt: skip
    eventually(lambda: admin.query.execute(COUNT, dataset="ga/logs"), timeout=30)
    return Site(cp, agent, admin, viewer, agent_key, store)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grants-parquet")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for tenant, dataset in (("ga", "logs"), ("gb", "logs"), ("ga", "other")):
        write_hour(root, tenant, dataset, hour, ROWS, tag=f"{tenant}-{dataset}")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, store: Path) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("grants")
    cp = ControlPlaneProcess(base / "cp", "--agent-heartbeat-interval", "1s").start()
    try:
        s = _site(cp, base / "agents", store)
        try:
            yield s
        finally:
            s.agent.stop()
            s.admin.close()
    finally:
        cp.stop()


def calls(cp: ControlPlaneProcess, method: str, ca: Path | None = None) -> float:
    """How many calls of QueryService ``method`` the control plane has started (its HTTP port
    verified with ``ca`` when it serves TLS)."""
    labels = {"grpc_service": "floe.v1.QueryService", "grpc_method": method}
    if ca is not None:
        return metric_value_tls(cp.http, ca, "grpc_server_started_total", **labels)
    return metric_value(cp.http, "grpc_server_started_total", **labels)


def grant(cp: ControlPlaneProcess, key: str, dataset: str) -> query_pb2.QueryGrant:
    with grpc.insecure_channel(cp.grpc) as channel:
        response = query_pb2_grpc.QueryServiceStub(channel).IssueQueryGrant(
            query_pb2.IssueQueryGrantRequest(dataset=dataset), metadata=[("authorization", f"Bearer {key}")], timeout=10
        )
    out: query_pb2.QueryGrant = response.grant
    return out


def direct(
    endpoint: str, metadata: list[tuple[str, str]], dataset: str = "tenants/ga/datasets/logs", sql: str = COUNT
) -> tuple[grpc.StatusCode, list[query_pb2.ExecuteQueryResponse]]:
    """ExecuteQuery on the agent itself: the status and the responses."""
    request = query_pb2.ExecuteQueryRequest(dataset=dataset, sql=sql, single_response=True)
    with grpc.insecure_channel(endpoint) as channel:
        try:
            out = list(query_pb2_grpc.QueryServiceStub(channel).ExecuteQuery(request, metadata=metadata, timeout=10))
        except grpc.RpcError as exc:
            return exc.code(), []
    return grpc.StatusCode.OK, out


def test_sdk_queries_go_straight_to_the_agent_after_one_grant(site: Site) -> None:
    with Client(site.cp.grpc, api_key=site.viewer, retries=0) as viewer:
        forwarded, granted = calls(site.cp, "ExecuteQuery"), calls(site.cp, "IssueQueryGrant")
        for _ in range(3):
            result = viewer.query.execute(COUNT, dataset="ga/logs")
            assert result.table.to_pylist() == [{"n": ROWS}]
        assert calls(site.cp, "IssueQueryGrant") == granted + 1
        assert calls(site.cp, "ExecuteQuery") == forwarded  # none went through the control plane
        # The same through the async API (its own channels, the shared grant).
        import asyncio

        async def main() -> None:
            responses = [r async for r in viewer._target.query.stream(COUNT, dataset="ga/logs")]
            assert [r.WhichOneof("payload") for r in responses] == ["header", "chunk", "summary"]

        asyncio.run(main())
        assert calls(site.cp, "ExecuteQuery") == forwarded
    # Turned off by the client: every query through the control plane.
    with Client(site.cp.grpc, api_key=site.viewer, retries=0, direct_queries=False) as viewer:
        assert viewer.query.execute(COUNT, dataset="ga/logs").table.to_pylist() == [{"n": ROWS}]
        assert calls(site.cp, "ExecuteQuery") == forwarded + 1


@pytest.mark.skipif(GRPCURL is None, reason="grpcurl comes with pip install -e '.[dev]'")
def test_grpcurl_gets_a_grant_and_queries_the_agent_with_it(site: Site) -> None:
    assert GRPCURL is not None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [GRPCURL, "-plaintext", "-max-time", "20", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    issued = run(
        "-H", f"authorization: Bearer {site.viewer}", "-d", json.dumps({"dataset": "tenants/ga/datasets/logs"}),
        site.cp.grpc, "floe.v1.QueryService/IssueQueryGrant",
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    granted = json.loads(issued.stdout)["grant"]
    assert granted["endpoint"] == site.agent.addresses["query_grpc"] and granted["agent"] == "agents/query-g"
    assert datetime.fromisoformat(granted["expire_time"]) > datetime.now(UTC) + timedelta(minutes=4)
    # The agent serves no reflection: grpcurl reads the schema from the .proto sources.
    answer = run(
        "-import-path", str(ROOT / "proto"), "-proto", "floe/v1/query.proto",
        "-H", f"x-floe-query-grant: {granted['token']}",
        "-d", json.dumps({"dataset": "tenants/ga/datasets/logs", "sql": COUNT, "format": "RESULT_FORMAT_JSON"}),
        granted["endpoint"], "floe.v1.QueryService/ExecuteQuery",
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert '"n": "500"' in answer.stdout or '"n": 500' in answer.stdout, answer.stdout


def test_a_grant_opens_one_dataset_for_queries_and_nothing_else(site: Site) -> None:
    g = grant(site.cp, site.viewer, "tenants/ga/datasets/logs")
    token = [("x-floe-query-grant", g.token)]
    status, responses = direct(g.endpoint, token)
    assert status == grpc.StatusCode.OK and responses[0].result.summary.row_count == 1
    # Reused: a grant is good for many queries until it expires.
    assert direct(g.endpoint, token)[0] == grpc.StatusCode.OK
    # Another tenant's dataset, another dataset of the same tenant: the grant does not fit.
    assert direct(g.endpoint, token, "tenants/gb/datasets/logs")[0] == grpc.StatusCode.UNAUTHENTICATED
    assert direct(g.endpoint, token, "tenants/ga/datasets/other")[0] == grpc.StatusCode.UNAUTHENTICATED
    # ... not even with the admin's key alongside: agents never take API keys.
    admin_too = [*token, ("authorization", f"Bearer {site.cp.admin_key}")]
    assert direct(g.endpoint, admin_too, "tenants/gb/datasets/logs")[0] == grpc.StatusCode.UNAUTHENTICATED
    # Tampered with: a longer life, another caller, a changed signature.
    kind, expires, who, mac = g.token.split(".")
    for forged in (
        f"{kind}.{int(expires) + 60}.{who}.{mac}",
        f"{kind}.{expires}.a2V5cy9hZG1pbg.{mac}",
        f"{kind}.{expires}.{who}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
        "g1.1.x.y",
        "",
    ):
        assert direct(g.endpoint, [("x-floe-query-grant", forged)])[0] == grpc.StatusCode.UNAUTHENTICATED, forged
    # Queries only: no schema, listing or limits with it.
    with grpc.insecure_channel(g.endpoint) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetSchema(query_pb2.GetSchemaRequest(dataset=g.dataset), metadata=token, timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            stub.IssueQueryGrant(query_pb2.IssueQueryGrantRequest(dataset=g.dataset), metadata=token, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_grant_needs_read_access_to_the_dataset(site: Site) -> None:
    def refused(key: str | None, dataset: str) -> grpc.StatusCode:
        metadata = [("authorization", f"Bearer {key}")] if key else []
        with grpc.insecure_channel(site.cp.grpc) as channel:
            try:
                query_pb2_grpc.QueryServiceStub(channel).IssueQueryGrant(
                    query_pb2.IssueQueryGrantRequest(dataset=dataset), metadata=metadata, timeout=10
                )
            except grpc.RpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert refused(site.viewer, "tenants/gb/datasets/logs") == grpc.StatusCode.NOT_FOUND
    assert refused(site.viewer, "tenants/ga/datasets/nope") == grpc.StatusCode.NOT_FOUND
    assert refused(site.viewer, "ga/logs") == grpc.StatusCode.INVALID_ARGUMENT
    assert refused(site.agent_key, "tenants/ga/datasets/logs") == grpc.StatusCode.PERMISSION_DENIED
    assert refused(None, "tenants/ga/datasets/logs") == grpc.StatusCode.UNAUTHENTICATED
    # And the SDK gives a viewer of another tenant the control plane's answer, not a grant.
    with Client(site.cp.grpc, api_key=site.viewer, retries=0) as viewer:
        with pytest.raises(RpcError) as err:
            viewer.query.execute(COUNT, dataset="gb/logs")
        assert err.value.code == grpc.StatusCode.NOT_FOUND


def test_a_restarted_agent_voids_its_grants_and_the_sdk_carries_on(site: Site) -> None:
    with Client(site.cp.grpc, api_key=site.viewer, retries=0) as viewer:
        assert viewer.query.execute(COUNT, dataset="ga/logs").table.to_pylist() == [{"n": ROWS}]
        old = grant(site.cp, site.viewer, "tenants/ga/datasets/logs")
        site.agent.restart()
        eventually(lambda: site.admin.query.execute(COUNT, dataset="ga/logs", timeout=5), timeout=30)
        forwarded = calls(site.cp, "ExecuteQuery")
        # The cached grant died with the agent's secret (and its port changed): this query goes
        # through the control plane, and the SDK stops trying the agent directly for a while.
        assert viewer.query.execute(COUNT, dataset="ga/logs").table.to_pylist() == [{"n": ROWS}]
        assert calls(site.cp, "ExecuteQuery") == forwarded + 1
        assert direct(site.agent.addresses["query_grpc"], [("x-floe-query-grant", old.token)])[0] in (
            grpc.StatusCode.UNAUTHENTICATED,
        )


def test_with_grants_off_every_query_goes_through_the_control_plane(
    start_control_plane: Callable[..., ControlPlaneProcess], tmp_path: Path, store: Path
) -> None:
    cp = start_control_plane("--agent-heartbeat-interval", "1s", "--query-grant-ttl", "0")
    s = _site(cp, tmp_path / "agents", store)
    try:
        with grpc.insecure_channel(cp.grpc) as channel, pytest.raises(grpc.RpcError) as info:
            query_pb2_grpc.QueryServiceStub(channel).IssueQueryGrant(
                query_pb2.IssueQueryGrantRequest(dataset="tenants/ga/datasets/logs"),
                metadata=[("authorization", f"Bearer {s.viewer}")],
                timeout=10,
            )
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "query_grant_ttl" in info.value.details()
        with Client(cp.grpc, api_key=s.viewer, retries=0) as viewer:
            before, asked = calls(cp, "ExecuteQuery"), calls(cp, "IssueQueryGrant")
            for _ in range(2):
                assert viewer.query.execute(COUNT, dataset="ga/logs").table.to_pylist() == [{"n": ROWS}]
            assert calls(cp, "ExecuteQuery") == before + 2
            assert calls(cp, "IssueQueryGrant") == asked + 1  # asked once, then not again for a while
    finally:
        s.agent.stop()
        s.admin.close()


def test_tls_agents_are_queried_directly_only_when_the_client_verifies_them(
    start_control_plane: Callable[..., ControlPlaneProcess], tmp_path: Path, store: Path, pki: dict[str, Path]
) -> None:
    tls = ("--listen-tls-cert-file", str(pki["server_cert"]), "--listen-tls-key-file", str(pki["server_key"]))
    ca = pki["ca"]
    # The client verifies the control plane with the test CA, and so the agent too: straight to it.
    cp = start_control_plane(
        "--agent-heartbeat-interval", "1s", "--query-ca-file", str(ca),
        "--tls-cert-file", str(pki["server_cert"]), "--tls-key-file", str(pki["server_key"]),
    )  # fmt: skip
    s = _site(cp, tmp_path / "agents-1", store, *tls, "--ca-file", str(ca), client={"ca_file": ca})
    try:
        with Client(cp.grpc, api_key=s.viewer, retries=0, ca_file=ca) as viewer:
            before = calls(cp, "ExecuteQuery", ca)
            assert viewer.query.execute(COUNT, dataset="ga/logs").table.to_pylist() == [{"n": ROWS}]
            assert calls(cp, "ExecuteQuery", ca) == before
    finally:
        s.agent.stop()
        s.admin.close()
    # A client talking plaintext to its control plane checks agents against the system's CAs,
    # which do not know the test CA: its queries go through the control plane (which has the CA).
    cp = start_control_plane("--agent-heartbeat-interval", "1s", "--query-ca-file", str(ca))
    s = _site(cp, tmp_path / "agents-2", store, *tls)
    try:
        with Client(cp.grpc, api_key=s.viewer, retries=0) as viewer:
            before = calls(cp, "ExecuteQuery")
            started = time.monotonic()
            assert viewer.query.execute(COUNT, dataset="ga/logs").table.to_pylist() == [{"n": ROWS}]
            assert time.monotonic() - started < 2  # the failed handshake ended the attempt at once
            assert calls(cp, "ExecuteQuery") == before + 1
    finally:
        s.agent.stop()
        s.admin.close()
