"""Per-peer limit on failed authentication (``floe.ratelimit.FailureLimiter``, shared with the
receivers) and the gRPC peer string it is keyed by."""

from __future__ import annotations

from floe.ratelimit import FailureLimiter

__all__ = ["FailureLimiter", "peer_host"]


def peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``; ``ipv6:[::1]:5000`` -> ``::1``; ``unix:...`` as is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer
