"""When an API key stops being valid: the one rule every part of the control plane uses
(authentication, key listing, bootstrap, receivers' ingest credentials, agent streams)."""

from __future__ import annotations

from floe.v1 import keys_pb2

__all__ = ["key_ends_ns", "key_valid_at"]


def key_ends_ns(key: keys_pb2.ApiKey) -> int | None:
    """Unix nanoseconds at which ``key`` stops working: the earlier of its revoke time (which a
    rotation's grace period sets in the future) and its expiry; None when neither is set."""
    ends = [t.ToNanoseconds() for t in (key.revoke_time, key.expire_time) if t.seconds or t.nanos]
    return min(ends) if ends else None


def key_valid_at(key: keys_pb2.ApiKey, now_ns: int) -> bool:
    ends = key_ends_ns(key)
    return ends is None or now_ns < ends
