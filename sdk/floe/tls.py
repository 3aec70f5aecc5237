"""TLS contexts shared by Floe's HTTP servers (control plane, agents) and HTTP clients (proxy, connector)."""

from __future__ import annotations

import ssl
from os import PathLike
from pathlib import Path

__all__ = ["client_context", "server_context"]


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the certificate chain ``cert_file`` and its key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def client_context(ca_file: str | PathLike[str] | None) -> ssl.SSLContext | bool:
    """What an HTTP client verifies servers with: ``ca_file`` when given, else the system's CAs
    (``True``, aiohttp's default). Never unverified."""
    if not ca_file:
        return True
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
