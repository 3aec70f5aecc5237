"""Secrets at rest: API keys and passwords hashed with argon2id, refresh tokens with SHA-256.

An API key looks like ``floe_u_3kq9x2mb_<43 url-safe chars>``: kind letter (``u`` user,
``s`` service), the key id (which names ``keys/{id}``) and 256 random bits. The part before the
last underscore is the public prefix, safe to show and log.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "ParsedKey",
    "generate_key",
    "generate_key_id",
    "hash_secret",
    "parse_key",
    "sha256_hex",
    "verify_secret",
]

KEY_MARK = "floe"
_KIND_LETTER = {1: "s", 2: "u"}
_ID_ALPHABET = string.ascii_lowercase + string.digits
_hasher = PasswordHasher()


class ParsedKey:
    """The parts of a presented API key."""

    __slots__ = ("key_id", "prefix", "secret")

    def __init__(self, key_id: str, prefix: str, secret: str) -> None:
        self.key_id = key_id
        self.prefix = prefix
        self.secret = secret


def generate_key_id() -> str:
    """A random key id: a letter then 9 letters or digits."""
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def generate_key(key_id: str, kind: int) -> tuple[str, str]:
    """Return ``(secret, prefix)`` for a new key."""
    prefix = f"{KEY_MARK}_{_KIND_LETTER.get(kind, 'u')}_{key_id}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse_key(value: str) -> ParsedKey | None:
    """Split a presented key; None when it is not shaped like a Floe key."""
    parts = value.split("_", 3)
    if len(parts) != 4 or parts[0] != KEY_MARK or parts[1] not in ("s", "u") or not parts[2] or len(parts[3]) < 32:
        return None
    return ParsedKey(parts[2], "_".join(parts[:3]), value)


async def hash_secret(secret: str) -> str:
    """argon2id hash, computed off the event loop (it takes ~100 ms of CPU by design)."""
    return await asyncio.to_thread(_hasher.hash, secret)


async def verify_secret(hashed: str, secret: str) -> bool:
    """Check ``secret`` against an argon2 hash off the event loop."""

    def run() -> bool:
        try:
            return _hasher.verify(hashed, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(run)


def sha256_hex(value: str) -> str:
    """For high-entropy random tokens only (refresh tokens); never for passwords."""
    return hashlib.sha256(value.encode()).hexdigest()
