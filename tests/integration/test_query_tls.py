"""The blocking client's query calls (a synchronous channel of their own) use the client's TLS
settings: server verification with the CA, and the client certificate under mutual TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from floe import Client, RpcError
from tests.helpers import ControlPlaneProcess


def test_blocking_queries_verify_the_server_and_present_the_client_certificate(
    start_control_plane: Callable[..., ControlPlaneProcess],
    pki: dict[str, Path],
) -> None:
    cp = start_control_plane(
        "--tls-cert-file", str(pki["server_cert"]), "--tls-key-file", str(pki["server_key"]),
        "--tls-client-ca-file", str(pki["ca"]),
    )  # fmt: skip
    target = cp.grpc.replace("127.0.0.1", "localhost")  # the certificate's name
    with Client(
        target, api_key=cp.admin_key, ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"],
        retries=0, timeout=5,
    ) as client:  # fmt: skip
        client.tenants.create("tls")
        # Answered by the control plane itself over the query channel: the handshake succeeded.
        with pytest.raises(RpcError) as err:
            client.query.execute("SELECT 1", dataset="tls/missing")
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    with Client(target, api_key=cp.admin_key, ca_file=pki["ca"], retries=0, timeout=5) as no_cert:
        with pytest.raises(RpcError) as err:
            no_cert.query.execute("SELECT 1", dataset="tls/missing")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE  # refused in the handshake
