"""Secrets at rest: API keys and passwords hashed with argon2id, refresh tokens with SHA-256.

The shape of a key (and ``parse_key``) lives in ``floe.apikeys``, shared with the receivers.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from floe.apikeys import KEY_MARK, ParsedKey, parse_key

__all__ = [
    "ParsedKey",
    "generate_key",
    "generate_key_id",
    "hash_secret",
    "parse_key",
    "sha256_hex",
    "verify_secret",
]

_KIND_LETTER = {1: "s", 2: "u"}
_ID_ALPHABET = string.ascii_lowercase + string.digits
_hasher = PasswordHasher()


def generate_key_id() -> str:
    """A random key id: a letter then 9 letters or digits."""
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def generate_key(key_id: str, kind: int) -> tuple[str, str]:
    """Return ``(secret, prefix)`` for a new key."""
    prefix = f"{KEY_MARK}_{_KIND_LETTER.get(kind, 'u')}_{key_id}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


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
