"""The TLS server context every Floe HTTP listener uses (control plane and agents)."""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["server_context"]


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the certificate chain ``cert_file`` and its key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
