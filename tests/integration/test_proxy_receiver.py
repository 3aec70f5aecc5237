"""A real proxy forwarding to a real receiver that goes away: what the proxy collects meanwhile
waits in its spool, and once the receiver is back every record is stored exactly once."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from floe import Client
from floe.v1 import common_pb2, datasets_pb2, keys_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess, free_port, stored_messages


def test_receiver_outage_spools_then_delivers_everything_once(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str], tmp_path: Path
) -> None:
    tenant = uid("pr")
    admin.tenants.create(tenant)
    udp_port = free_port()
    proxy_name = uid("edge")
    ds = datasets_pb2.Dataset(
        source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_SYSLOG_UDP, bind_host="127.0.0.1", port=udp_port),
        proxy=datasets_pb2.ProxyAssignment(agent=proxy_name),
        active=True,
    )
    admin.datasets.create(tenant, "fw", ds)
    _, key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    webhook = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    store = tmp_path / "intake"
    receiver = AgentProcess(
        "receiver", uid("recv"), tmp_path / "agents", "--webhook-listen", webhook, "--object-store", str(store),
        control_url=control_plane.grpc, key=key,
    )  # fmt: skip
    proxy = AgentProcess(
        "proxy", proxy_name, tmp_path / "agents",
        "--receivers", f"http://{webhook}", "--batch-max-age", "200ms", "--retry-interval", "1s",
        control_url=control_plane.grpc, key=key,
    )  # fmt: skip
    receiver.start()
    proxy.start()
    try:
        eventually(lambda: proxy.component(f"source/tenants/{tenant}/datasets/fw"), timeout=20)

        def send(first: int, count: int) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(first, first + count):
                    sock.sendto(f"<13>1 2026-11-23T10:00:00Z host app - - - line {i}".encode(), ("127.0.0.1", udp_port))

        send(0, 100)
        eventually(lambda: len(stored_messages(store, tenant)) == 100, timeout=30)

        receiver.stop()
        send(100, 300)  # while the receiver is away
        eventually(lambda: int(str(proxy.component("spool").get("backlog", 0))) > 0, timeout=20)
        assert eventually(lambda: proxy.component("forwarder")["status"] == "HEALTH_STATUS_DEGRADED", timeout=20)
        assert len(stored_messages(store, tenant)) == 100

        receiver.start()
        eventually(lambda: len(stored_messages(store, tenant)) >= 400, timeout=60)
        eventually(lambda: int(str(proxy.component("spool").get("backlog", 0))) == 0, timeout=30)
        messages = stored_messages(store, tenant)
        assert sorted(messages) == sorted(f"line {i}" for i in range(400))  # each exactly once
    finally:
        proxy.stop()
        if receiver.alive():
            receiver.stop()
