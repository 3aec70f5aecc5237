"""The retry policy every Floe client shares: jittered exponential backoff, and the reading of a
server's own retry delay from an HTTP ``Retry-After`` header."""

from __future__ import annotations

import email.utils
import random
import time

__all__ = ["Backoff", "retry_after"]


class Backoff:
    """Delays of ``initial``, doubling up to ``maximum``, each jittered to 50-150 %.

    Jitter keeps a fleet that lost the same server from coming back in lockstep. A server's
    explicit retry delay (RetryInfo, a throttle) wins over the computed one and does not grow it.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"backoff needs 0 < initial ({initial}) <= maximum ({maximum})")
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def delay(self, server_hint: float | None = None) -> float:
        """The wait before the next attempt; ``server_hint`` is the server's own retry delay."""
        if server_hint:
            return server_hint
        wait = self._next * random.uniform(0.5, 1.5)
        self._next = min(self._next * 2, self.maximum)
        return wait

    def reset(self) -> None:
        """After a success: the next failure starts from ``initial`` again."""
        self._next = self.initial


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
