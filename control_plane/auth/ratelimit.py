"""Per-peer limit on failed authentication: a token bucket per client address. Each failure
spends a token; with none left, calls from that address are refused before any credential
check (so a guessing client cannot make the server spend argon2 time)."""

from __future__ import annotations

import time

__all__ = ["FailureLimiter", "peer_host"]


def peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``; ``ipv6:[::1]:5000`` -> ``::1``; ``unix:...`` as is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


class FailureLimiter:
    """Allows ``burst`` failures at once per host, refilled at ``rate`` per second."""

    _MAX_HOSTS = 10_000

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, host: str, now: float) -> float:
        tokens, at = self._buckets.get(host, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def retry_after(self, host: str) -> float:
        """Seconds until ``host`` may try again; 0 when it may now."""
        if host not in self._buckets:
            return 0.0
        level = self._level(host, time.monotonic())
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def record_failure(self, host: str) -> None:
        now = time.monotonic()
        self._buckets[host] = (self._level(host, now) - 1, now)
        if len(self._buckets) > self._MAX_HOSTS:
            self._prune(now)

    def _prune(self, now: float) -> None:
        for host in [h for h in self._buckets if self._level(h, now) >= self.burst]:
            del self._buckets[host]
