"""The shape of a Floe API key, shared by the control plane (which issues and checks keys) and
receivers (which check ingest keys against the hashes they are sent).

A key looks like ``floe_u_3kq9x2mb_<43 url-safe chars>``: kind letter (``u`` user, ``s`` service),
the key id (which names ``keys/{id}``) and 256 random bits. The part before the last underscore
is the public prefix, safe to show and log.
"""

from __future__ import annotations

__all__ = ["KEY_MARK", "ParsedKey", "parse_key"]

KEY_MARK = "floe"


class ParsedKey:
    """The parts of a presented API key."""

    __slots__ = ("key_id", "prefix", "secret")

    def __init__(self, key_id: str, prefix: str, secret: str) -> None:
        self.key_id = key_id
        self.prefix = prefix
        self.secret = secret


def parse_key(value: str) -> ParsedKey | None:
    """Split a presented key; None when it is not shaped like a Floe key."""
    parts = value.split("_", 3)
    if len(parts) != 4 or parts[0] != KEY_MARK or parts[1] not in ("s", "u") or not parts[2] or len(parts[3]) < 32:
        return None
    return ParsedKey(parts[2], "_".join(parts[:3]), value)
