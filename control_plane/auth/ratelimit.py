"""Per-peer limit on failed authentication (``floe.ratelimit.FailureLimiter``, shared with the
receivers) and the gRPC peer string it is keyed by.

Calls from browsers arrive through the gRPC-web bridge on a loopback port, so their gRPC peer is
always 127.0.0.1. The bridge sends the browser's address in ``x-forwarded-for`` together with a
per-process secret (``BRIDGE_TOKEN``); only with that secret is the forwarded address believed, so
a client on the gRPC port cannot spoof its way out of the limiter.
"""

from __future__ import annotations

import secrets
from typing import Any

from floe.ratelimit import FailureLimiter

__all__ = ["BRIDGE_HEADER", "BRIDGE_TOKEN", "FailureLimiter", "client_peer", "peer_host"]

BRIDGE_HEADER = "x-floe-bridge"
BRIDGE_TOKEN = secrets.token_urlsafe(24)


def client_peer(context: Any) -> str:
    """The caller's gRPC peer string; for calls relayed by the gRPC-web bridge, the browser's."""
    peer: str = context.peer()
    forwarded = token = ""
    for key, value in context.invocation_metadata() or ():
        if key == BRIDGE_HEADER:
            token = value if isinstance(value, str) else value.decode()
        elif key == "x-forwarded-for":
            forwarded = value if isinstance(value, str) else value.decode()
    if forwarded and token and secrets.compare_digest(token, BRIDGE_TOKEN):
        return f"ipv6:[{forwarded}]:0" if ":" in forwarded else f"ipv4:{forwarded}:0"
    return peer


def peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``; ``ipv6:[::1]:5000`` -> ``::1``; ``unix:...`` as is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer
