"""TLS for the control plane's ports: server credentials for gRPC and an SSL context for HTTP.

With ``tls_client_ca_file`` the gRPC port requires and verifies a client certificate from every
caller. (grpcio's Python API can only require client certificates on a whole port or not
request them at all, so mutual TLS cannot be limited to agents on a shared port.)"""

from __future__ import annotations

import ssl

import grpc

from control_plane.config import ControlPlaneSettings
from floe.tls import server_context

__all__ = ["grpc_server_credentials", "http_ssl_context"]


def grpc_server_credentials(s: ControlPlaneSettings) -> grpc.ServerCredentials | None:
    """None for plaintext; TLS, and mutual TLS with ``tls_client_ca_file``."""
    if s.tls_cert_file is None or s.tls_key_file is None:
        return None
    pair = (s.tls_key_file.read_bytes(), s.tls_cert_file.read_bytes())
    roots = s.tls_client_ca_file.read_bytes() if s.tls_client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=roots, require_client_auth=roots is not None)


def http_ssl_context(s: ControlPlaneSettings) -> ssl.SSLContext | None:
    if s.tls_cert_file is None or s.tls_key_file is None:
        return None
    return server_context(s.tls_cert_file, s.tls_key_file)
