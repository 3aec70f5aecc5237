"""Per-peer limit on failed authentication, shared by the control plane and the receivers: a
token bucket per client address. Each failure spends a token; with none left, requests from that
address are refused before any credential check (so a guessing client cannot make the server
spend argon2 time)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["FailureLimiter"]


class FailureLimiter:
    """Allows ``burst`` failures at once per host, refilled at ``rate`` per second; remembers at
    most ``max_hosts`` hosts (full buckets are forgotten first, then the least recently failed)."""

    def __init__(
        self,
        burst: int = 20,
        rate: float = 1.0,
        *,
        max_hosts: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.rate = rate
        self._max_hosts = max_hosts
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, at), oldest failure first

    def _level(self, host: str, now: float) -> float:
        tokens, at = self._buckets.get(host, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def retry_after(self, host: str) -> float:
        """Seconds until ``host`` may try again; 0 when it may now."""
        if host not in self._buckets:
            return 0.0
        level = self._level(host, self._clock())
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def record_failure(self, host: str) -> None:
        now = self._clock()
        level = self._level(host, now) - 1
        self._buckets.pop(host, None)
        self._buckets[host] = (level, now)
        if len(self._buckets) > self._max_hosts:
            for full in [h for h in self._buckets if self._level(h, now) >= self.burst]:
                del self._buckets[full]
            while len(self._buckets) > self._max_hosts:
                del self._buckets[next(iter(self._buckets))]
