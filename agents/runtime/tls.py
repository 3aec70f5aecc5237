"""TLS for an agent's own listeners and the address its query port is reached at.

``listen_tls_cert_file``/``listen_tls_key_file`` put every listener the agent owns behind TLS
(1.2+): the HTTP API port, a receiver's ingest port and a query agent's gRPC port. Clients keep
authenticating as before (bearer keys, forwarding signatures); TLS keeps those credentials and
the data off the wire in clear text when agents run on other hosts than their peers.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl

import grpc

from agents.runtime.settings import AgentSettings
from floe.settings import parse_host_port
from floe.tls import server_context

__all__ = ["advertised_address", "grpc_server_credentials", "server_ssl_context"]


def server_ssl_context(s: AgentSettings) -> ssl.SSLContext | None:
    """The HTTP listeners' context; None for plaintext."""
    if s.listen_tls_cert_file is None or s.listen_tls_key_file is None:
        return None
    return server_context(s.listen_tls_cert_file, s.listen_tls_key_file)


def grpc_server_credentials(s: AgentSettings) -> grpc.ServerCredentials | None:
    """The gRPC listeners' credentials; None for plaintext."""
    if s.listen_tls_cert_file is None or s.listen_tls_key_file is None:
        return None
    return grpc.ssl_server_credentials([(s.listen_tls_key_file.read_bytes(), s.listen_tls_cert_file.read_bytes())])


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def advertised_address(bound: str, advertise: str, control_url: str) -> str:
    """The ``host:port`` peers should dial for a listener bound at ``bound``: ``advertise`` when
    set; else ``bound``, its unspecified host (``0.0.0.0``, ``::``) replaced by the address this
    host uses toward the control plane (the interface a route to it leaves by), so a control
    plane on another host can reach it."""
    if advertise:
        return advertise
    host, port = parse_host_port(bound)
    if not _unspecified(host):
        return bound
    target = control_url.split("://", 1)[-1].lstrip("/")
    try:
        target_host, _ = parse_host_port(target)
    except ValueError:
        target_host = target
    try:
        family = socket.getaddrinfo(target_host, None)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target_host, 9))  # UDP: picks the route, sends nothing
            local = str(probe.getsockname()[0])
    except OSError:
        local = "127.0.0.1"
    return f"[{local}]:{port}" if ":" in local else f"{local}:{port}"
