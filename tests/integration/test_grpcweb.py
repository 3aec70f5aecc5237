"""gRPC-web on the control plane's HTTP port, spoken byte for byte as a browser's transport does:
unary and server-streaming calls reach the same servicers and auth as native gRPC."""

from __future__ import annotations

import base64
import http.client
import struct
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import Message
from google.rpc import status_pb2

from floe import Client
from floe.v1 import common_pb2, fleet_pb2, keys_pb2, tenants_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.agentkit import AgentProcess


def _call(address: str, path: str, request: Message, token: str = "") -> tuple[int, bytes]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = request.SerializeToString()
    headers = {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", path, body=struct.pack(">BI", 0, len(body)) + body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _frames(raw: bytes) -> tuple[list[bytes], dict[str, str]]:
    messages, trailers, pos = [], {}, 0
    while pos + 5 <= len(raw):
        flag, length = struct.unpack(">BI", raw[pos : pos + 5])
        payload = raw[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def test_unary_call_with_auth_errors_and_details(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str]
) -> None:
    tenant = uid("gw")
    admin.tenants.create(tenant, display_name="Web")
    status, raw = _call(
        control_plane.http,
        "/floe.v1.TenantService/GetTenant",
        tenants_pb2.GetTenantRequest(name=f"tenants/{tenant}"),
        control_plane.admin_key,
    )
    assert status == 200
    messages, trailers = _frames(raw)
    assert trailers["grpc-status"] == "0"
    assert tenants_pb2.GetTenantResponse.FromString(messages[0]).tenant.display_name == "Web"

    # No credential: the same UNAUTHENTICATED a native call gets.
    _, raw = _call(control_plane.http, "/floe.v1.TenantService/GetTenant", tenants_pb2.GetTenantRequest(name="x"))
    messages, trailers = _frames(raw)
    assert (messages, trailers["grpc-status"]) == ([], "16")

    # A bad request: INVALID_ARGUMENT with the field violations in grpc-status-details-bin.
    _, raw = _call(
        control_plane.http,
        "/floe.v1.TenantService/CreateTenant",
        tenants_pb2.CreateTenantRequest(tenant_id="Not An Id"),
        control_plane.admin_key,
    )
    _, trailers = _frames(raw)
    assert trailers["grpc-status"] == "3"
    details = base64.b64decode(trailers["grpc-status-details-bin"] + "==")
    assert "tenant_id" in str(status_pb2.Status.FromString(details))

    _, raw = _call(control_plane.http, "/floe.v1.TenantService/NoSuchMethod", tenants_pb2.GetTenantRequest())
    assert _frames(raw)[1]["grpc-status"] == "12"


def test_server_streaming_call_streams_frames(
    control_plane: ControlPlaneProcess, admin: Client, uid: Callable[[str], str], tmp_path: Path
) -> None:
    _, key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    name = uid("gw-agent")
    agent = AgentProcess("piper", name, tmp_path, control_url=control_plane.grpc, key=key).start()
    try:
        eventually(lambda: admin.agents.get(name).connected, timeout=20)
        # WatchAgents sends every agent once, then waits for changes: read the first frames only.
        host, port = control_plane.http.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        body = fleet_pb2.WatchAgentsRequest().SerializeToString()
        headers = {"Content-Type": "application/grpc-web+proto", "Authorization": f"Bearer {control_plane.admin_key}"}
        conn.request("POST", "/floe.v1.FleetService/WatchAgents", struct.pack(">BI", 0, len(body)) + body, headers)
        resp = conn.getresponse()
        assert resp.status == 200
        names: set[str] = set()
        while name not in {n.removeprefix("agents/") for n in names}:
            flag, length = struct.unpack(">BI", resp.read(5))
            assert flag == 0  # data frames while the stream is open
            names.add(fleet_pb2.WatchAgentsResponse.FromString(resp.read(length)).agent.name)
        conn.close()
    finally:
        agent.stop()
    # The agent's going offline is the stream's next update, and its browser is gone: that ends the
    # call quietly (a page closed or reloaded), not with an error and a traceback in the log.
    time.sleep(1.5)
    assert "Error handling request" not in control_plane.log()


def test_wrong_content_type_is_415(control_plane: ControlPlaneProcess) -> None:
    host, port = control_plane.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/floe.v1.TenantService/GetTenant", body=b"{}", headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 415
    assert b"unsupported_media_type" in resp.read()
    conn.close()
