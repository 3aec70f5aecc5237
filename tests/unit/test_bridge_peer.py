"""Which address the failed-authentication limiter keys a call by: the browser's for calls the
gRPC-web bridge relays (it vouches with a per-process secret), the socket peer for everyone else."""

from __future__ import annotations

from control_plane.auth.ratelimit import BRIDGE_HEADER, BRIDGE_TOKEN, client_peer, peer_host


class _Context:
    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self._peer, self._metadata = peer, metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_bridge_calls_are_keyed_by_the_browser_address() -> None:
    ctx = _Context("ipv4:127.0.0.1:4242", (("x-forwarded-for", "192.0.2.7"), (BRIDGE_HEADER, BRIDGE_TOKEN)))
    assert peer_host(client_peer(ctx)) == "192.0.2.7"
    ctx6 = _Context("ipv4:127.0.0.1:4242", (("x-forwarded-for", "2001:db8::1"), (BRIDGE_HEADER, BRIDGE_TOKEN)))
    assert peer_host(client_peer(ctx6)) == "2001:db8::1"


def test_forwarded_address_without_the_bridge_secret_is_ignored() -> None:
    spoofed = _Context("ipv4:10.1.2.3:5000", (("x-forwarded-for", "192.0.2.7"), (BRIDGE_HEADER, "guess")))
    assert peer_host(client_peer(spoofed)) == "10.1.2.3"
    bare = _Context("ipv4:10.1.2.3:5000", (("x-forwarded-for", "192.0.2.7"),))
    assert peer_host(client_peer(bare)) == "10.1.2.3"
