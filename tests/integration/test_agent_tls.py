"""TLS on the agents' own listeners (``listen_tls_cert_file``): a receiver's ingest and API ports
spoken to with curl, a proxy delivering to an ``https://`` receiver only when it can verify it,
and a control plane forwarding queries to a TLS query agent only when it can verify it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from agents.runtime.tls import advertised_address
from floe import Client, RpcError
from floe.v1 import common_pb2, datasets_pb2, keys_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess, free_port, send_udp, stored_messages, udp_dataset
from tests.integration.test_query_service import write_hour


def _tls(pki: dict[str, Path]) -> tuple[str, ...]:
    return ("--listen-tls-cert-file", str(pki["server_cert"]), "--listen-tls-key-file", str(pki["server_key"]))


def _named(address: str) -> str:
    """The address under the certificate's DNS name."""
    return address.replace("127.0.0.1", "localhost")


def _curl(ca: Path | None, *args: str) -> tuple[int, str]:
    """curl's exit code and its output (the body, then the HTTP status on the last line)."""
    verify = ("--cacert", str(ca)) if ca else ()
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "5", *verify, "-w", "\n%{http_code}", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.returncode, out.stdout


def test_receiver_serves_tls_and_a_proxy_delivers_only_to_a_receiver_it_verifies(
    control_plane: ControlPlaneProcess,
    admin: Client,
    uid: Callable[[str], str],
    tmp_path: Path,
    pki: dict[str, Path],
) -> None:
    tenant = uid("tls")
    admin.tenants.create(tenant)
    trusting, untrusting = uid("edge"), uid("edge")
    ports = {trusting: free_port(), untrusting: free_port()}
    admin.datasets.create(tenant, "fw", udp_dataset(ports[trusting], agent=trusting))
    admin.datasets.create(tenant, "other", udp_dataset(ports[untrusting], agent=untrusting))
    _, key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    store = tmp_path / "intake"
    agents = tmp_path / "agents"
    receiver = AgentProcess(
        "receiver", uid("recv"), agents, "--webhook-listen", "127.0.0.1:0", "--object-store", str(store),
        *_tls(pki), control_url=control_plane.grpc, key=key,
    ).start()  # fmt: skip
    started = [receiver]
    try:
        hook, api = _named(receiver.addresses["webhook"]), _named(receiver.api)
        code, out = _curl(pki["ca"], f"https://{api}/livez")
        assert code == 0 and out.endswith("\n200"), out
        # Plain HTTP to a TLS port gets no answer; an unverifiable certificate is refused by curl.
        assert _curl(None, f"http://{hook}/{tenant}/fw")[1].endswith("\n000")
        assert _curl(None, f"https://{hook}/{tenant}/fw")[0] == 60  # peer certificate cannot be verified

        def ingest() -> bool:
            code, out = _curl(
                pki["ca"], "-H", f"Authorization: Bearer {key}", "--data-binary", '{"message": "over curl"}',
                f"https://{hook}/{tenant}/fw",
            )  # fmt: skip
            assert code == 0 and out.endswith("\n200"), out
            return True

        eventually(ingest, timeout=20)  # once the receiver has the tenant

        good = AgentProcess(
            "proxy", trusting, agents, "--receivers", f"https://{hook}", "--receiver-ca-file", str(pki["ca"]),
            "--batch-max-age", "200ms", control_url=control_plane.grpc, key=key,
        ).start()  # fmt: skip
        started.append(good)
        # The system's CAs do not know the test CA: this proxy must not deliver (nor skip checks).
        bad = AgentProcess(
            "proxy", untrusting, agents, "--receivers", f"https://{hook}", "--batch-max-age", "200ms",
            "--retry-interval", "1s", control_url=control_plane.grpc, key=key,
        ).start()  # fmt: skip
        started.append(bad)
        eventually(lambda: good.component(f"source/tenants/{tenant}/datasets/fw"), timeout=20)
        eventually(lambda: bad.component(f"source/tenants/{tenant}/datasets/other"), timeout=20)
        for i in range(20):
            send_udp(ports[trusting], f"<13>1 2026-12-07T10:00:00Z host app - - - verified {i}".encode())
            send_udp(ports[untrusting], f"<13>1 2026-12-07T10:00:00Z host app - - - unverified {i}".encode())
        eventually(lambda: len([m for m in stored_messages(store, tenant) if m.startswith("verified")]) == 20)
        assert eventually(lambda: bad.component("forwarder")["status"] == "HEALTH_STATUS_DEGRADED", timeout=20)
        assert "certificate" in str(bad.component("forwarder").get("message", "")).lower()
        assert not [m for m in stored_messages(store, tenant) if m.startswith("unverified")]
    finally:
        for agent in started:
            agent.kill()


