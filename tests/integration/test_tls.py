"""TLS and mutual TLS on the control plane's ports, with the SDK and a real agent."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from floe import Client, RpcError
from floe.v1 import common_pb2, keys_pb2
from tests.helpers import ROOT, ControlPlaneProcess, eventually


def _local(cp: ControlPlaneProcess) -> str:
    """The gRPC address under the certificate's DNS name."""
    return cp.grpc.replace("127.0.0.1", "localhost")


def test_tls_serves_grpc_and_https_and_refuses_plaintext(
    start_control_plane: Callable[..., ControlPlaneProcess], pki: dict[str, Path]
) -> None:
    cp = start_control_plane("--tls-cert-file", str(pki["server_cert"]), "--tls-key-file", str(pki["server_key"]))
    with Client(_local(cp), api_key=cp.admin_key, ca_file=pki["ca"], retries=0) as c:
        assert c.auth.whoami().role == common_pb2.ROLE_ADMIN
    with Client(cp.grpc, api_key=cp.admin_key, retries=0, timeout=3) as plain, pytest.raises(RpcError) as err:
        plain.auth.whoami()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    with urllib.request.urlopen(f"https://{cp.http.replace('127.0.0.1', 'localhost')}/healthz", context=ctx) as resp:
        assert json.loads(resp.read())["status"] == "healthy"


def test_tls_cert_without_key_is_a_config_error(tmp_path: Path, pki: dict[str, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "floe.cli", "control-plane", "--data-dir", str(tmp_path / "d"),
         "--tls-cert-file", str(pki["server_cert"])],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "tls_cert_file / tls_key_file" in result.stderr


def test_mutual_tls_requires_a_client_certificate_and_agents_present_one(
    start_control_plane: Callable[..., ControlPlaneProcess], pki: dict[str, Path], tmp_path: Path
) -> None:
    cp = start_control_plane(
        "--tls-cert-file", str(pki["server_cert"]), "--tls-key-file", str(pki["server_key"]),
        "--tls-client-ca-file", str(pki["ca"]), "--agent-heartbeat-interval", "1s",
    )  # fmt: skip
    with Client(_local(cp), api_key=cp.admin_key, ca_file=pki["ca"], retries=0, timeout=3) as no_cert:
        with pytest.raises(RpcError) as err:
            no_cert.auth.whoami()
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
    with Client(
        _local(cp), api_key=cp.admin_key, ca_file=pki["ca"], cert_file=pki["client_cert"],
        key_file=pki["client_key"], retries=0,
    ) as c:  # fmt: skip
        _, secret = c.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE, display_name="tls agent")
        key_file = tmp_path / "agent.key"
        key_file.write_text(secret)
        agent = subprocess.Popen(
            [sys.executable, "-m", "floe.cli", "agent", "piper", "--agent-name", "tls-piper",
             "--control-url", _local(cp), "--api-key-file", str(key_file), "--data-dir", str(tmp_path / "agents"),
             "--api-listen", "127.0.0.1:0", "--ca-file", str(pki["ca"]),
             "--tls-cert-file", str(pki["client_cert"]), "--tls-key-file", str(pki["client_key"])],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            eventually(lambda: c.agents.get("tls-piper").connected, timeout=20)
        finally:
            agent.terminate()
            assert agent.wait(timeout=30) == 0