def _query_tls_agent(cp: ControlPlaneProcess, store: Path, data_dir: Path, pki: dict[str, Path]) -> AgentProcess:
    """Dataset ``tq/logs`` on ``cp`` and a query agent serving TLS over ``store``, connected."""
    with Client(cp.grpc, api_key=cp.admin_key, retries=0, timeout=10) as admin:
        admin.tenants.create("tq")
        http = datasets_pb2.Dataset(source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=18199))
        admin.datasets.create("tq", "logs", http)
        _, key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
        agent = AgentProcess(
            "query", "query-tls", data_dir, "--parquet-store", str(store), "--query-grpc-listen", "127.0.0.1:0",
            *_tls(pki), control_url=cp.grpc, key=key,
        ).start()  # fmt: skip
        eventually(lambda: admin.agents.get("query-tls").connected, timeout=20)
    return agent


def test_the_control_plane_forwards_to_a_tls_query_agent_only_when_it_verifies_it(
    start_control_plane: Callable[..., ControlPlaneProcess], tmp_path: Path, pki: dict[str, Path]
) -> None:
    store = tmp_path / "parquet"
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    write_hour(store, "tq", "logs", hour, 50, tag="tls")
    count = "SELECT count(*) AS n FROM logs"

    verifying = start_control_plane("--agent-heartbeat-interval", "1s", "--query-ca-file", str(pki["ca"]))
    agent = _query_tls_agent(verifying, store, tmp_path / "agents-1", pki)
    try:
        with Client(verifying.grpc, api_key=verifying.admin_key, retries=0, timeout=10) as admin:
            result = eventually(lambda: admin.query.execute(count, dataset="tq/logs"), timeout=20)
            assert result.table.to_pylist() == [{"n": 50}]
    finally:
        agent.stop()

    # Without query_ca_file the system's CAs do not know the test CA: no query goes through.
    unverifying = start_control_plane("--agent-heartbeat-interval", "1s")
    agent = _query_tls_agent(unverifying, store, tmp_path / "agents-2", pki)
    try:
        with Client(unverifying.grpc, api_key=unverifying.admin_key, retries=0, timeout=10) as admin:
            with pytest.raises(RpcError) as err:
                admin.query.execute(count, dataset="tq/logs")
            assert err.value.code == grpc.StatusCode.UNAVAILABLE
            assert err.value.reason == "QUERY_AGENT_UNAVAILABLE"
    finally:
        agent.stop()


def test_an_unspecified_listen_host_is_advertised_as_the_address_toward_the_control_plane() -> None:
    assert advertised_address("127.0.0.1:8001", "", "127.0.0.1:9090") == "127.0.0.1:8001"
    assert advertised_address("0.0.0.0:8001", "", "127.0.0.1:9090") == "127.0.0.1:8001"
    assert advertised_address("0.0.0.0:8001", "", "dns:///127.0.0.1:9090") == "127.0.0.1:8001"
    assert advertised_address("[::]:8001", "", "[::1]:9090") == "[::1]:8001"
    assert advertised_address("0.0.0.0:8001", "query-7.example.net:8001", "cp:9090") == "query-7.example.net:8001"
